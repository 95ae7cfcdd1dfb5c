"""Summit as an explainer of kind ``summit`` (:mod:`deepvid_plugin.core.explainer`): a callback
runs it every ``every_n_epochs`` epochs and gets one record per class, the class's attribution
graph at that epoch, with its stability against the class's graph at the previous explained
epoch (the Jaccard index of the two node sets, classifier node left out).

The probe set is the :class:`Summit`'s own (drawn once, seeded), not the callback's tracked
instances: Summit summarises whole classes. The probe images are stored once per class as
thumbnails (the records reference them), so a record holds only the graph and the counts.

DDP (``sharding = "collective"``): every rank explains, with the callback's ``context.group``;
the probe batches (the per-class images) are shared over the ranks and their counts summed on
rank zero (:meth:`Summit.aggregate`), which alone builds the records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deepvid_plugin.core import checks
from deepvid_plugin.core.collective import Group
from deepvid_plugin.core.explainer import ExplainContext
from deepvid_plugin.core.record import Record
from deepvid_plugin.methods.summit.engine import Summit
from deepvid_plugin.methods.summit.graph import jaccard
from deepvid_plugin.methods.summit.kind import KIND, THUMB_SIDE
from deepvid_plugin.methods.summit.result import SummitResult


class SummitExplainer:
    """Per-class Summit attribution graphs over training (kind ``summit``).

    Args:
        summit: the configured engine (probe data, labels, layers, options).
        every_n_epochs: explained at epochs 0, N, 2N, ... (Summit over a whole probe set costs
            more than a per-instance kind; see docs/summit.md, "Cost").

    Class names: the engine's ``class_names``, else the callback's, else ``"0".."K-1"``.
    ``state_dict`` keeps each class's last node set, so a resumed run's first stability compares
    with the graph logged before the interruption.

    Example::

        >>> import torch
        >>> def cnn():
        ...     return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        ...                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        ...                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                                torch.nn.Linear(8, 3))
        >>> from deepvid_plugin.explain import ExplainContext, Summit, SummitExplainer
        >>> x, y = torch.rand(30, 3, 8, 8), torch.arange(30) % 3
        >>> e = SummitExplainer(Summit(x, y, ["0", "2"], per_class=10))
        >>> e.prepare(ExplainContext(x=x[:1], ids=("a",), class_names=("r", "g", "b")))
        >>> [r.subject for r in e.explain(cnn(), step=0)]
        ['r', 'g', 'b']
    """

    kind = "summit"
    sharding = "collective"  # probe images over the ranks (see the module docstring)

    def __init__(self, summit: Summit, *, every_n_epochs: int = 5):
        if not isinstance(summit, Summit):
            raise TypeError(f"summit: expected a deepvid_plugin.methods.summit.Summit, got "
                            f"{type(summit).__name__}")
        self.summit = summit
        self.every_n_epochs = checks.integer("every_n_epochs", every_n_epochs, 1)
        self._context_names: tuple[str, ...] | None = None
        # class name -> {"nodes": sorted node ids, "step": epoch} of its last logged graph
        self._previous: dict[str, dict[str, Any]] = {}
        self._probe: _Probe | None = None
        self._group: Group | None = None

    def prepare(self, context: ExplainContext) -> None:
        self._context_names = context.class_names
        self._group = context.group

    def explain(self, model: nn.Module, step: int) -> list[Record]:
        step = checks.integer("step", step)
        result = self.summit.aggregate(model, group=self._group)
        if result is None:  # another rank than zero: rank zero holds the counts and writes
            return []
        names = self._class_names(result)
        if self._probe is None or self._probe.counts_len != len(names):
            self._probe = _Probe(self.summit, len(names), THUMB_SIDE)
        probe = self._probe
        layers = [*result.layers, result.head]
        layer_index = {name: i for i, name in enumerate(layers)}
        e = int(result.settings["examples_per_node"])
        settings = {**result.settings, "every_n_epochs": self.every_n_epochs}
        records, current = [], {}
        for ci, name in enumerate(names):
            n_img = int(result.group_sizes[ci])
            if n_img == 0:  # no probe image counts for this class: it has no graph
                continue
            graph = result.graph(ci)
            node_set = sorted(nd["id"] for nd in graph["nodes"] if nd["layer"] != result.head)
            before = self._previous.get(name)
            stability = None if before is None else jaccard(set(before["nodes"]), set(node_set))
            current[name] = {"nodes": node_set, "step": step}
            nodes, edges = graph["nodes"], graph["edges"]
            index = {nd["id"]: i for i, nd in enumerate(nodes)}
            examples = np.full((len(nodes), e), -1, np.int64)
            for i, nd in enumerate(nodes):
                refs = [probe.ref[x] for x in nd["examples"]][:e]
                examples[i, :len(refs)] = refs
            arrays = {
                "node_layer": [layer_index[nd["layer"]] for nd in nodes],
                "node_channel": [nd["channel"] for nd in nodes],
                "node_activation": [nd["activation"] for nd in nodes],
                "node_pagerank": [nd["pagerank"] for nd in nodes],
                "node_examples": examples.reshape(-1),
                "edge_source": np.array([index[ed["source"]] for ed in edges], np.int64),
                "edge_target": np.array([index[ed["target"]] for ed in edges], np.int64),
                "edge_weight": np.array([ed["weight"] for ed in edges], np.float64),
                "edge_count": np.array([ed["count"] for ed in edges], np.int64),
                "activation": np.concatenate([result.activation[g][ci] for g in result.layers]),
                "probe": probe.thumbs[ci], "image": probe.first[ci],
            }
            meta = {"class_names": list(names), "label": ci, "class": name, "layers": layers,
                    "channels": [*result.channels, len(names)], "head": result.head,
                    "images": n_img, "examples_per_node": e, "probe_counts": probe.counts,
                    "stability": stability,
                    "previous_step": None if before is None else before["step"]}
            records.append(KIND.record(name, step, arrays, meta=meta, settings=settings))
        self._previous.update(current)
        return records

    def _class_names(self, result: SummitResult) -> tuple[str, ...]:
        if self.summit.class_names is None and self._context_names is not None:
            if len(self._context_names) != len(result.class_names):
                raise ValueError(f"class_names: the callback names {len(self._context_names)} "
                                 f"classes, the model has {len(result.class_names)} outputs")
            return tuple(self._context_names)
        return result.class_names

    def state_dict(self) -> dict[str, Any]:
        return {"previous": {name: {"nodes": list(v["nodes"]), "step": int(v["step"])}
                             for name, v in self._previous.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        previous = state.get("previous") if isinstance(state, Mapping) else None
        if not isinstance(previous, Mapping) or not all(
                isinstance(k, str) and isinstance(v, Mapping)
                and isinstance(v.get("nodes"), list) and isinstance(v.get("step"), int)
                for k, v in previous.items()):
            raise ValueError(f"state: expected {{'previous': {{class: {{'nodes': [...], "
                             f"'step': int}}}}}} from SummitExplainer.state_dict(), got "
                             f"{state!r:.200}")
        self._previous = {k: {"nodes": [str(n) for n in v["nodes"]], "step": int(v["step"])}
                          for k, v in previous.items()}


class _Probe:
    """The engine's probe set, class-major: reference ``r`` of data index ``i``, per class the
    thumbnails (uint8, min-max per image) and the first image (the overview's row header)."""

    def __init__(self, summit: Summit, n_classes: int, side: int):
        self.counts_len = n_classes
        self.counts: list[int] = []
        self.ref: dict[int, int] = {}
        self.thumbs: list[np.ndarray] = []
        self.first: list[np.ndarray] = []
        offset = 0
        for c in range(n_classes):
            mine = summit.class_indices(c)
            # a multi-label image is stored under each of its classes; refer to its first copy
            for j, i in enumerate(mine.tolist()):
                self.ref.setdefault(int(i), offset + j)
            offset += len(mine)
            self.counts.append(len(mine))
            images = summit.data[mine].detach().to("cpu", torch.float32)
            self.thumbs.append(_thumbnails(images, side))
            self.first.append(images[0].numpy() if len(mine) else np.zeros((1, 1, 1)))


def _thumbnails(x: torch.Tensor, side: int) -> np.ndarray:
    """(n, C, h, w) uint8: area-averaged to at most ``side`` pixels a side, min-max per image."""
    if x.shape[0] == 0:
        return np.zeros((0, x.shape[1], 1, 1), np.uint8)
    h, w = x.shape[-2:]
    if max(h, w) > side:
        scale = side / max(h, w)
        x = F.adaptive_avg_pool2d(x, (max(1, math.floor(h * scale)), max(1, math.floor(w * scale))))
    x = torch.where(torch.isfinite(x), x, torch.zeros(()))
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    span = x.amax(dim=(1, 2, 3), keepdim=True) - lo
    q = torch.where(span > 0, (x - lo) / span.clamp(min=1e-12), torch.zeros(()))
    return (q * 255).round().to(torch.uint8).numpy()


__all__ = ["SummitExplainer"]
