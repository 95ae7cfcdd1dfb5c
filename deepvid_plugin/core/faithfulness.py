"""Deletion and insertion curves: does a saliency map point at the pixels the model uses?

The field's standard test (RISE, Petsiuk, Das and Saenko, BMVC 2018). Rank the pixels by the map,
highest first. **Deletion** sets the top-ranked pixels (all channels) to a baseline value in
``steps`` chunks and records the model's softmax probability of the target class after each chunk:
a faithful map makes it fall fast, so the area under the curve (AUC) is *low*. **Insertion** starts
from the all-baseline image and puts the top pixels back: a faithful map makes the probability rise
fast, so its AUC is *high*. Both curves have ``steps + 1`` points over the fraction axis [0, 1]:
``deletion[0]`` is the model on ``x``, ``deletion[-1] == insertion[0]`` is the model on the blank
image, and ``insertion[-1]`` is the model on ``x`` again.

A number alone does not say much (it depends on the model and the image), so :func:`evidence`
always scores the map next to a random map of the same instance (fixed per instance id, so it is
the same at every epoch) and reports ``better_than_random``: a map that does not beat random at
both deletion and insertion is not trustworthy, whatever else it has going for it.

Exact pixel counts. With ``P = H * W`` pixels, point ``i`` has the top ``floor(i * P / steps)``
pixels removed (deletion) or restored (insertion), so chunk sizes differ by at most one and the last
point covers every pixel. The fraction axis uses those exact counts, ``floor(i * P / steps) / P``.
Ties in the map are broken by a stable sort (the lower flat pixel index first), so equal maps
always give equal curves.

Cost, and why ``DEFAULT_STEPS = 12``. :func:`evidence` runs, per instance, the map's and the random
map's deletion and insertion curves. Their ends are shared (``x`` and the blank image are each
forwarded once), so one instance costs ``4 * (steps - 1) + 2`` forward images. The budget is 10% of
an epoch's teacher forwards at 512 neighbours, i.e. ``<= 51.2`` images. ``steps = 13`` would use 50
of them (9.8%); ``steps = 12`` uses 46 (9.0%) and leaves room for the caller's own extra forwards
(such as the instance itself). The benchmark passes ``steps=16`` (66 images) to compare with the
published table. All images of all instances, maps and steps go through the model in chunks of
``batch_size`` (fewer for large images, :mod:`~deepvid_plugin.core.batching`), built lazily so
memory stays at one chunk.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from deepvid_plugin.core import checks
from deepvid_plugin.core.batching import rows_per_chunk
from deepvid_plugin.core.guard import frozen_eval, module_device_dtype, preserved_rng
from deepvid_plugin.core.outputs import OUTPUTS, check_outputs, check_transform, logits_of
from deepvid_plugin.core.outputs import probabilities as _probabilities
from deepvid_plugin.core.seeds import instance_seed

DEFAULT_STEPS = 12
__all__ = ["DEFAULT_STEPS", "OUTPUTS", "Curves", "deletion_insertion", "evidence",
           "random_saliency"]

# Salt for the random map's seed, so it is not drawn from the same stream as the instance's
# neighbour noise (both are seeded from (seed, instance id)).
_RANDOM_MAP_SALT = zlib.crc32(b"deepvid/faithfulness/random-map")


@dataclasses.dataclass(frozen=True)
class Curves:
    """Deletion/insertion curves of K instances: probabilities at ``steps + 1`` points, and AUCs."""

    deletion: np.ndarray  # (K, S+1) target-class probability after removing each chunk
    insertion: np.ndarray  # (K, S+1) target-class probability after restoring each chunk
    deletion_auc: np.ndarray  # (K,) trapezoid area over the fraction axis; lower is better
    insertion_auc: np.ndarray  # (K,) higher is better
    fractions: np.ndarray | None = None  # (S+1,) the exact fraction of pixels at each point


def random_saliency(ids: Sequence[str], shape: tuple[int, int], seed: int) -> torch.Tensor:
    """(K, H, W) uniform random maps, one per instance id, identical for the same (id, seed)."""
    ids = checks.ids(ids, None)
    if (not isinstance(shape, Sequence) or len(shape) != 2
            or not all(isinstance(s, int) and s > 0 for s in shape)):
        raise ValueError(f"shape: expected (H, W) with two positive ints, got {shape!r}")
    maps = []
    for iid in ids:
        gen = torch.Generator(device="cpu").manual_seed(instance_seed(seed, iid) ^ _RANDOM_MAP_SALT)
        maps.append(torch.rand(tuple(shape), generator=gen))
    if not maps:
        return torch.empty(0, *shape)
    return torch.stack(maps)


def deletion_insertion(model: object, x: torch.Tensor, saliency: object, target: object, *,
                       steps: int = DEFAULT_STEPS, baseline: float = 0.0,
                       batch_size: int = 512, outputs: str = "logits",
                       output_transform: Callable[[Any], Any] | None = None) -> Curves:
    """Deletion and insertion curves of one saliency map per instance.

    ``x`` is (K, C, H, W); ``saliency`` is (K, H, W) or (K, C, H, W) (summed over channels);
    ``target`` holds K class indices. ``outputs`` (:mod:`~deepvid_plugin.core.outputs`) says
    what the target's probability is: its softmax (``"logits"``, the default), the output
    itself (``"probs"``: the model ends in a softmax) or its own sigmoid (``"sigmoid"``:
    independent classes, multi-label). ``output_transform`` takes the model's output to the
    logits (HuggingFace outputs, dicts with ``"logits"`` and tuples are recognised without it).
    The model runs in eval mode under no_grad, with every ``training`` flag and the RNG states
    restored afterwards.
    """
    x, maps, tgt = _check_inputs(x, saliency, target, steps, baseline, batch_size)
    head = (check_outputs(outputs), check_transform("output_transform", output_transform))
    dele, ins = _curves(model, x, [maps], tgt, steps, float(baseline), batch_size, head)
    return _pack(dele[0], ins[0], _fractions(steps, x.shape[-2] * x.shape[-1]))


def random_region_saliency(ids: Sequence[str], segments: torch.Tensor, seed: int) -> torch.Tensor:
    """(K, H, W) random maps constant on each region of ``segments`` (K, H, W) (region indices
    ``0..F-1``): one uniform value per region, drawn back; identical for the same (id, seed)."""
    segments = torch.as_tensor(segments).long()
    n = int(segments.max()) + 1
    per_region = random_saliency(ids, (1, n), seed)[:, 0]  # (K, F)
    return torch.stack([per_region[k][segments[k]] for k in range(segments.shape[0])])


def evidence(model: object, x: torch.Tensor, saliency: object, target: object,
             ids: Sequence[str], *, seed: int = 0, steps: int = DEFAULT_STEPS,
             batch_size: int = 512, outputs: str = "logits",
             output_transform: Callable[[Any], Any] | None = None,
             segments: object = None) -> list[dict]:
    """The map's deletion/insertion evidence next to a random map's, one JSON-ready dict each.

    The map and its random baseline are evaluated in one batched pass over the model; arguments
    as in :func:`deletion_insertion`, plus the K instance ``ids`` that seed the random maps.

    ``segments`` (K, H, W), for a map that is constant on regions (superpixels, patches): the
    random baseline is then random *per region* too. A per-pixel random map scatters deleted
    pixels over the whole image, and on natural images that speckle alone destroys the
    prediction (measured on photos at 32 px: a random pixel order had a lower deletion AUC than
    most region maps), so a region map would be judged against a baseline of another kind;
    deleting random regions is the like-for-like chance level. The dicts then say
    ``"random_map": "regions"``.
    """
    x, maps, tgt = _check_inputs(x, saliency, target, steps, 0.0, batch_size)
    head = (check_outputs(outputs), check_transform("output_transform", output_transform))
    ids = checks.ids(ids, x.shape[0])
    if segments is None:
        rand = random_saliency(ids, (x.shape[-2], x.shape[-1]), seed).to(maps.device)
    else:
        seg = torch.as_tensor(segments)
        if tuple(seg.shape) != (x.shape[0], *x.shape[-2:]) or seg.is_floating_point():
            raise ValueError(f"segments: expected ({x.shape[0]}, {x.shape[-2]}, {x.shape[-1]}) "
                             f"integer region indices, got {seg.dtype} of shape "
                             f"{tuple(seg.shape)}")
        rand = random_region_saliency(ids, seg, seed).to(maps.device)
    dele, ins = _curves(model, x, [maps, rand], tgt, steps, 0.0, batch_size, head)
    frac = _fractions(steps, x.shape[-2] * x.shape[-1])
    mine, base = _pack(dele[0], ins[0], frac), _pack(dele[1], ins[1], frac)
    out = []
    for k in range(x.shape[0]):
        d_auc, i_auc = float(mine.deletion_auc[k]), float(mine.insertion_auc[k])
        rd_auc, ri_auc = float(base.deletion_auc[k]), float(base.insertion_auc[k])
        out.append({
            "deletion_auc": d_auc,
            "insertion_auc": i_auc,
            "random_deletion_auc": rd_auc,
            "random_insertion_auc": ri_auc,
            "deletion_curve": [float(v) for v in mine.deletion[k]],
            "insertion_curve": [float(v) for v in mine.insertion[k]],
            "evidence_steps": int(steps),
            "better_than_random": bool(d_auc < rd_auc and i_auc > ri_auc),
        })
        if segments is not None:
            out[-1]["random_map"] = "regions"
    return out


# ---------------------------------------------------------------------------------------------
# internals


def _fractions(steps: int, n_pixels: int) -> np.ndarray:
    return _counts(steps, n_pixels).astype(np.float64) / n_pixels


def _counts(steps: int, n_pixels: int) -> np.ndarray:
    """Cumulative pixel counts floor(i * P / steps), i = 0..steps: balanced chunks, last = P."""
    return (np.arange(steps + 1, dtype=np.int64) * n_pixels) // steps


def _auc(curves: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    # Written out rather than np.trapezoid, which numpy < 2.0 lacks.
    return (0.5 * (curves[:, 1:] + curves[:, :-1]) * np.diff(fractions)).sum(axis=1)


def _pack(dele: np.ndarray, ins: np.ndarray, fractions: np.ndarray) -> Curves:
    return Curves(dele, ins, _auc(dele, fractions), _auc(ins, fractions), fractions)


def _positions(saliency: torch.Tensor) -> torch.Tensor:
    """(K, P) rank of each pixel (0 = most salient); ties keep flat pixel order (stable sort)."""
    flat = saliency.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    pos = torch.empty_like(order)
    ranks = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    pos.scatter_(1, order, ranks)
    return pos


def _curves(model: object, x: torch.Tensor, maps: list[torch.Tensor], target: torch.Tensor,
            steps: int, baseline: float, batch_size: int,
            head: tuple[str, Callable[[Any], Any] | None]) -> tuple[np.ndarray, np.ndarray]:
    """(M, K, S+1) deletion and insertion curves for M maps, through one chunked model pass.

    Rows to forward, per instance: x (0 pixels removed), the blank image (all removed), then the
    S-1 interior points of each map's deletion and insertion curves. A row is (instance, map,
    is_insertion, count); its image keeps pixel p when ``(rank[p] >= count) != is_insertion``.
    """
    k_n, _, h, w = x.shape
    n_pix, n_maps = h * w, len(maps)
    counts = torch.as_tensor(_counts(steps, n_pix))
    pos = torch.stack([_positions(m) for m in maps]).to(x.device)  # (M, K, P)

    inner = counts[1:-1]
    per_inst_map = torch.cat([
        torch.stack([torch.zeros_like(inner), inner], 1),  # deletion interior
        torch.stack([torch.ones_like(inner), inner], 1),  # insertion interior
    ])  # (2(S-1), 2): is_insertion, count
    rows = []
    for k in range(k_n):
        rows.append(torch.tensor([[k, 0, 0, 0], [k, 0, 0, n_pix]]))
        for m in range(n_maps):
            kk = torch.full((len(per_inst_map), 1), k)
            mm = torch.full((len(per_inst_map), 1), m)
            rows.append(torch.cat([kk, mm, per_inst_map], 1))
    rows_t = torch.cat(rows)  # (R, 4)

    device, dtype = module_device_dtype(model)
    probs = torch.empty(len(rows_t), dtype=torch.float64)
    chunk = rows_per_chunk(batch_size, x[0].numel())  # large images: fewer per chunk
    with preserved_rng(), frozen_eval(model):
        for start in range(0, len(rows_t), chunk):
            r = rows_t[start:start + chunk]
            kk, mm, is_ins, cnt = (r[:, j].to(x.device) for j in range(4))
            keep = (pos[mm, kk] >= cnt[:, None]) != is_ins.bool()[:, None]
            imgs = torch.where(keep.view(-1, 1, h, w), x[kk], torch.full((), baseline,
                                                                         dtype=x.dtype,
                                                                         device=x.device))
            out = model(imgs.to(device=device, dtype=dtype))
            probs[start:start + len(r)] = _target_prob(out, target[kk.cpu()], len(r), *head)

    # Reassemble: per instance, row 0 = x, row 1 = blank, then per map 2(S-1) interior rows.
    per_inst = 2 + n_maps * 2 * (steps - 1)
    p = probs.view(k_n, per_inst)
    p_x, p_blank = p[:, 0:1], p[:, 1:2]
    body = p[:, 2:].reshape(k_n, n_maps, 2, steps - 1)
    dele = torch.cat([p_x[:, None].expand(k_n, n_maps, 1), body[:, :, 0],
                      p_blank[:, None].expand(k_n, n_maps, 1)], 2)
    ins = torch.cat([p_blank[:, None].expand(k_n, n_maps, 1), body[:, :, 1],
                     p_x[:, None].expand(k_n, n_maps, 1)], 2)
    return dele.transpose(0, 1).numpy(), ins.transpose(0, 1).numpy()


def _target_prob(out: object, target: torch.Tensor, n: int, outputs: str,
                 output_transform: Callable[[Any], Any] | None) -> torch.Tensor:
    out = logits_of(out, output_transform, n=n)
    if int(target.max()) >= out.shape[1]:
        raise ValueError(f"target: expected class indices in [0, {out.shape[1]}) (the model has "
                         f"{out.shape[1]} outputs), got {int(target.max())}")
    if not torch.isfinite(out).all():
        raise ValueError("model output: expected finite values, got NaN or inf")
    prob = _probabilities(out, outputs)
    return prob.gather(1, target.to(out.device)[:, None]).squeeze(1).cpu()


def _check_inputs(x: object, saliency: object, target: object, steps: object, baseline: object,
                  batch_size: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        got = (f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor)
               else type(x).__name__)
        raise ValueError(f"x: expected a float tensor of shape (K, C, H, W), got {got}")
    if x.shape[0] == 0:
        raise ValueError("x: expected at least one instance, got 0")
    checks.integer("steps", steps, 2)
    checks.integer("batch_size", batch_size, 1)
    if (isinstance(baseline, bool) or not isinstance(baseline, (int, float))
            or not math.isfinite(baseline)):
        raise ValueError(f"baseline: expected a finite number, got {baseline!r}")
    k_n, c, h, w = x.shape
    sal = torch.as_tensor(saliency)
    if tuple(sal.shape) == (k_n, c, h, w):
        sal = sal.sum(1)
    elif tuple(sal.shape) != (k_n, h, w):
        raise ValueError(f"saliency: expected shape ({k_n}, {h}, {w}) or ({k_n}, {c}, {h}, {w}) "
                         f"to match x, got {tuple(sal.shape)}")
    sal = sal.detach().to(device=x.device, dtype=torch.float64)
    bad = (~torch.isfinite(sal)).flatten(1).sum(1)
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0])
        raise ValueError(f"saliency: instance {k} has {int(bad[k])} non-finite values")
    tgt = torch.as_tensor(target)
    if tgt.dim() != 1 or tgt.shape[0] != k_n:
        raise ValueError(f"target: expected {k_n} class indices (one per image in x), got shape "
                         f"{tuple(tgt.shape)}")
    if tgt.is_floating_point() or tgt.is_complex() or tgt.dtype == torch.bool:
        raise ValueError(f"target: expected integer class indices, got dtype {tgt.dtype}")
    if int(tgt.min()) < 0:
        raise ValueError(f"target: expected class indices >= 0, got {int(tgt.min())}")
    return x.detach(), sal, tgt.long().cpu()
