"""Natural-image tasks with a planted evidence region, built offline from bundled photographs.

Each image is smoothed noise (matched to the photographs' mean and contrast, so it carries no
class information) with one patch cut from a class's photograph pasted at a random position: the
patch is the only evidence, and its box is known exactly, so a faithful explanation must put its
mass there. The photographs ship inside scikit-image (``skimage.data``: textures and photos that
need no download), so the tasks build on a machine without network.

Train and test patches come from disjoint parts of each photograph (the left 70% and the right
30%), so a model that classifies the test set has learnt the texture, not the pixels.

Example::

    >>> from deepvid_plugin.demo.photos import planted_photos
    >>> task = planted_photos(8, size=32, seed=0)
    >>> tuple(task.x.shape), tuple(task.boxes.shape), task.class_names
    ((8, 3, 32, 32), (8, 4), ('coffee', 'chelsea', 'astronaut', 'rocket'))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

#: colour photographs (the default) and grayscale textures, all in ``skimage.data``.
TEXTURES = ("brick", "grass", "gravel", "moon")
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")
#: the patch covers this share of the image's side (0.375 -> 14% of the pixels, as in issue 18).
PATCH_SIDE = 0.375
_TRAIN_SHARE = 0.7  # train crops come from the left 70% of each photograph, test from the rest


@dataclasses.dataclass(frozen=True)
class PlantedTask:
    x: torch.Tensor  # (N, C, S, S) float32 in [0, 1]
    y: torch.Tensor  # (N,) class index = the photograph the patch was cut from
    boxes: torch.Tensor  # (N, 4) int: top, left, bottom, right (exclusive) of the patch
    class_names: tuple[str, ...]

    def masks(self) -> torch.Tensor:
        """(N, S, S) bool: the planted region of each image."""
        n, _, h, w = self.x.shape
        yy = torch.arange(h).view(1, h, 1)
        xx = torch.arange(w).view(1, 1, w)
        t, le, b, r = (self.boxes[:, i].view(n, 1, 1) for i in range(4))
        return (yy >= t) & (yy < b) & (xx >= le) & (xx < r)


def _load(names: Sequence[str], colour: bool) -> list[torch.Tensor]:
    try:
        from skimage import data
    except ImportError as e:  # optional dependency: say how to get it
        raise ImportError("the photo tasks need scikit-image: pip install scikit-image") from e
    out = []
    for name in names:
        a = np.asarray(getattr(data, name)(), dtype=np.float32) / 255.0
        a = a[..., :3] if a.ndim == 3 else a
        if colour and a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        if not colour and a.ndim == 3:
            a = a @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        t = torch.from_numpy(np.ascontiguousarray(a))
        out.append(t.permute(2, 0, 1) if t.dim() == 3 else t.unsqueeze(0))
    return out


def planted_photos(n: int, size: int = 32, seed: int = 0, split: str = "train",
                   colour: bool = True, names: Sequence[str] | None = None) -> PlantedTask:
    """``n`` images of ``size`` x ``size`` pixels, one planted photo patch each.

    Args:
        n: number of images (balanced over the classes, shuffled).
        size: side in pixels (>= 16).
        seed: seeds positions, crops and noise.
        split: ``"train"`` or ``"test"``: which part of each photograph the patches come from.
        colour: RGB photographs (default) or grayscale textures. Measured with a small CNN at
            32 px: random pixel deletion turns any texture into "grass"/"gravel"-like speckle,
            so deletion curves on the textures say little; the photographs do not have that
            problem.
        names: the ``skimage.data`` photographs, one per class (default :data:`TEXTURES` or
            :data:`PHOTOS`).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size: expected an int >= 16, got {size!r}")
    colour = bool(colour)
    names = tuple(names or (PHOTOS if colour else TEXTURES))
    photos = _load(names, colour)
    g = torch.Generator().manual_seed(seed * 2 + (split == "test"))
    c = photos[0].shape[0]
    mean = torch.stack([p.mean((1, 2)) for p in photos]).mean(0).view(c, 1, 1)
    std = float(torch.stack([p.std() for p in photos]).mean())
    y = torch.arange(n) % len(names)
    y = y[torch.randperm(n, generator=g)]
    side = max(4, round(size * PATCH_SIDE))
    # Background: noise smoothed at a few pixels' scale, with the photographs' mean and contrast.
    # Mostly shared by the channels (grey blobs with a faint colour cast), as in photographs.
    grid = max(4, size // 8) + 1
    noise = torch.randn(n, 1, grid, grid, generator=g) + 0.3 * torch.randn(n, c, grid, grid,
                                                                          generator=g)
    back = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)
    back = back / back.std((1, 2, 3), keepdim=True).clamp_min(1e-6)
    x = mean + std * back
    boxes = torch.zeros(n, 4, dtype=torch.long)
    for i in range(n):
        photo = photos[int(y[i])]
        ph, pw = photo.shape[1:]
        lo, hi = (0, int(pw * _TRAIN_SHARE)) if split == "train" else (int(pw * _TRAIN_SHARE), pw)
        # A crop 2-4x the patch's side, area-downsampled: the texture at a scale a small model
        # sees, and never twice the same pixels.
        scale = 2.0 + 2.0 * float(torch.rand((), generator=g))
        crop = min(int(side * scale), ph, hi - lo)
        top = int(torch.randint(0, ph - crop + 1, (), generator=g))
        left = lo + int(torch.randint(0, hi - lo - crop + 1, (), generator=g))
        patch = F.interpolate(photo[None, :, top:top + crop, left:left + crop], size=(side, side),
                              mode="area")[0]
        t = int(torch.randint(0, size - side + 1, (), generator=g))
        le = int(torch.randint(0, size - side + 1, (), generator=g))
        x[i, :, t:t + side, le:le + side] = patch
        boxes[i] = torch.tensor([t, le, t + side, le + side])
    return PlantedTask(x.clamp(0, 1).float(), y, boxes, names)


__all__ = ["PHOTOS", "PATCH_SIDE", "TEXTURES", "PlantedTask", "planted_photos"]
