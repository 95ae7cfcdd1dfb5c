"""DeepVID's interpretable features beyond pixels: superpixels or a grid of patches.

A feature is a region of the image. The student reads one number per feature (is the region
switched on?), so its weights are one value per region, drawn back onto the image through the
region map. Regions that follow the image's own edges (superpixels) measured better than a fixed
grid of patches on a planted-patch photo task (see :class:`~deepvid_plugin.explain.DeepVID`):
a grid cell that straddles an object's boundary mixes evidence with background.

:func:`superpixels` is SLIC (Achanta et al., "SLIC Superpixels Compared to State-of-the-art
Superpixel Methods", TPAMI 2012) in a few tensor operations: k-means in (colour, position) space,
each pixel comparing itself only with the centres of the 3 x 3 grid cells around it, on CIELAB
colours of the image min-max scaled to [0, 1] (the model's normalisation does not matter), then
connected fragments smaller than a quarter of a cell merged into a neighbour. Deterministic: no
random initialisation. :func:`grid` is the plain patch grid.

Both return ``(H, W)`` int64 region indices ``0..F-1`` with every index used.
"""

from __future__ import annotations

import math

import torch

#: SLIC's compactness: colour distance (CIELAB units) that weighs as much as one grid step.
COMPACTNESS = 10.0
_ITERATIONS = 10


def grid(height: int, width: int, cells: int | tuple[int, int]) -> torch.Tensor:
    """``cells`` x ``cells`` (or ``(rows, cols)``) patches of (nearly) equal size, row-major."""
    rows, cols = (cells, cells) if isinstance(cells, int) else cells
    rows, cols = min(rows, height), min(cols, width)
    gy = (torch.arange(height) * rows) // height
    gx = (torch.arange(width) * cols) // width
    return gy[:, None] * cols + gx[None, :]


def _lab(image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (3 or 1, H, W): CIELAB of the min-max scaled image (L only for gray)."""
    x = image.float()  # float32: SLIC's distances need no more, and it halves the time
    lo, hi = x.amin(), x.amax()
    x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    if x.shape[0] != 3:
        return 100.0 * x.mean(0, keepdim=True)
    lin = torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    m = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                      [0.019334, 0.119193, 0.950227]], dtype=x.dtype)
    xyz = torch.einsum("ij,jhw->ihw", m, lin) / torch.tensor([0.950456, 1.0, 1.088754],
                                                             dtype=x.dtype).view(3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def superpixels(image: torch.Tensor, n_segments: int,
                compactness: float = COMPACTNESS) -> torch.Tensor:
    """About ``n_segments`` SLIC superpixels of one ``(C, H, W)`` image."""
    if image.dim() != 3:
        raise ValueError(f"image: expected a (C, H, W) tensor, got shape {tuple(image.shape)}")
    _, h, w = image.shape
    feat = _lab(image.detach().cpu())
    step = math.sqrt(h * w / max(1, n_segments))
    rows, cols = max(1, round(h / step)), max(1, round(w / step))
    cell = grid(h, w, (rows, cols))  # each pixel's initial grid cell
    yy, xx = torch.meshgrid(torch.arange(h, dtype=feat.dtype), torch.arange(w, dtype=feat.dtype),
                            indexing="ij")
    pos = torch.stack([yy, xx])  # (2, H, W)
    n = rows * cols
    flat_cell = cell.flatten()
    # Initial centres: the mean colour and position of each grid cell.
    centre_f = _means(feat.flatten(1), flat_cell, n)
    centre_p = _means(pos.flatten(1), flat_cell, n)
    # Candidate centres of each pixel: those of the 3 x 3 grid cells around its own.
    r0, c0 = flat_cell // cols, flat_cell % cols
    cand = [((r0 + dr).clamp(0, rows - 1) * cols + (c0 + dc).clamp(0, cols - 1))
            for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    scale = (compactness / step) ** 2
    pf, pp = feat.flatten(1), pos.flatten(1)
    label = flat_cell
    for _ in range(_ITERATIONS):
        best = torch.full_like(pf[0], float("inf"))
        for c in cand:  # a running minimum: no (9, P) distance table
            d = (centre_f[:, c] - pf).square_().sum(0)
            d.add_((centre_p[:, c] - pp).square_().sum(0), alpha=scale)
            closer = d < best
            best = torch.where(closer, d, best)
            label = torch.where(closer, c, label)
        centre_f = _means(pf, label, n, centre_f)
        centre_p = _means(pp, label, n, centre_p)
    label = _merge_small(label.view(h, w), max(1, int(step * step / 4)))
    return _compact(label)


def _means(values: torch.Tensor, label: torch.Tensor, n: int,
           fallback: torch.Tensor | None = None) -> torch.Tensor:
    """(D, n) mean of ``values`` (D, P) per label; empty labels keep ``fallback``."""
    total = torch.zeros(values.shape[0], n, dtype=values.dtype).index_add_(1, label, values)
    count = torch.zeros(n, dtype=values.dtype).index_add_(0, label, torch.ones_like(label,
                                                                                    dtype=values.dtype))
    mean = total / count.clamp_min(1)
    if fallback is not None:
        mean = torch.where(count > 0, mean, fallback)
    return mean


def _components(label: torch.Tensor) -> torch.Tensor:
    """(H, W) id of each pixel's 4-connected component within its label (the smallest flat index
    in it), by min-propagation with pointer jumping."""
    h, w = label.shape
    comp = torch.arange(h * w).view(h, w)
    big = torch.full_like(comp, h * w)
    # Same-label links to the pixel below and to the right (never wrapping around an edge).
    down = torch.zeros_like(label, dtype=torch.bool)
    down[:-1] = label[:-1] == label[1:]
    right = torch.zeros_like(label, dtype=torch.bool)
    right[:, :-1] = label[:, :-1] == label[:, 1:]
    while True:
        prev = comp
        best = comp
        best = torch.minimum(best, torch.where(down, torch.roll(comp, -1, 0), big))
        best = torch.minimum(best, torch.where(torch.roll(down, 1, 0), torch.roll(comp, 1, 0), big))
        best = torch.minimum(best, torch.where(right, torch.roll(comp, -1, 1), big))
        best = torch.minimum(best, torch.where(torch.roll(right, 1, 1), torch.roll(comp, 1, 1), big))
        flat = best.flatten()
        comp = flat[flat].view(h, w)  # pointer jumping: follow the link once more
        if torch.equal(comp, prev):
            return comp


def _merge_small(label: torch.Tensor, min_size: int) -> torch.Tensor:
    """Region map where every connected fragment of ``label`` is its own region, fragments
    smaller than ``min_size`` pixels merged into a neighbouring one (SLIC's connectivity step)."""
    h, w = label.shape
    comp = _components(label)
    for _ in range(16):
        ids, counts = torch.unique(comp, return_counts=True)
        small = torch.zeros(h * w, dtype=torch.bool)
        small[ids[counts < min_size]] = True
        is_small = small[comp]
        if not bool(is_small.any()):
            break
        # A small fragment joins a neighbouring fragment: a big one, or a small one with a
        # lower id (so two small neighbours never just swap).
        # the lowest such neighbour: index_put_ with repeated indices keeps an unspecified one
        # (it varied from call to call with the threads), and the regions must not
        none = h * w
        donor = torch.full((h * w,), none, dtype=comp.dtype)
        for shift, dim in ((1, 0), (1, 1), (-1, 0), (-1, 1)):
            other = torch.roll(comp, shift, dim)
            valid = torch.ones_like(is_small)
            if dim == 0:
                valid[0 if shift == 1 else -1, :] = False
            else:
                valid[:, 0 if shift == 1 else -1] = False
            take = is_small & valid & (other != comp) & (~small[other] | (other < comp))
            donor.scatter_reduce_(0, comp[take], other[take], reduce="amin")
        donor = torch.where(donor == none, -1, donor)
        moved = is_small & (donor[comp] >= 0)
        if not bool(moved.any()):
            break
        comp = torch.where(moved, donor[comp], comp)
        flat = comp.flatten()  # a donor may itself have moved: follow the chain to its end
        for _ in range(8):
            nxt = torch.where(donor[flat] >= 0, donor[flat], flat)
            if torch.equal(nxt, flat):
                break
            flat = nxt
        comp = flat.view(h, w)
    return comp


def _compact(label: torch.Tensor) -> torch.Tensor:
    """Relabel to 0..F-1 in order of first appearance (row-major): deterministic indices."""
    flat = label.flatten()
    _, first = torch.unique(flat, return_inverse=True)
    # order labels by their first pixel so index 0 is the top-left region
    n = int(first.max()) + 1
    first_pos = torch.full((n,), flat.numel(), dtype=torch.long).scatter_reduce_(
        0, first, torch.arange(flat.numel()), reduce="amin")
    rank = torch.empty(n, dtype=torch.long)
    rank[torch.argsort(first_pos)] = torch.arange(n)
    return rank[first].view(label.shape)


def segments_for(image: torch.Tensor, kind: str, n_features: int) -> torch.Tensor:
    """The region map of one image: ``kind`` ``"superpixels"`` or ``"grid"``."""
    _, h, w = image.shape
    if kind == "grid":
        side = max(1, round(math.sqrt(n_features)))
        return grid(h, w, side)
    return superpixels(image, n_features)


__all__ = ["COMPACTNESS", "grid", "segments_for", "superpixels"]
