"""Argument checks shared by the explainers and the callbacks: one definition per rule.

Every check raises with a message that names the argument, what was expected and what arrived
(``ValueError("n_neighbours: expected an int >= 10, got 5")``), and returns the value in its
normalised form, so callers write ``self.seed = checks.integer("seed", seed)``.

These replace copies that had drifted apart (the callback refused ``radius=0`` while the engine
accepted it). Where two copies disagreed, the rule kept is the engine's, because it is the one
that decides what can be computed: ``radius`` may be 0 (with ``neighbourhood="vae+jitter"`` the
neighbours are then the reconstruction plus pixel jitter, a valid neighbourhood), and labels may
be integral floats (a float tensor of labels) but never 1.7 or ``True``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "choice",
    "class_names",
    "fraction",
    "generator",
    "ids",
    "images",
    "integer",
    "labels",
    "logits",
    "optional_positive",
    "positive",
    "radius",
]


def integer(name: str, value: Any, minimum: int = 0) -> int:
    """An ``int`` (numpy integers too, never ``bool``) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def _real(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
            and math.isfinite(float(value)))


def positive(name: str, value: Any) -> float:
    """A finite number ``> 0``."""
    if not _real(value) or not value > 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def optional_positive(name: str, value: Any, none_means: str = "automatic") -> float | None:
    """``None`` or a finite number ``> 0``."""
    if value is None:
        return None
    if not _real(value) or not value > 0:
        raise ValueError(f"{name}: expected None ({none_means}) or a finite number > 0, got "
                         f"{value!r}")
    return float(value)


def fraction(name: str, value: Any, low: float, high: float) -> float:
    """A number in ``[low, high]``."""
    if not _real(value) or not low <= value <= high:
        raise ValueError(f"{name}: expected a number in [{low}, {high}], got {value!r}")
    return float(value)


def choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of ``choices`` (the message lists them)."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def radius(value: Any) -> torch.Tensor:
    """DeepVID's latent radius: a number ``>= 0`` or one per latent dimension (a 1-d sequence)."""
    message = (f"radius: expected a number >= 0 or one per latent dimension (a 1-d sequence), "
               f"got {value!r}")
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(message)
    try:
        r = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(message) from e
    if r.dim() > 1 or r.numel() == 0 or not bool(torch.isfinite(r).all()) or bool((r < 0).any()):
        raise ValueError(message)
    return r


def generator(value: Any) -> Any:
    """Anything with callable ``encode()`` and ``decode()`` (a fitted VAE)."""
    if not (callable(getattr(value, "encode", None)) and callable(getattr(value, "decode", None))):
        raise TypeError(f"generator: expected an object with encode() and decode() (e.g. a "
                        f"fitted deepvid_plugin.explain.VAE), got {type(value).__name__}")
    return value


def images(name: str, x: Any) -> torch.Tensor:
    """A non-empty floating-point ``(K, C, H, W)`` tensor of finite pixels, detached."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of images (K, C, H, W), got "
                        f"{type(x).__name__}")
    if x.dim() != 4:
        hint = " (use x.unsqueeze(0) for a single image)" if x.dim() == 3 else ""
        raise ValueError(f"{name}: expected images of shape (K, C, H, W), got shape "
                         f"{tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one instance, got 0")
    bad = (~torch.isfinite(x.detach())).flatten(1).sum(1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name}: instance {i} has {int(bad[i])} non-finite pixels (NaN or inf); "
                         f"expected finite images")
    return x.detach()


def logits(name: str, out: Any, n: int) -> torch.Tensor:
    """A model's output as finite logits ``(n, n_classes >= 2)``. A tuple, a dict or a
    HuggingFace ``ModelOutput`` is refused, saying what to do."""
    if not isinstance(out, torch.Tensor):
        what = type(out).__name__
        if isinstance(out, (tuple, list)):
            what = f"a {what} of {len(out)} items"
        elif isinstance(out, Mapping):
            what = f"a {what} with keys {sorted(map(str, out))[:6]}"
        raise TypeError(f"{name}: expected a tensor of logits (N, n_classes), got {what}; wrap "
                        f"the model in an nn.Module whose forward returns the logits tensor "
                        f"(e.g. its output[0], or output['logits'])")
    if out.dim() != 2 or out.shape[0] != n or out.shape[1] < 2:
        raise ValueError(f"{name}: expected logits of shape ({n}, n_classes >= 2), got "
                         f"{tuple(out.shape)}")
    if not bool(torch.isfinite(out.detach()).all()):
        raise ValueError(f"{name}: expected finite logits, got "
                         f"{int((~torch.isfinite(out.detach())).sum())} NaN or inf values")
    return out


def ids(value: Any, k: int | None, default: Sequence[str] | None = None) -> list[str]:
    """``k`` unique non-empty ids (as str); ``None`` gives ``default`` or ``"0".."k-1"``.

    ``k=None`` accepts any number of ids (a caller with no instance count of its own, such as
    :func:`~deepvid_plugin.core.faithfulness.random_saliency`); ``None`` is then refused."""
    want = f"{k} ids" if k is not None else "ids"
    if value is None:
        if default is not None:
            return list(default)
        if k is None:
            raise TypeError("ids: expected a sequence of ids, got None")
        return [str(i) for i in range(k)]
    if isinstance(value, (str, bytes)):
        raise TypeError(f"ids: expected a sequence of {want}, got a single string {value!r}")
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = value.tolist()
    if not isinstance(value, Sequence):
        raise TypeError(f"ids: expected a sequence of {want}, got {type(value).__name__}")
    out = [str(i) for i in value]
    if k is not None and len(out) != k:
        raise ValueError(f"ids: expected {k} ids (one per instance), got {len(out)}")
    if len(set(out)) != len(out) or any(not i for i in out):
        raise ValueError(f"ids: expected {len(out)} unique non-empty ids, got {out}")
    return out


def labels(value: Any, k: int, n_classes: int | None = None) -> list[int] | None:
    """``None`` or ``k`` class indices: ints or integral floats (never ``bool`` or 1.7), ``>= 0``
    and ``< n_classes`` when that is known."""
    if value is None:
        return None
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim != 1:
            raise ValueError(f"labels: expected a 1-d sequence of {k} class indices, got shape "
                             f"{tuple(value.shape)}")
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"labels: expected a sequence of {k} class indices, got "
                        f"{type(value).__name__}")
    values = list(value)
    if len(values) != k:
        raise ValueError(f"labels: expected {k} labels (one per instance), got {len(values)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not float(v).is_integer():
            raise ValueError(f"labels: expected integer class indices, got {values}")
    out = [int(v) for v in values]
    if any(v < 0 or (n_classes is not None and v >= n_classes) for v in out):
        want = f"in [0, {n_classes})" if n_classes is not None else ">= 0"
        raise ValueError(f"labels: expected class indices {want}, got {out}")
    return out


def class_names(value: Any, n_classes: int | None = None) -> list[str] | None:
    """``None`` or at least 2 class names (exactly ``n_classes`` when that is known)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"class_names: expected a sequence of strings, got "
                        f"{type(value).__name__}")
    names = [str(c) for c in value]
    if n_classes is not None and len(names) != n_classes:
        raise ValueError(f"class_names: expected {n_classes} names (the model outputs "
                         f"{n_classes} classes), got {len(names)}")
    if len(names) < 2:
        raise ValueError(f"class_names: expected at least 2 names, got {names}")
    return names
