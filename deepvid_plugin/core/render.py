"""Pictures of maps over their instance, for MLflow's image slider and the docs: the same colours
and overlay as the frontend's ``draw.ts``, so a picture means the same wherever it is seen.

Only numpy here; PIL (for text and canvases) is imported by the callers that draw.
"""

from __future__ import annotations

import numpy as np

_WHITE = np.array([247.0, 247.0, 247.0])
_BLUE, _RED = np.array([33.0, 102.0, 172.0]), np.array([178.0, 24.0, 43.0])
#: pixels between the parts of a step image, and the height of its colour bars.
PAD, BAR = 10, 12


def diverging(t: np.ndarray) -> np.ndarray:
    """``t`` in [-1, 1] -> RGB floats: blue (against), white (0), red (for)."""
    t = t[..., None]
    return np.where(t >= 0, _WHITE + t * (_RED - _WHITE), _WHITE + (-t) * (_BLUE - _WHITE))


def grey(image: np.ndarray) -> np.ndarray:
    """The instance as a dimmed grey ``(H, W)`` in 0..255 (ink at mid grey, background near
    black), as the TensorBoard tab draws it under its maps (CSS ``grayscale(1) contrast(0.6)
    brightness(0.7)``), so pale map colours stand out from it instead of blending into white."""
    a = np.asarray(image, dtype=np.float64)
    a = np.where(np.isfinite(a), a, 0.0)
    # colour images by luminance (channel-major), anything else by its channel mean
    g = (np.tensordot(np.array([0.299, 0.587, 0.114]), a, axes=1) if a.shape[0] == 3
         else a.mean(axis=0))
    lo, hi = float(g.min()), float(g.max())
    g = (g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)
    return np.clip(((g - 0.5) * 0.6 + 0.5) * 0.7, 0.0, 1.0) * 255.0


def overlay(values: np.ndarray, grey: np.ndarray) -> tuple[np.ndarray, float]:
    """A signed map over the grey instance: colour on the diverging scale, opacity growing with
    |value| (as the TensorBoard tab draws it), so the instance shows where the map is ~0.

    Returns the RGB floats and the scale (max |value|) the colours were drawn with.
    """
    v = np.where(np.isfinite(values), values, 0.0)
    scale = float(np.max(np.abs(v))) if v.size else 0.0
    t = np.clip(v / (scale or 1.0), -1.0, 1.0)
    alpha = np.minimum(1.0, 0.2 + 1.6 * np.abs(t))[..., None]  # as the frontend's draw.ts
    return alpha * diverging(t) + (1.0 - alpha) * grey[..., None], scale


def upscale_factor(h: int, w: int, min_side: int) -> int:
    """The integer factor that brings the smaller side of an ``h x w`` map to ``min_side``
    pixels or more (nearest neighbour keeps small maps crisp)."""
    return max(1, -(-min_side // max(1, min(h, w))))


__all__ = ["BAR", "PAD", "diverging", "grey", "overlay", "upscale_factor"]
