"""Encoders of stored summaries and of the JSON API: maps, images, rounded numbers.

The writers (the TensorBoard and MLflow sinks, through each kind's step summary) and the readers
(:mod:`deepvid_plugin.api`) import this one module, as TensorBoard's plugins share their
``metadata.py``: what is written and what is read are encoded by the same code, and changing an
encoder here changes both sides at once (the stored summaries' format is versioned by
``schema_version``). Nothing here imports TensorBoard, MLflow or torch.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

#: thumbnails in the overview are at most this many pixels on each side.
THUMB_SIZE = 16
#: significant digits kept for probabilities in step summaries (the overview stays small).
_PROB_DIGITS = 5
#: significant digits kept for fidelity and faithfulness numbers in step summaries: the UI shows
#: two or three decimals, and full float reprs would cost ~12 bytes each in every overview cell.
_FIDELITY_DIGITS = 3
#: fidelity entries a step summary leaves out: the curves are per-step detail (the record route
#: carries them), their step count and the held-out count are the same at every step, and
#: ``trustworthy`` is already a field of the summary itself.
_DETAIL_ONLY_FIDELITY = frozenset({"deletion_curve", "insertion_curve", "evidence_steps",
                                   "n_holdout", "trustworthy"})
#: the faithfulness evidence DeepVID adds to ``record.fidelity`` (older records lack all of them).
EVIDENCE_KEYS = ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
                 "deletion_curve", "insertion_curve", "evidence_steps", "better_than_random")


def encode_map(arr: Any) -> dict[str, Any]:
    """A signed map as ``{"shape", "scale", "data"}``: int8, base64, ``scale`` = max |value|.

    Symmetric quantisation keeps 0 exactly 0, so a diverging colour map can be centred on it.
    Non-finite values are drawn as 0 rather than poisoning the scale.
    """
    a = np.asarray(arr, dtype=np.float64)
    a = np.where(np.isfinite(a), a, 0.0)
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    q = np.zeros(a.shape, np.int8) if scale == 0.0 else np.rint(a / scale * 127).astype(np.int8)
    return {"shape": list(a.shape), "scale": scale,
            "data": base64.b64encode(q.tobytes()).decode("ascii")}


def decode_map(obj: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_map` (up to quantisation); used by tests and the compare view."""
    q = np.frombuffer(base64.b64decode(obj["data"]), dtype=np.int8)
    return q.reshape(obj["shape"]).astype(np.float64) / 127.0 * float(obj["scale"])


def encode_image(arr: Any) -> dict[str, Any]:
    """A ``(C, H, W)`` image as ``{"shape", "data"}``: uint8, base64, min-max scaled per image."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"arr: expected a (C, H, W) image, got shape {tuple(a.shape)}")
    a = np.where(np.isfinite(a), a, 0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if hi > lo:
        q = np.rint((a - lo) / (hi - lo) * 255).astype(np.uint8)
    else:  # a flat image carries no contrast to show
        q = np.zeros(a.shape, np.uint8)
    return {"shape": list(a.shape), "data": base64.b64encode(q.tobytes()).decode("ascii")}


def encode_index_map(arr: Any) -> dict[str, Any]:
    """An ``(H, W)`` map of small non-negative ints (region indices) as ``{"shape", "data"}``:
    little-endian uint16, base64."""
    a = np.asarray(arr)
    if a.ndim != 2 or (a.size and (int(a.min()) < 0 or int(a.max()) > 0xFFFF)):
        raise ValueError(f"arr: expected an (H, W) map of ints in [0, 65535], got shape "
                         f"{tuple(a.shape)}")
    return {"shape": list(a.shape),
            "data": base64.b64encode(a.astype("<u2").tobytes()).decode("ascii")}


def block_mean(a: np.ndarray, size: int) -> np.ndarray:
    """Area-average a 2-d map down to at most ``size`` pixels per side (last block may be short)."""
    out = a
    for axis in (0, 1):
        n = out.shape[axis]
        f = max(1, math.ceil(n / size))
        if f == 1:
            continue
        starts = np.arange(0, n, f)
        counts = np.diff(np.append(starts, n))
        out = np.add.reduceat(out, starts, axis=axis)
        out = out / (counts[:, None] if axis == 0 else counts[None, :])
    return out


def thumb(a: Any) -> dict[str, Any]:
    """A 2-d map as the overview's thumbnail: area-averaged to at most :data:`THUMB_SIZE` pixels
    per side, encoded as :func:`encode_map`."""
    return encode_map(block_mean(np.asarray(a, dtype=np.float64), THUMB_SIZE))


def channel_mean(weights: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W)``: what one weight map looks like on screen."""
    return np.asarray(weights, dtype=np.float64).mean(axis=0)


def round_list(values: Iterable[float], digits: int = _PROB_DIGITS) -> list[float]:
    return [float(f"{float(v):.{digits}g}") for v in values]


def summary_fidelity(fidelity: Mapping[str, Any]) -> dict[str, Any]:
    """The compact copy of ``record.fidelity`` that step summaries carry.

    Floats keep :data:`_FIDELITY_DIGITS` significant digits; the deletion/insertion curves (and
    their step count), ``n_holdout``, ``trustworthy`` (the summary's own field) and ``None`` values
    (``trust_reason`` of a trustworthy explanation) are left out, so the faithfulness evidence
    adds ~60 bytes per step to the overview instead of ~700. Booleans, ints and strings are
    kept as they are.
    """
    out: dict[str, Any] = {}
    for key, value in fidelity.items():
        if key in _DETAIL_ONLY_FIDELITY or value is None or isinstance(value, (list, dict)):
            continue
        if isinstance(value, float):
            value = float(f"{value:.{_FIDELITY_DIGITS}g}") if math.isfinite(value) else None
            if value is None:  # JSON has no NaN; an unknown number is simply absent
                continue
        out[key] = value
    return out


def has_evidence(fidelity: Mapping[str, Any]) -> bool:
    """Whether a record's fidelity carries faithfulness evidence (records of older versions
    do not)."""
    return isinstance(fidelity.get("deletion_auc"), (int, float)) and isinstance(
        fidelity.get("random_deletion_auc"), (int, float))


def with_changed(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recompute ``changed`` over step summaries sorted by step, as a reader sees them.

    Readers call it because what is served can differ from what the writer saw: a resumed run, a
    skipped unreadable step, or downsampling.
    """
    previous = None
    for s in steps:
        s["changed"] = previous is not None and s.get("predicted") != previous
        previous = s.get("predicted")
    return steps


def json_loads_object(raw: bytes | str) -> dict[str, Any]:
    """A JSON object from stored bytes; ``ValueError`` for anything else."""
    try:
        value = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, TypeError, AttributeError) as e:
        raise ValueError(f"expected UTF-8 JSON, got {type(raw).__name__}: {e}") from e
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value
