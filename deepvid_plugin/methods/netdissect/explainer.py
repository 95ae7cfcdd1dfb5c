"""Network Dissection as an explainer of kind ``netdissect``: a callback runs it every N epochs.

Each explained epoch gives one record per dissected layer (subject = the layer's name; the
layout is in :mod:`deepvid_plugin.methods.netdissect.kind`). The random-initialisation baseline is
computed once, at the first explanation, on a re-initialised deep copy of the model (the user's
model is never touched), and travels in every record as per-subject arrays, which the sinks
store once per layer: the views draw it as the chance band.

Probe thumbnails: records must be viewable without the probe set, but storing the strongest
probe images of every unit at every epoch would repeat the same pictures over and over. So a
fixed, evenly spaced subset of ``n_thumbnails`` probe images is stored once per layer, and every
epoch stores, per unit, which of *them* it responds to most and its mask on them (bytes, not
pictures). The engine's own strongest images over the whole probe set are kept as indices too.

DDP (``sharding = "collective"``): every rank explains, with the callback's ``context.group``;
the dissection (and the baseline) shard the probe images over the ranks
(:meth:`NetDissect.dissect`), every rank gets the whole result, and rank zero alone builds the
records (the thumbnails' forward pass included).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from deepvid_plugin.core import checks
from deepvid_plugin.core.explainer import ExplainContext
from deepvid_plugin.core.record import Record
from deepvid_plugin.methods.netdissect.engine import LayerDissection, NetDissect
from deepvid_plugin.methods.netdissect.kind import KIND, MAX_IOU_ENTRIES

MAX_THUMBNAILS = 127


class NetDissectExplainer:
    """Network Dissection of ``netdissect``'s layers every ``every_n_epochs`` epochs.

    Args:
        netdissect: the engine (probe set, layers, quantile, threshold, input transform).
        every_n_epochs: explained at epochs 0, N, 2N, ...
        baseline: compute the random-initialisation baseline (once) and store it with the run.
        baseline_seed: the seed of that initialisation.
        n_thumbnails: probe images stored once per layer for the views (at most 127).
        top_k: strongest thumbnails (with the unit's mask) stored per unit and epoch.

    Example::

        >>> import torch
        >>> def cnn():
        ...     return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        ...                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        ...                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                                torch.nn.Linear(8, 3))
        >>> from deepvid_plugin.explain import (ConceptSet, ExplainContext, NetDissect,
        ...                                     NetDissectExplainer)
        >>> probe = ConceptSet.synthetic(n=40, size=16, seed=0)
        >>> e = NetDissectExplainer(NetDissect(probe, ["3"]), baseline=False)
        >>> e.prepare(ExplainContext(x=torch.rand(1, 3, 16, 16), ids=("a",)))
        >>> [(r.kind, r.subject) for r in e.explain(cnn(), step=0)]
        [('netdissect', '3')]
    """

    kind = "netdissect"
    sharding = "collective"  # probe images over the ranks (see the module docstring)

    def __init__(self, netdissect: NetDissect, *, every_n_epochs: int = 5, baseline: bool = True,
                 baseline_seed: int = 0, n_thumbnails: int = 64, top_k: int = 4):
        if not isinstance(netdissect, NetDissect):
            raise TypeError(f"netdissect: expected a deepvid_plugin.methods.netdissect.NetDissect,"
                            f" got {type(netdissect).__name__}")
        if not isinstance(baseline, bool):
            raise TypeError(f"baseline: expected a bool, got {type(baseline).__name__}")
        self.netdissect = netdissect
        self.every_n_epochs = checks.integer("every_n_epochs", every_n_epochs, 1)
        self.baseline = baseline
        self.baseline_seed = checks.integer("baseline_seed", baseline_seed, 0)
        self.n_thumbnails = checks.integer("n_thumbnails", n_thumbnails, 1)
        if self.n_thumbnails > MAX_THUMBNAILS:
            # the JSON API serves 2-d arrays (top_thumbs) as 8-bit maps: indices stay exact
            # only up to 127
            raise ValueError(f"n_thumbnails: expected at most {MAX_THUMBNAILS}, got "
                             f"{n_thumbnails}")
        self.top_k = checks.integer("top_k", top_k, 1)
        n = len(netdissect.concepts)
        self._thumbs = np.unique(np.linspace(0, n - 1, min(self.n_thumbnails, n)).round()
                                 .astype(np.int64))
        self._context: ExplainContext | None = None
        self._baseline: dict[str, dict[str, np.ndarray]] | None = None

    def settings(self) -> dict[str, Any]:
        nd = self.netdissect
        return {"method": "netdissect", "quantile": nd.quantile,
                "iou_threshold": nd.iou_threshold, "n_probe": len(nd.concepts),
                "probe": nd.concepts.source or "ConceptSet", "baseline": self.baseline,
                "baseline_seed": self.baseline_seed, "n_thumbnails": len(self._thumbs),
                "top_k": self.top_k}

    # ---- the explainer protocol -------------------------------------------------------------
    def prepare(self, context: ExplainContext) -> None:
        self._context = context

    def explain(self, model: torch.nn.Module, step: int) -> list[Record]:
        step = checks.integer("step", step)
        nd = self.netdissect
        group = None if self._context is None else self._context.group
        if self.baseline and self._baseline is None:
            # a deep copy with fresh weights: the user's model and the RNGs stay as they were
            self._baseline = {r.layer: _units(r) for r in nd.baseline(
                model, seed=self.baseline_seed, group=group)}
        # sharded over the callback's ranks, or all here (never an unasked-for collective)
        results = nd.dissect(model, distributed=False, group=group)
        if group is not None and not group.is_zero:
            return []  # rank zero holds the same result and writes
        tops = self._thumbnail_tops(model, results)
        class_names = [] if self._context is None or self._context.class_names is None \
            else list(self._context.class_names)
        return [self._record(r, step, *tops[r.layer], class_names) for r in results]

    def state_dict(self) -> dict[str, Any]:
        if self._baseline is None:
            return {}
        # tensors and plain values only, so a checkpoint that refuses pickled code loads it
        return {"baseline": {layer: {k: torch.from_numpy(v.copy()) for k, v in b.items()}
                             for layer, b in self._baseline.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping):
            raise TypeError(f"state: expected a mapping, got {type(state).__name__}")
        base = state.get("baseline")
        if base is None:
            return
        if not isinstance(base, Mapping):
            raise TypeError(f"state['baseline']: expected a mapping of layers, got "
                            f"{type(base).__name__}")
        self._baseline = {str(layer): {k: torch.as_tensor(v).numpy() for k, v in b.items()}
                          for layer, b in base.items()}

    # ---- internals --------------------------------------------------------------------------
    def _thumbnail_tops(self, model: torch.nn.Module, results: list[LayerDissection]
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per layer: each unit's ``top_k`` strongest thumbnails (by the map's maximum, as the
        engine ranks images) and its mask on them, ``(U, T)`` int and ``(U, T, S, S)`` uint8."""
        nd, idx = self.netdissect, self._thumbs
        names = [r.layer for r in results]
        thr = {r.layer: torch.from_numpy(r.thresholds) for r in results}
        acts: dict[str, list[torch.Tensor]] = {n: [] for n in names}

        def keep(_start: int, feats: dict[str, torch.Tensor]) -> None:
            for n in names:
                acts[n].append(feats[n].float().cpu())

        nd._forward(model, idx, names, keep)
        s, k = nd.concepts.size, min(self.top_k, len(idx))
        out = {}
        for n in names:
            a = torch.cat(acts[n])  # (P, U, h, w)
            order = a.amax((2, 3)).topk(k, dim=0).indices.T  # (U, T)
            units = torch.arange(a.shape[1])[:, None]
            maps = a[order, units]  # (U, T, h, w): unit u's map on its t-th image
            up = F.interpolate(maps, size=(s, s), mode="bilinear", align_corners=False)
            masks = (up > thr[n].to(up.dtype)[:, None, None, None]).to(torch.uint8)
            out[n] = (order.numpy().astype(np.int16), masks.numpy())
        return out

    def _record(self, r: LayerDissection, step: int, top_thumbs: np.ndarray,
                top_masks: np.ndarray, class_names: list[str]) -> Record:

        cs = self.netdissect.concepts
        units = _units(r)
        arrays: dict[str, np.ndarray] = {
            "label": units["label"], "iou": units["iou"], "detector": units["detector"],
            "top_probe": r.top_images.astype(np.int32), "top_thumbs": top_thumbs,
            "top_masks": top_masks, "probe_index": self._thumbs.astype(np.int32),
            "probe_images": _to_uint8(cs.images[torch.from_numpy(self._thumbs)]),
        }
        arrays["image"] = _mosaic(arrays["probe_images"])
        if r.iou.size <= MAX_IOU_ENTRIES:
            arrays["iou_all"] = r.iou
        base = None if self._baseline is None else self._baseline.get(r.layer)
        if base is not None:
            arrays.update({"baseline_label": base["label"], "baseline_iou": base["iou"],
                           "baseline_unique": base["unique"]})
        meta = {"layer": r.layer, "shape": [int(v) for v in r.shape], "labels": list(r.labels),
                "label_category": list(r.label_category), "categories": list(cs.categories),
                "unique_detectors": {c: int(r.unique_detectors.get(c, 0))
                                     for c in cs.categories},
                "quantile": r.quantile, "iou_threshold": r.iou_threshold, "n_probe": len(cs),
                "class_names": class_names, "label": None}
        return KIND.record(r.layer, step, arrays, meta=meta, settings=self.settings())


def _units(r: LayerDissection) -> dict[str, np.ndarray]:
    """A dissection's per-unit label index, IoU and detector flag, and its unique detectors per
    category of the probe set (as arrays, the way the record stores them)."""
    index = {name: i for i, name in enumerate(r.labels)}
    return {"label": np.array([index[u["label"]] for u in r.units], np.int16),
            "iou": np.array([u["iou"] for u in r.units], np.float32),
            "detector": np.array([u["detector"] for u in r.units], np.uint8),
            # in the probe set's category order, as the engine builds unique_detectors
            "unique": np.array(list(r.unique_detectors.values()), np.int16)}


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    # probe images are 8-bit values in [0, 1]: uint8 stores them exactly in a quarter the bytes
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _mosaic(images: np.ndarray, n: int = 2) -> np.ndarray:
    """A 2x2 mosaic of the first thumbnails, float16 in [0, 1]: the layer's row picture."""
    p, c, s, _ = images.shape
    grid = np.zeros((c, n * s, n * s), np.float16)
    for i in range(min(p, n * n)):
        y, x = divmod(i, n)
        grid[:, y * s:(y + 1) * s, x * s:(x + 1) * s] = images[i] / 255.0
    return grid


__all__ = ["NetDissectExplainer"]
