"""Network Dissection (Bau et al., CVPR 2017) with the defaults of the authors' NetDissect-Lite.

For every unit (channel) of the chosen convolutional layers:

1. its threshold is the exact top-``quantile`` value over all probe images and positions, at the
   layer's own resolution (running ``topk`` per unit, never ``torch.quantile``, which has size
   limits): ``activation > threshold`` marks the top ``round(quantile * N * h * w)`` activations;
2. each activation map is upsampled bilinearly to the label resolution and thresholded: the
   unit's mask;
3. IoU against every label = |mask ∩ label| / |mask ∪ label|, counted only over images carrying
   labels of that label's category (the original gate; NetDissect-Lite instead gates by the
   categories found under the mask); image-level labels (scenes) cover their whole image;
4. the unit's label is its best-IoU label; it is a detector when that IoU > ``iou_threshold``.

Per layer, unique detectors = the number of distinct labels among detectors, per category.
A unit is a channel of a ``(N, C, h, w)`` map; transformer layers (ViT tokens, Swin's
``(N, h, w, C)``) become such grids automatically or through ``reshape=``
(:mod:`deepvid_plugin.core.layers`), so a ViT block's units are its embedding channels over the
patch grid. The model's output is never read, so any output type works.
Masks are never all held at once: each batch adds integer tallies (see ``tally.py``), which is
also what makes a sharded (DDP) run equal a single-process run exactly.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from deepvid_plugin.core.collective import Group
from deepvid_plugin.core.guard import frozen_eval, module_device_dtype, preserved_rng
from deepvid_plugin.core.layers import grid_of
from deepvid_plugin.core.outputs import check_transform
from deepvid_plugin.methods.netdissect.batch import BatchTally
from deepvid_plugin.methods.netdissect.concepts import ConceptSet
from deepvid_plugin.methods.netdissect.tally import (
    LayerTally,
    LayerTops,
    iou_matrix,
    merge_top,
    quantile_rank,
    sum_tallies,
    thresholds_from,
)

MIN_MAP_SIZE = 4


@dataclasses.dataclass(frozen=True, eq=False)
class LayerDissection:
    """One layer's dissection.

    ``units[i]`` is ``{unit, label, category, iou, detector}`` for unit ``i``; ``iou`` is the full
    ``(units, labels)`` matrix (columns follow ``labels``); ``thresholds`` the per-unit activation
    thresholds; ``mask_fraction`` the share of upsampled probe pixels above each threshold;
    ``top_images`` the probe indices with the strongest per-image maximum, strongest first
    (-1 pads when the probe set is smaller).
    """

    layer: str
    shape: tuple[int, int, int]  # (units, h, w) of the activation maps
    units: list[dict]
    unique_detectors: dict[str, int]
    iou: np.ndarray
    labels: tuple[str, ...]
    label_category: tuple[str, ...]
    thresholds: np.ndarray
    mask_fraction: np.ndarray
    top_images: np.ndarray
    quantile: float
    iou_threshold: float

    @property
    def n_detectors(self) -> int:
        return sum(u["detector"] for u in self.units)

    def __str__(self) -> str:
        uniq = ", ".join(f"{c} {n}" for c, n in self.unique_detectors.items() if n)
        return (f"{self.layer} {self.shape[1]}x{self.shape[2]}: {self.n_detectors}/{self.shape[0]} "
                f"detectors; unique per category: {uniq or 'none'}")


def _explain_channels(model: torch.nn.Module, x: torch.Tensor, transformed: bool,
                      error: RuntimeError) -> None:
    """Name the usual cause of a failed first forward: the probe images are RGB, the model
    takes another number of channels (e.g. a grayscale digits model). Other errors pass."""
    first = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if first is None or first.in_channels == x.shape[1]:
        return
    after = " after transform" if transformed else ""
    raise ValueError(
        f"model: its first convolution takes {first.in_channels}-channel images, but the "
        f"concept probe images are {x.shape[1]}-channel{after} (the probes are RGB); pass "
        f"transform= to NetDissect to map them to the model's input, e.g. "
        f"transform=lambda x: x.mean(1, keepdim=True) for a one-channel model") from error


class NetDissect:
    """Label the units of ``layers`` with the concepts of ``concepts``.

    Args:
        concepts: the probe set (``ConceptSet.synthetic(...)`` or ``ConceptSet.broden(...)``).
        layers: module names (dotted, as in ``model.named_modules()``) or the modules themselves.
        quantile: the top share of each unit's activations that forms its mask.
        iou_threshold: a unit is a detector when its best IoU is above this.
        batch_size: probe images per forward pass.
        transform: applied to each probe batch (float32 RGB in [0, 1]) before the model, e.g. the
            model's input normalisation.
        top_images: how many strongest probe images to keep per unit (for views).
        cache_mb: :meth:`dissect` keeps the first pass's activations for the second pass when
            they fit in this many MB (one forward pass instead of two); 0 always re-runs it.
        reshape: a callable from a layer's output to ``(N, C, h, w)`` (pytorch-grad-cam's
            ``reshape_transform``), for every layer; None finds convolutional, Swin and
            ViT/DeiT token layouts itself.

    The probe tensors and packed label maps are cached on this object per device. Hooks exist only
    inside a call; the model is in eval mode under ``no_grad`` and its modes and the RNGs are
    restored afterwards.

    Example::

        >>> import torch
        >>> def cnn():
        ...     return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        ...                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        ...                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                                torch.nn.Linear(8, 3))
        >>> from deepvid_plugin.explain import ConceptSet, NetDissect
        >>> probe = ConceptSet.synthetic(n=40, size=16, seed=0)
        >>> [layer] = NetDissect(probe, ["3"]).dissect(cnn())
        >>> layer.layer, len(layer.iou)
        ('3', 8)
    """

    def __init__(self, concepts: ConceptSet, layers: Sequence[str | torch.nn.Module],
                 quantile: float = 0.005, iou_threshold: float = 0.04, batch_size: int = 64,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 top_images: int = 8, cache_mb: float = 256.0,
                 reshape: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if not isinstance(concepts, ConceptSet):
            raise TypeError(f"concepts: expected a ConceptSet, got {type(concepts).__name__}")
        if isinstance(layers, (str, torch.nn.Module)) or not len(layers):
            raise ValueError(f"layers: expected a non-empty list of module names or modules, got "
                             f"{layers!r}")
        bad = [x for x in layers if not isinstance(x, (str, torch.nn.Module))]
        if bad:
            raise TypeError(f"layers: expected module names or modules, got {bad!r}")
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile: expected a value in (0, 1), got {quantile!r}")
        if not 0.0 <= iou_threshold < 1.0:
            raise ValueError(f"iou_threshold: expected a value in [0, 1), got {iou_threshold!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if not isinstance(top_images, int) or top_images < 1:
            raise ValueError(f"top_images: expected a positive int, got {top_images!r}")
        if not isinstance(cache_mb, (int, float)) or cache_mb < 0:
            raise ValueError(f"cache_mb: expected a number >= 0, got {cache_mb!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform: expected a callable or None, got {type(transform).__name__}")
        self.concepts = concepts
        self.layers = list(layers)
        self.quantile = float(quantile)
        self.iou_threshold = float(iou_threshold)
        self.batch_size = batch_size
        self.transform = transform
        self.top_images = top_images
        self.cache_mb = float(cache_mb)
        self.reshape = check_transform("reshape", reshape)
        self._names: list[str] | None = None  # resolved names, reused for baselines
        self._cache: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        self._baseline: tuple[tuple, list[LayerDissection]] | None = None
        self._batches = BatchTally(self.top_images)  # keeps per-batch scratch buffers
        self._label_category = torch.from_numpy(concepts.category_of()[1:])

    # ---- the one-call API ------------------------------------------------------------------
    def as_explainer(self, every_n_epochs: int = 5) -> Any:
        """This engine as a callback's explainer (kind ``netdissect``) on that schedule."""
        from deepvid_plugin.methods.netdissect.explainer import NetDissectExplainer

        return NetDissectExplainer(self, every_n_epochs=every_n_epochs)

    def dissect(self, model: torch.nn.Module, distributed: bool | None = None,
                group: Group | None = None) -> list[LayerDissection]:
        """One :class:`LayerDissection` per layer, in the order of ``layers``.

        Under ``torch.distributed`` (``group``, or the default group when ``distributed`` is
        True or, when None, detected) each rank takes every ``world_size``-th probe image, and
        the ranks exchange their top activations and integer tallies (``all_gather_object``, so
        any backend works); every rank returns the same result, equal to a one-process run. A
        failure on one rank raises on every rank (``Group.exchange``): none is left waiting.
        """
        if group is None and distributed is not False:
            group = Group.current()
            dist = torch.distributed
            if distributed and not (dist.is_available() and dist.is_initialized()):
                raise ValueError("distributed: expected an initialised torch.distributed "
                                 "process group for distributed=True, got none")
        if group is None:
            replay: list[dict[str, torch.Tensor]] = []
            thresholds = self.thresholds([self.top_activations(model, _replay=replay)])
            return self.finish([self.tally(model, thresholds, _replay=replay)], thresholds)
        shard = np.arange(group.rank, len(self.concepts), group.world_size)
        thresholds = self.thresholds(group.exchange(self.top_activations, model, shard))
        tallies = group.exchange(self.tally, model, thresholds, shard)
        return self.finish(tallies, thresholds)

    def baseline(self, model_or_factory: torch.nn.Module | Callable[[], torch.nn.Module],
                 seed: int = 0, group: Group | None = None) -> list[LayerDissection]:
        """The same layers at random initialisation: chance level for the detector counts.

        Given a module, a deep copy with every ``reset_parameters()`` re-run (seeded; the user's
        model and the RNGs are untouched); given a factory, ``factory()`` under ``seed``. Computed
        once: later calls with the same architecture (parameter names and shapes) return the
        stored result, so a callback can ask every epoch at no cost. With ``group``, every
        rank of it must call this alike, and the dissection is sharded as :meth:`dissect`'s.
        """
        def signature(m: torch.nn.Module) -> tuple:
            return seed, tuple((n, tuple(p.shape)) for n, p in m.named_parameters())

        if isinstance(model_or_factory, torch.nn.Module):
            from deepvid_plugin.core.sanity import randomize_model

            key = signature(model_or_factory)
            if self._baseline is not None and self._baseline[0] == key:
                return self._baseline[1]
            self._resolve(model_or_factory)  # layers given as modules: learn their names here
            fresh = randomize_model(model_or_factory, seed)
        elif callable(model_or_factory):
            with preserved_rng():
                torch.manual_seed(seed)
                fresh = model_or_factory()
            if not isinstance(fresh, torch.nn.Module):
                raise TypeError(f"model_or_factory: expected a factory returning a Module, got "
                                f"{type(fresh).__name__}")
            key = signature(fresh)
            if self._baseline is not None and self._baseline[0] == key:
                return self._baseline[1]
        else:
            raise TypeError(f"model_or_factory: expected a Module or a callable, got "
                            f"{type(model_or_factory).__name__}")
        # sharded only when asked (group): a rank may call this alone, and a collective would
        # then wait forever
        result = self.dissect(fresh, distributed=False, group=group)
        self._baseline = (key, result)
        return result

    # ---- the shardable steps ---------------------------------------------------------------
    def top_activations(self, model: torch.nn.Module, indices: Sequence[int] | None = None,
                        _replay: list | None = None) -> dict[str, LayerTops]:
        """Step 1 on a shard of probe indices: each unit's ``k + 1`` largest activations, with
        ``k`` set by the *whole* probe set (see ``tally.py`` for why that is exact).

        ``_replay`` (internal): a list that receives every batch's activations while they fit
        in ``cache_mb``, so that :meth:`tally` can skip the second forward pass; it is emptied
        and gets a ``None`` entry when they do not fit."""
        idx = self._indices(indices)
        names = self._resolve(model)
        tops: dict[str, torch.Tensor] = {}
        shapes: dict[str, tuple[int, int, int]] = {}

        budget = [self.cache_mb * 2 ** 20]

        def consume(_start: int, feats: dict[str, torch.Tensor]) -> None:
            if _replay is not None and (not _replay or _replay[-1] is not None):
                budget[0] -= sum(a.numel() * a.element_size() for a in feats.values())
                if budget[0] >= 0:
                    _replay.append(feats)
                else:
                    _replay.clear()
                    _replay.append(None)
            for name, a in feats.items():
                if name not in shapes:
                    shapes[name] = tuple(a.shape[1:])
                    self._warn_small(name, shapes[name])
                u, h, w = shapes[name]
                keep = quantile_rank(self.quantile, len(self.concepts) * h * w) + 1
                flat = a.float().transpose(0, 1).reshape(u, -1)
                prev = tops.get(name)
                if prev is not None and prev.shape[1] == keep:
                    # only values above each unit's current keep-th largest can enter: take
                    # that many from the batch instead of a full top-keep (much cheaper)
                    enter = int((flat > prev[:, -1:]).sum(1, dtype=torch.int32).max())
                    flat = flat.topk(min(enter, flat.shape[1]), dim=1).values
                tops[name] = merge_top(flat.new_empty((u, 0)) if prev is None else prev, flat, keep)

        self._forward(model, idx, names, consume)
        return {n: LayerTops(n, shapes[n], tops[n].cpu(), len(idx) * shapes[n][1] * shapes[n][2])
                for n in names}

    def thresholds(self, tops: Sequence[dict[str, LayerTops]]) -> dict[str, torch.Tensor]:
        """Merge every shard's top activations into the exact per-unit thresholds."""
        return thresholds_from(tops, self.quantile, len(self.concepts))

    def tally(self, model: torch.nn.Module, thresholds: dict[str, torch.Tensor],
              indices: Sequence[int] | None = None, _replay: list | None = None
              ) -> dict[str, LayerTally]:
        """Step 2 on a shard: integer tallies of masks against labels (sum shards to combine).
        ``_replay`` (internal): the activations kept by :meth:`top_activations` for these
        indices, used instead of a second forward pass when complete."""
        idx = self._indices(indices)
        names = self._resolve(model)
        missing = [n for n in names if n not in thresholds]
        if missing:
            raise ValueError(f"thresholds: expected an entry for every layer {names}, missing "
                             f"{missing}")
        dev, _ = module_device_dtype(model)
        lab = self._labels(dev)
        n_lab, n_cat, s = len(self.concepts.labels), len(self.concepts.categories), self.concepts.size
        acc: dict[str, dict] = {}

        def consume(start: int, feats: dict[str, torch.Tensor]) -> None:
            rows = torch.as_tensor(idx[start:start + self.batch_size], device=dev)
            for name, a in feats.items():
                u = a.shape[1]
                t = acc.setdefault(name, {
                    "shape": tuple(a.shape[1:]),
                    "inter": torch.zeros(u, n_lab, dtype=torch.int64, device=dev),
                    "ucat": torch.zeros(u, n_cat, dtype=torch.int64, device=dev),
                    "units": torch.zeros(u, dtype=torch.int64, device=dev),
                    "tv": torch.empty(u, 0, device=dev),
                    "ti": torch.empty(u, 0, dtype=torch.int64, device=dev)})
                thr = thresholds[name].to(dev, torch.float32)
                self._batches.add(a.float(), thr, rows, lab, s, t)

        if _replay and _replay[-1] is not None:
            for i, feats in enumerate(_replay):
                consume(i * self.batch_size, feats)
            _replay.clear()
        else:
            self._forward(model, idx, names, consume)
        out = {}
        for name in names:
            t = acc[name]
            out[name] = LayerTally(
                layer=name, shape=t["shape"], intersection=t["inter"].cpu(),
                unit_pixels_by_category=t["ucat"].cpu(), unit_pixels=t["units"].cpu(),
                label_pixels=self._label_pixels(idx), pixels=len(idx) * s * s,
                top_values=t["tv"].cpu(), top_images=t["ti"].cpu())
        return out

    def finish(self, tallies: Sequence[dict[str, LayerTally]],
               thresholds: dict[str, torch.Tensor]) -> list[LayerDissection]:
        """Sum the shards' tallies and label every unit."""
        total = sum_tallies(tallies, self.top_images)
        cs = self.concepts
        cat_idx = self._label_category.numpy()
        results = []
        for name, t in total.items():
            if t.pixels != len(cs) * cs.size ** 2:
                raise ValueError(f"tallies[{name!r}]: expected the shards to cover the {len(cs)} "
                                 f"probe images, got {t.pixels // cs.size ** 2}")
            iou = iou_matrix(t.intersection.numpy(), t.unit_pixels_by_category.numpy(),
                             t.label_pixels.numpy(), cat_idx)
            best = iou.argmax(1)
            units = [{"unit": i, "label": cs.labels[b], "category": cs.label_category[b],
                      "iou": float(iou[i, b]), "detector": bool(iou[i, b] > self.iou_threshold)}
                     for i, b in enumerate(best)]
            unique = {c: len({u["label"] for u in units if u["detector"] and u["category"] == c})
                      for c in cs.categories}
            results.append(LayerDissection(
                layer=name, shape=t.shape, units=units, unique_detectors=unique, iou=iou,
                labels=cs.labels, label_category=cs.label_category,
                thresholds=thresholds[name].cpu().numpy().astype(np.float32),
                mask_fraction=t.unit_pixels.numpy() / t.pixels, top_images=t.top_images.numpy(),
                quantile=self.quantile, iou_threshold=self.iou_threshold))
        return results

    # ---- internals -------------------------------------------------------------------------
    def _indices(self, indices: Sequence[int] | None) -> np.ndarray:
        n = len(self.concepts)
        if indices is None:
            return np.arange(n)
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if idx.size == 0 or idx.min() < 0 or idx.max() >= n or len(np.unique(idx)) != idx.size:
            raise ValueError(f"indices: expected distinct probe indices in [0, {n}), got "
                             f"{idx.size} of them in [{idx.min(initial=0)}, {idx.max(initial=0)}]")
        return idx

    def _resolve(self, model: torch.nn.Module) -> list[str]:
        """Layer names in ``model`` (modules by identity; unknown names list close matches)."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        by_id = {id(m): n for n, m in model.named_modules()}
        all_names = [n for n in by_id.values() if n]
        names = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, torch.nn.Module):
                if id(layer) in by_id:
                    names.append(by_id[id(layer)])
                elif self._names is not None:  # a copy of the model seen before (baseline)
                    names.append(self._names[i])
                else:
                    raise ValueError(f"layers[{i}]: expected a submodule of the model, got a "
                                     f"{type(layer).__name__} that is not in it (for a "
                                     f"baseline from a factory, name the layers)")
            else:
                if layer not in all_names:
                    close = difflib.get_close_matches(layer, all_names, n=5, cutoff=0.5)
                    raise ValueError(f"layers[{i}]: expected a module name of the model (close: "
                                     f"{close or all_names[:10]}), got {layer!r}")
                names.append(layer)
        self._names = names
        return names

    def _warn_small(self, name: str, shape: tuple[int, int, int]) -> None:
        if shape[1] < MIN_MAP_SIZE or shape[2] < MIN_MAP_SIZE:
            warnings.warn(f"layer {name!r}: activation maps are {shape[1]}x{shape[2]}, smaller "
                          f"than {MIN_MAP_SIZE}x{MIN_MAP_SIZE}; upsampled to the labels they "
                          f"cannot localise concepts, so its labels mean little", stacklevel=3)

    def _probe(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (str(device), str(dtype))
        if key not in self._cache:
            self._cache[key] = {"images": self.concepts.images.to(device)}
        return self._cache[key]["images"]

    def _labels(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Packed label maps on ``device``: every category's pixel layers stacked, image-level
        ids, and the per-image category gate."""
        key = (str(device), "labels")
        if key not in self._cache:
            cs = self.concepts
            n, s = len(cs), cs.size
            pix = [torch.from_numpy(a) for a in cs.pixel_labels.values()]
            img = [torch.from_numpy(a) for a in cs.image_labels.values()]
            self._cache[key] = {
                "pixel": (torch.cat(pix, 1) if pix else torch.zeros(n, 1, s, s, dtype=torch.int32)
                          ).to(device, torch.int64),
                "image": (torch.cat(img, 1) if img else torch.zeros(n, 1, dtype=torch.int32)
                          ).to(device, torch.int64),
                "gate": torch.from_numpy(cs.has_category()).to(device, torch.float64),
                # (N, labels) pixels of each label per image (image-level labels: S * S), for
                # 1x1 maps
                "sizes": torch.from_numpy(self._image_label_sizes()).to(device, torch.float64),
            }
        return self._cache[key]

    def _image_label_sizes(self) -> np.ndarray:
        cs = self.concepts
        n, c = len(cs), len(cs.labels) + 1
        sizes = np.zeros((n, c), dtype=np.int64)
        rows = np.arange(n)[:, None]
        for arr in cs.pixel_labels.values():
            np.add.at(sizes, (rows, arr.reshape(n, -1)), 1)
        for arr in cs.image_labels.values():
            np.add.at(sizes, (rows, arr), cs.size ** 2)
        return sizes[:, 1:]

    def _label_pixels(self, idx: np.ndarray) -> torch.Tensor:
        cs = self.concepts
        counts = np.zeros(len(cs.labels) + 1, dtype=np.int64)
        for arr in cs.pixel_labels.values():
            counts += np.bincount(arr[idx].ravel(), minlength=len(counts))
        for arr in cs.image_labels.values():
            counts += np.bincount(arr[idx].ravel(), minlength=len(counts)) * cs.size ** 2
        return torch.from_numpy(counts[1:])

    def _forward(self, model: torch.nn.Module, idx: np.ndarray, names: list[str],
                 consume: Callable[[int, dict[str, torch.Tensor]], None]) -> None:
        """Run the probe images ``idx`` through ``model`` in batches and hand each batch's layer
        activations to ``consume(batch start, {layer: activations})``. The hooks live only in
        this call (a callback, not a generator, so nothing outlives it if ``consume`` raises)."""
        device, dtype = module_device_dtype(model)
        images = self._probe(device, dtype)
        feats: dict[str, torch.Tensor] = {}

        hw = [(images.shape[-2], images.shape[-1])]  # of what the model gets (after transform)

        def hook(name):
            def fn(_module, _inp, out):
                grid = grid_of(name, out.detach() if isinstance(out, torch.Tensor) else out,
                               hw[0], self.reshape, model, arg="layers")
                # a copy: a later in-place op (ReLU(inplace=True)) would change the output
                feats[name] = grid.clone()
            return fn

        handles = []
        with preserved_rng(), frozen_eval(model):
            try:
                for name in names:
                    handles.append(model.get_submodule(name).register_forward_hook(hook(name)))
                sel = torch.as_tensor(idx, device=device)
                for start in range(0, len(idx), self.batch_size):
                    x = images[sel[start:start + self.batch_size]]
                    if self.transform is not None:
                        x = self.transform(x)
                    feats.clear()
                    hw[0] = (x.shape[-2], x.shape[-1])
                    try:
                        model(x.to(dtype))
                    except RuntimeError as e:
                        _explain_channels(model, x, self.transform is not None, e)
                        raise
                    missing = [n for n in names if n not in feats]
                    if missing:
                        raise ValueError(f"layers: expected {missing} to run in the model's "
                                         f"forward, but they produced no output")
                    consume(start, dict(feats))
            finally:
                for h in handles:
                    h.remove()
