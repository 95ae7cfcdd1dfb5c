"""Sanity checks shared by the kinds: a re-initialised copy of a model (the model-parameter
randomization test of Adebayo et al., NeurIPS 2018, and Network Dissection's random-init
baseline both need one)."""

from __future__ import annotations

import copy

import torch

from deepvid_plugin.core.guard import preserved_rng


def randomize_model(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A deep copy of ``model`` with every ``reset_parameters()`` re-run (the user's model is
    untouched; the RNG state is restored)."""
    clone = copy.deepcopy(model)
    with preserved_rng():
        torch.manual_seed(seed)
        n = 0
        for m in clone.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
                n += 1
    if n == 0:
        raise ValueError("model: expected at least one module with reset_parameters() to "
                         f"randomise, got none in {type(model).__name__}")
    return clone


__all__ = ["randomize_model"]
