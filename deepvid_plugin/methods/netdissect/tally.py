"""The additive pieces of a dissection, so that probe shards (DDP ranks) can be combined exactly.

A dissection has two passes over the probe set:

1. **Top activations** (:class:`LayerTops`): per unit, the ``k + 1`` largest activations at the
   layer's own resolution, where ``k = round(quantile * N * h * w)`` over the *whole* probe set.
   The global ``k + 1`` largest values are contained in the union of every shard's ``k + 1``
   largest, so merging shards and taking the ``(k + 1)``-th largest of the union gives exactly
   the threshold a single process gets: ``activation > threshold`` then marks the top ``k``.
2. **Tallies** (:class:`LayerTally`): with the shared thresholds, integer counts per shard
   (mask-concept intersections, mask sizes per category gate, label sizes). Integer sums do not
   depend on order, so summing shards equals one process exactly. The strongest images per unit
   are merged by value with ties broken by probe index, which is also shard-independent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch


@dataclasses.dataclass(frozen=True, eq=False)
class LayerTops:
    """Per unit, the largest activations of one shard (descending, padded with -inf)."""

    layer: str
    shape: tuple[int, int, int]  # (units, h, w)
    values: torch.Tensor  # (U, k + 1) float32, on CPU
    count: int  # activations seen per unit in this shard (images * h * w)


@dataclasses.dataclass(frozen=True, eq=False)
class LayerTally:
    """Integer counts of one layer over one shard of the probe set (CPU tensors)."""

    layer: str
    shape: tuple[int, int, int]
    intersection: torch.Tensor  # (U, C) int64: mask pixels carrying each label
    unit_pixels_by_category: torch.Tensor  # (U, n_cat) int64: mask pixels in images of the category
    unit_pixels: torch.Tensor  # (U,) int64: mask pixels in all images
    label_pixels: torch.Tensor  # (C,) int64: label pixels (image-level labels count S * S)
    pixels: int  # label-resolution pixels seen (images * S * S)
    top_values: torch.Tensor  # (U, m) float32: strongest per-image maxima, descending
    top_images: torch.Tensor  # (U, m) int64: their probe indices (-1 = fewer images than m)


def quantile_rank(quantile: float, count: int) -> int:
    """k, the number of activations per unit that lie above the threshold (at least 1)."""
    if count < 2:
        raise ValueError(f"count: expected at least 2 activations per unit, got {count}")
    return int(min(max(round(quantile * count), 1), count - 1))


def merge_top(values: torch.Tensor, new: torch.Tensor, keep: int) -> torch.Tensor:
    """The ``keep`` largest of two (U, *) value tensors, descending."""
    both = torch.cat([values, new], 1)
    return both.topk(min(keep, both.shape[1]), dim=1).values


def merge_images(values: torch.Tensor, images: torch.Tensor, new_values: torch.Tensor,
                 new_images: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``keep`` strongest (value, image) pairs per unit, ties broken by the smaller index, so
    the result does not depend on how the probe set was split."""
    v = torch.cat([values, new_values], 1)
    i = torch.cat([images, new_images], 1)
    big = torch.iinfo(torch.int64).max
    order = torch.sort(torch.where(i < 0, big, i), dim=1, stable=True).indices
    v, i = v.gather(1, order), i.gather(1, order)
    order = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :keep]
    return v.gather(1, order), i.gather(1, order)


def thresholds_from(tops: Sequence[dict[str, LayerTops]], quantile: float,
                    n_images: int) -> dict[str, torch.Tensor]:
    """Per layer, the exact per-unit threshold from every shard's top activations."""
    if not tops:
        raise ValueError("tops: expected at least one shard's top activations, got none")
    out = {}
    for name in tops[0]:
        parts = [t[name] for t in tops]
        shape = parts[0].shape
        total = sum(p.count for p in parts)
        if total != n_images * shape[1] * shape[2]:
            raise ValueError(f"tops[{name!r}]: expected the shards to cover the {n_images} probe "
                             f"images ({n_images * shape[1] * shape[2]} activations per unit), "
                             f"got {total}")
        k = quantile_rank(quantile, total)
        merged = torch.cat([p.values for p in parts], 1).topk(k + 1, dim=1).values
        out[name] = merged[:, k].contiguous()  # the (k + 1)-th largest: "> t" keeps the top k
    return out


def sum_tallies(tallies: Sequence[dict[str, LayerTally]], keep: int) -> dict[str, LayerTally]:
    """Add the shards' tallies (exact: integers) and merge their strongest images."""
    if not tallies:
        raise ValueError("tallies: expected at least one shard's tallies, got none")
    out = {}
    for name in tallies[0]:
        parts = [t[name] for t in tallies]
        acc = parts[0]
        for p in parts[1:]:
            tv, ti = merge_images(acc.top_values, acc.top_images, p.top_values, p.top_images, keep)
            acc = LayerTally(
                layer=name, shape=acc.shape, intersection=acc.intersection + p.intersection,
                unit_pixels_by_category=acc.unit_pixels_by_category + p.unit_pixels_by_category,
                unit_pixels=acc.unit_pixels + p.unit_pixels,
                label_pixels=acc.label_pixels + p.label_pixels, pixels=acc.pixels + p.pixels,
                top_values=tv, top_images=ti)
        out[name] = acc
    return out


def iou_matrix(intersection: np.ndarray, unit_pixels_by_category: np.ndarray,
               label_pixels: np.ndarray, label_category: np.ndarray) -> np.ndarray:
    """IoU = |M ∩ L| / |M ∪ L| per unit and label, where |M| counts only the mask pixels in
    images that carry labels of the label's category (the original gate), so
    |M ∪ L| = |M|_cat + |L| - |M ∩ L|. Zero when both are empty."""
    inter = np.asarray(intersection, dtype=np.float64)
    union = (np.asarray(unit_pixels_by_category, dtype=np.float64)[:, label_category]
             + np.asarray(label_pixels, dtype=np.float64)[None, :] - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
