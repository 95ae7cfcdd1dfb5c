"""DeepVID's settings: the choices, their defaults (chosen by measurement: see
:mod:`~deepvid_plugin.methods.deepvid.engine`) and the checks that tie them together."""

from __future__ import annotations

import math
from typing import Any

NEIGHBOURHOODS = ("vae+jitter", "vae", "masks", "vae+masks")
PIXEL_NEIGHBOURHOODS = ("vae+jitter", "vae")
FEATURES = ("auto", "pixels", "superpixels", "grid")
DEFAULT_JITTER = 0.05  # pixel noise std, in the images' own units (see the class docstring)
DEFAULT_N_NEIGHBOURS = 512
#: ``features="auto"`` explains images of at most this many pixels (16 x 16) over pixels, with the
#: paper's neighbourhood, when there is a generator; larger ones over superpixels.
PAPER_MAX_PIXELS = 256
#: the student over pixels keeps a weight per pixel and class: refused above 64 pixels a side.
PIXELS_MAX_SIDE = 64
DEFAULT_BASELINE = "zero"
DEFAULT_KEEP = 0.7
#: classes whose maps a record keeps: the teacher's top 10 (every class of a 10-class model),
#: plus the true class; a 1000-class model at 224 px stays far below 200 KB per instance-step.
DEFAULT_STORE_CLASSES = 10
#: superpixels per image: one per ~21 pixels (49 at 32 x 32), at least 16 and at most 64.
PIXELS_PER_FEATURE = 21
MIN_FEATURES, MAX_FEATURES = 16, 64


def default_n_features(height: int, width: int) -> int:
    """How many regions ``features="auto"``/``"superpixels"`` aims for at this image size."""
    return int(min(MAX_FEATURES, max(MIN_FEATURES, round(height * width / PIXELS_PER_FEATURE))))


def check_pairing(features: str, neighbourhood: str | None, generator: object) -> None:
    """Pixel features go with the generator's neighbourhoods, regions with masks."""
    if neighbourhood is None:
        return
    pixel = neighbourhood in PIXEL_NEIGHBOURHOODS
    if features in ("superpixels", "grid") and pixel:
        raise ValueError(f"neighbourhood: features={features!r} switches regions off, so "
                         f"expected 'masks' or 'vae+masks', got {neighbourhood!r}")
    if features == "pixels" and not pixel:
        raise ValueError(f"neighbourhood: features='pixels' samples the generator, so expected "
                         f"'vae+jitter' or 'vae', got {neighbourhood!r}")
    if neighbourhood != "masks" and generator is None:
        raise ValueError(f"generator: neighbourhood={neighbourhood!r} samples a generator, got "
                         f"None (pass a fitted VAE, or neighbourhood='masks')")


def effective_jitter(neighbourhood: str, jitter: float | None) -> float:
    """The jitter used: the given one, else the default for "vae+jitter", else 0."""
    if neighbourhood != "vae+jitter":
        return 0.0
    return DEFAULT_JITTER if jitter is None else jitter


def check_jitter(neighbourhood: str | None, jitter: Any) -> float | None:
    """The given jitter, checked against the neighbourhood (None: the default of whichever
    neighbourhood the images' size picks)."""
    if jitter is None:
        if neighbourhood is None:
            return None
        return DEFAULT_JITTER if neighbourhood == "vae+jitter" else 0.0
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not math.isfinite(jitter):
        raise ValueError(f"jitter: expected None (the default) or a finite number, got {jitter!r}")
    if neighbourhood not in (None, "vae+jitter") and jitter != 0:
        raise ValueError(f"jitter: neighbourhood={neighbourhood!r} adds no pixel jitter, so "
                         f"expected None or 0, got {jitter!r} (use neighbourhood='vae+jitter')")
    if neighbourhood in (None, "vae+jitter") and not jitter > 0:
        raise ValueError(f"jitter: expected a number > 0 with neighbourhood='vae+jitter', got "
                         f"{jitter!r} (use neighbourhood='vae' for none)")
    return float(jitter)


__all__ = ["DEFAULT_BASELINE", "DEFAULT_JITTER", "DEFAULT_KEEP", "DEFAULT_N_NEIGHBOURS",
           "DEFAULT_STORE_CLASSES", "FEATURES", "NEIGHBOURHOODS", "PAPER_MAX_PIXELS",
           "PIXEL_NEIGHBOURHOODS", "PIXELS_MAX_SIDE", "check_jitter", "check_pairing",
           "default_n_features", "effective_jitter"]
