"""Leave the user's model and process exactly as we found them.

Explaining runs *inside* someone's training loop, so it must not change their training: every
module's ``training`` flag is restored (in a ``finally``, as torch-cam does), eval mode keeps
BatchNorm statistics and Dropout untouched, gradients are off, and all RNGs are restored so the
next batch the user draws is the one they would have drawn anyway.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the python, numpy and torch (CPU and every CUDA device) RNG states on exit."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


@contextlib.contextmanager
def frozen_eval(*modules: object) -> Iterator[None]:
    """Put torch modules in eval mode under no_grad; restore every submodule's flag on exit."""
    saved: list[tuple[torch.nn.Module, bool]] = []
    for m in modules:
        if isinstance(m, torch.nn.Module):
            saved.extend((sub, sub.training) for sub in m.modules())
            # a core.outputs.ModelView also sets its model's own flag: restore that one too
            wrapped = m.__dict__.get("wrapped")
            if isinstance(wrapped, torch.nn.Module):
                saved.append((wrapped, wrapped.training))
    try:
        for m in modules:
            if isinstance(m, torch.nn.Module):
                m.eval()
        with torch.no_grad():
            yield
    finally:
        for sub, flag in saved:
            sub.training = flag


def module_device_dtype(model: object) -> tuple[torch.device, torch.dtype]:
    """Where the model's parameters live (CPU/float32 for parameter-free callables)."""
    if isinstance(model, torch.nn.Module):
        for t in model.parameters():
            return t.device, t.dtype
        for t in model.buffers():
            return t.device, (t.dtype if t.is_floating_point() else torch.float32)
    return torch.device("cpu"), torch.float32
