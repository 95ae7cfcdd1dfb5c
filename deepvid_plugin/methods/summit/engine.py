"""Summit (Hohman et al., IEEE TVCG 2020) for PyTorch: per-class activation and influence
aggregation over a fixed probe set, and attribution graphs from them.

The probe set (``per_class`` images of each class, seeded) is drawn once, so results of
successive epochs describe the same images and differ only because the model did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deepvid_plugin.core import checks
from deepvid_plugin.core.collective import Group
from deepvid_plugin.core.guard import frozen_eval, module_device_dtype, preserved_rng
from deepvid_plugin.core.outputs import (
    check_outputs,
    check_transform,
    logits_of,
    predicted_sets,
    probabilities,
)
from deepvid_plugin.methods.summit.aggregate import (
    candidates,
    captured,
    channel_max,
    check_shapes,
    count_top_inputs,
    hop_top_inputs,
    own_class_influence,
    top_share_mask,
)
from deepvid_plugin.methods.summit.result import Influence, SummitResult
from deepvid_plugin.methods.summit.topology import Plan, build_plan

GROUP_BY = ("label", "prediction")
#: probe images per class by default (see ``per_class`` in :class:`Summit`).
DEFAULT_PER_CLASS = 16


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _fraction(name: str, value: object, low: float, high: float, closed_low: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        (low <= value if closed_low else low < value) and value <= high)
    if not ok:
        bracket = "[" if closed_low else "("
        raise ValueError(f"{name}: expected a number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


class Summit:
    """Aggregate what each class depends on, channel by channel, and extract its graph.

    Args:
        data: probe images, a float tensor (N, C, H, W) as the model takes them.
        labels: (N,) integer class of each image, or an (N, n_classes) multi-hot matrix
            (multi-label: an image counts for each of its classes); used to draw ``per_class``
            images per class and, with ``group_by="label"``, as the classes an image counts for.
        layers: names of chosen ``nn.Conv2d`` modules or torchvision residual blocks, in forward
            order, with nothing but channel-preserving modules between consecutive ones and up
            to the final ``nn.Linear`` (see ``topology``'s docstring for the exact rules).
        class_names: one per logit; default ``"0"``, ``"1"``, ...
        per_class: images drawn per class (fewer if a class has fewer), with ``seed``. The
            default, 16, keeps Summit within 2% of a ResNet-18 training epoch at every 5 epochs
            (every block, 32x32, one CPU thread); graphs drawn from 16 images agree with those
            from 50 nearly as well as two draws of 50 agree with each other (node-set Jaccard
            in ``benchmarks/RESULTS.md``, section Summit). Raise it when explanations are rare
            or the device is fast.
        top_share: activation aggregation keeps the fewest top channels of an image whose share
            of the channel-max mass reaches this (0.03 in the paper).
        top_inputs: influence aggregation counts this many top inputs per output channel.
        nodes_per_layer: channels kept per layer in a class's graph.
        examples_per_node: probe images listed per node (those where the channel fires most).
        group_by: ``"label"`` (true class) or ``"prediction"`` (the model's argmax).
        batch_size: probe images per forward pass.
        alpha: PageRank damping factor.
        min_edge_weight: graph edges whose source was among the target's top inputs in fewer
            than this share of the class's images are pruned.
        seed: the per-class draw.
        outputs: ``"logits"``, ``"probs"`` or ``"sigmoid"`` (independent classes: with
            ``group_by="prediction"`` an image counts for every class above 0.5).
        output_transform: a callable from the model's output to its logits (N, n_classes);
            HuggingFace outputs, dicts with ``"logits"`` and tuples are recognised without it.

    Example::

        >>> import torch
        >>> def cnn():
        ...     return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        ...                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        ...                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                                torch.nn.Linear(8, 3))
        >>> from deepvid_plugin.explain import Summit
        >>> x, y = torch.rand(30, 3, 8, 8), torch.arange(30) % 3
        >>> result = Summit(x, y, ["0", "2"], per_class=10).aggregate(cnn())
        >>> result.layers, result.head
        (('0', '2'), '6')
    """

    def __init__(self, data: torch.Tensor, labels: torch.Tensor, layers: Sequence[str],
                 class_names: Sequence[str] | None = None, per_class: int = DEFAULT_PER_CLASS,
                 top_share: float = 0.03, top_inputs: int = 5, nodes_per_layer: int = 6,
                 examples_per_node: int = 4, group_by: str = "label", batch_size: int = 64,
                 alpha: float = 0.85, min_edge_weight: float = 0.1, seed: int = 0,
                 outputs: str = "logits",
                 output_transform: Callable[[Any], torch.Tensor] | None = None):
        if not isinstance(data, torch.Tensor) or data.dim() != 4 or not data.is_floating_point():
            raise ValueError(f"data: expected a float tensor (N, C, H, W), got "
                             f"{type(data).__name__} {tuple(getattr(data, 'shape', ()))}")
        checks.images("data", data)  # NaN probes gave a graph of NaN attributions, silently
        multi = isinstance(labels, torch.Tensor) and labels.dim() == 2 and len(labels) == len(data)
        if multi and not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError("labels: expected an (N, n_classes) multi-hot matrix of 0s and 1s, "
                             "got other values")
        if not multi and (not isinstance(labels, torch.Tensor) or labels.shape != (len(data),)
                          or labels.is_floating_point() or labels.is_complex()):
            raise ValueError(f"labels: expected an integer tensor of shape ({len(data)},) or an "
                             f"({len(data)}, n_classes) multi-hot matrix, got "
                             f"{type(labels).__name__} {tuple(getattr(labels, 'shape', ()))}")
        if not multi and len(labels) and labels.min() < 0:
            raise ValueError(f"labels: expected class indices >= 0, got {int(labels.min())}")
        if isinstance(layers, str) or not layers or not all(isinstance(n, str) for n in layers) \
                or len(set(layers)) != len(layers):
            raise ValueError(f"layers: expected a non-empty list of distinct module names, got "
                             f"{layers!r}")
        if group_by not in GROUP_BY:
            raise ValueError(f"group_by: expected one of {list(GROUP_BY)}, got {group_by!r}")
        self.data = data
        self.labels = labels.long()
        self.multi_label = multi
        self.outputs = check_outputs(outputs)
        self.output_transform = check_transform("output_transform", output_transform)
        self.layers = list(layers)
        self.class_names = None if class_names is None else tuple(str(c) for c in class_names)
        self.per_class = _positive_int("per_class", per_class)
        self.top_share = _fraction("top_share", top_share, 0.0, 1.0, closed_low=False)
        self.top_inputs = _positive_int("top_inputs", top_inputs)
        self.nodes_per_layer = _positive_int("nodes_per_layer", nodes_per_layer)
        self.examples_per_node = _positive_int("examples_per_node", examples_per_node, 0)
        self.group_by = group_by
        self.batch_size = _positive_int("batch_size", batch_size)
        self.alpha = _fraction("alpha", alpha, 0.0, 1.0, closed_low=False)
        if self.alpha >= 1.0:
            raise ValueError(f"alpha: expected a number in (0, 1), got {alpha!r}")
        self.min_edge_weight = _fraction("min_edge_weight", min_edge_weight, 0.0, 1.0, True)
        self.seed = _positive_int("seed", seed, 0)
        self.indices = self._draw()
        if len(self.indices) == 0:
            raise ValueError("data: expected at least one image, got 0")

    def as_explainer(self, every_n_epochs: int = 5) -> Any:
        """This engine as a callback's explainer (kind ``summit``) on that schedule."""
        from deepvid_plugin.methods.summit.explainer import SummitExplainer

        return SummitExplainer(self, every_n_epochs=every_n_epochs)

    def _members(self, c: int, among: torch.Tensor | None = None) -> torch.Tensor:
        """Indices (into ``data``, of ``among`` when given) of the images labelled ``c``."""
        labels = self.labels if among is None else self.labels[among]
        hit = labels[:, c].bool() if self.multi_label else labels == c
        idx = torch.nonzero(hit).flatten()
        return idx if among is None else among[idx]

    def class_indices(self, c: int) -> torch.Tensor:
        """The drawn probe images (indices into ``data``) labelled ``c``."""
        if self.multi_label and c >= self.labels.shape[1]:
            return torch.zeros(0, dtype=torch.long)
        return self._members(c, self.indices)

    def _draw(self) -> torch.Tensor:
        """``per_class`` indices of each class, drawn with ``seed``; sorted."""
        gen = torch.Generator().manual_seed(self.seed)
        picked = []
        classes = (range(self.labels.shape[1]) if self.multi_label
                   else torch.unique(self.labels).tolist())
        for c in classes:
            idx = self._members(c)
            picked.append(idx[torch.randperm(len(idx), generator=gen)[:self.per_class]])
        if not picked:
            return torch.zeros(0, dtype=torch.long)
        return torch.unique(torch.cat(picked))  # sorted; an image drawn for two classes once

    def _names(self, n_classes: int) -> tuple[str, ...]:
        if self.class_names is None:
            names = tuple(str(i) for i in range(n_classes))
        elif len(self.class_names) != n_classes:
            raise ValueError(f"class_names: expected {n_classes} names (the classifier's "
                             f"outputs), got {len(self.class_names)}")
        else:
            names = self.class_names
        if self.multi_label and self.labels.shape[1] != n_classes:
            raise ValueError(f"labels: expected a multi-hot matrix of {n_classes} columns (the "
                             f"classifier's outputs), got {self.labels.shape[1]}")
        if not self.multi_label and int(self.labels.max()) >= n_classes:
            raise ValueError(f"labels: expected class indices < {n_classes} (the classifier's "
                             f"outputs), got {int(self.labels.max())}")
        return names

    def _groups(self, batch: torch.Tensor, logits: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, classes): which image of the batch counts for which class (one pair per
        image, or one per class of a multi-label image)."""
        device = logits.device
        if self.group_by == "label" and not self.multi_label:
            return torch.arange(len(batch), device=device), self.labels[batch].to(device)
        if self.group_by == "label":
            rows, cls = torch.nonzero(self.labels[batch]).T
            return rows.to(device), cls.to(device)
        sets = predicted_sets(probabilities(logits.detach(), self.outputs), self.outputs)
        rows = [r for r, s in enumerate(sets) for _ in s]
        cls = [c for s in sets for c in s]
        return (torch.tensor(rows, dtype=torch.long, device=device),
                torch.tensor(cls, dtype=torch.long, device=device))

    def aggregate(self, model: nn.Module, group: Group | None = None) -> SummitResult | None:
        """Run the probe set through ``model`` once and aggregate; the model is left as found
        (modes, parameters, gradients, hooks) and so are the RNGs.

        With ``group`` (a :class:`~deepvid_plugin.core.collective.Group`; every rank of it
        calls this alike) the probe batches are shared round-robin over the ranks, each batch
        exactly as one process forms it, so the integer counts summed on rank zero and the
        per-image maxima gathered there are those of a one-process run, bit for bit. Rank zero
        returns the result, the other ranks None.
        """
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        device, dtype = module_device_dtype(model)
        with preserved_rng(), frozen_eval(model):
            plan = build_plan(model, self.layers)  # in eval mode: BatchNorm as it will run
            names = self._names(plan.head.weight.shape[0])
            batches = list(self.indices.split(self.batch_size))
            if group is None:
                part = self._pass(model, plan, len(names), batches, device, dtype)
                return self._result(plan, names, part)
            mine = list(range(group.rank, len(batches), group.world_size))
            # the failure-prone part under a check: every rank reaches the collectives below
            part = group.check(self._pass, model, plan, len(names),
                               [batches[i] for i in mine], device, dtype)
            # int32 on the wire: half of int64's bytes (132 MB per rank for ResNet-18's every
            # block), and a count never exceeds the probe images
            acts_names = list(part.acts)
            sums = [t.to(torch.int32) for t in (*part.acts.values(), *part.counts,
                                                 part.head_counts)]
            group.reduce_sum_(sums)
            floats = group.gather((mine, part.maxima, part.logits, part.groups))
            if not group.is_zero:
                return None
            summed = [t.long() for t in sums]
            part.acts = dict(zip(acts_names, summed[:len(acts_names)], strict=True))
            part.counts, part.head_counts = summed[len(acts_names):-1], summed[-1]
            return self._result(plan, names, _Partial.merged(part, floats, len(batches)))

    def _pass(self, model: nn.Module, plan: Plan, n_cls: int, batches: Sequence[torch.Tensor],
              device: torch.device, dtype: torch.dtype) -> _Partial:
        """Counts over ``batches`` of probe indices, and each batch's per-image maxima,
        logits and groups (CPU)."""
        sizes = {g.name: g.channels for g in plan.layers}
        acts = {g.name: torch.zeros(n_cls, g.channels, dtype=torch.long, device=device)
                for g in plan.layers}
        ks = [min(self.top_inputs, sum(candidates(t, sizes[t.source]) for t in h.terms))
              for h in plan.hops]
        head_k = min(self.top_inputs, sizes[plan.head.source])
        counts = [torch.zeros(n_cls, sizes[h.target], sum(sizes[t.source] for t in h.terms),
                              dtype=torch.long, device=device) for h in plan.hops]
        # the classifier: per class, its own logit's top inputs only (see own_class_influence)
        head_counts = torch.zeros(n_cls, 1, sizes[plan.head.source], dtype=torch.long,
                                  device=device)
        part = _Partial(acts, counts, head_counts, ks, head_k)
        with captured(model, plan.taps) as store:
            for batch in batches:
                store.clear()
                logits = logits_of(model(self.data[batch].to(device=device, dtype=dtype)),
                                   self.output_transform, n=len(batch))
                check_shapes(plan, store, logits)
                rows, groups = self._groups(batch, logits)
                maxima = {}
                for g in plan.layers:
                    m = channel_max(store[g.tap.key])
                    mask = top_share_mask(m, self.top_share).long()
                    acts[g.name].index_add_(0, groups, mask[rows])
                    maxima[g.name] = m.float().cpu()
                for hop, k, total in zip(plan.hops, ks, counts, strict=True):
                    top = hop_top_inputs(hop, store, k)
                    total += count_top_inputs(top[rows], groups, total.shape[2], n_cls)
                z = store[plan.head.tap.key]
                # a multi-label image counts once per class: its rows repeat it per class
                infl = own_class_influence(z[rows], plan.head.weight.to(z.dtype), groups,
                                           sizes[plan.head.source])
                top = infl.topk(head_k, dim=1).indices.unsqueeze(1)  # (rows, 1, k)
                head_counts += count_top_inputs(top, groups, head_counts.shape[2], n_cls)
                part.maxima.append(maxima)
                part.logits.append(logits.float().cpu())
                part.groups.append(groups.cpu())
        return part

    def _result(self, plan: Plan, names: tuple[str, ...], part: _Partial) -> SummitResult:
        acts, counts, ks, head_counts, head_k = (part.acts, part.counts, part.ks,
                                                 part.head_counts, part.head_k)
        logits, groups = torch.cat(part.logits), torch.cat(part.groups)
        maxima = {g.name: [m[g.name] for m in part.maxima] for g in plan.layers}
        sizes = {g.name: g.channels for g in plan.layers}
        influence = []
        for hop, k, total in zip(plan.hops, ks, counts, strict=True):
            start, sources = 0, []
            for t in hop.terms:
                sources.append((t.source, start, start + sizes[t.source]))
                start += sizes[t.source]
            influence.append(Influence(hop.target, tuple(sources), total.cpu().numpy(), k))
        influence.append(Influence(plan.head.name, ((plan.head.source, 0,
                                                     sizes[plan.head.source]),),
                                   head_counts.cpu().numpy(), head_k))
        examples = {g.name: self._examples(torch.cat(maxima[g.name])) for g in plan.layers}
        examples[plan.head.name] = self._examples(logits)
        settings = {"per_class": self.per_class, "top_share": self.top_share,
                    "top_inputs": self.top_inputs, "nodes_per_layer": self.nodes_per_layer,
                    "examples_per_node": self.examples_per_node, "group_by": self.group_by,
                    "alpha": self.alpha, "min_edge_weight": self.min_edge_weight,
                    "seed": self.seed, "chosen_layers": list(self.layers),
                    "outputs": self.outputs}
        return SummitResult(
            class_names=names, layers=tuple(g.name for g in plan.layers),
            channels=tuple(g.channels for g in plan.layers), head=plan.head.name,
            activation={k: v.cpu().numpy() for k, v in acts.items()},
            influence=tuple(influence),
            group_sizes=torch.bincount(groups, minlength=len(names)).numpy(),
            examples=examples, settings=settings)

    def _examples(self, values: torch.Tensor) -> np.ndarray:
        """(channels, k) indices into ``data`` of the probe images with the largest values."""
        k = min(self.examples_per_node, values.shape[0])
        top = values.topk(k, dim=0).indices if k else values.new_zeros((0, values.shape[1]),
                                                                       dtype=torch.long)
        return self.indices[top].T.numpy().copy()


@dataclasses.dataclass
class _Partial:
    """What a pass over some probe batches adds up: the counts (summed over batches, on the
    model's device) and, per batch in order, the per-image channel maxima, logits and groups."""

    acts: dict[str, torch.Tensor]
    counts: list[torch.Tensor]
    head_counts: torch.Tensor
    ks: list[int]
    head_k: int
    maxima: list[dict[str, torch.Tensor]] = dataclasses.field(default_factory=list)
    logits: list[torch.Tensor] = dataclasses.field(default_factory=list)
    groups: list[torch.Tensor] = dataclasses.field(default_factory=list)

    @classmethod
    def merged(cls, summed: _Partial, gathered: Sequence[tuple], n_batches: int) -> _Partial:
        """Rank zero's summed counts with every rank's per-batch values, back in batch order."""
        order: list[tuple | None] = [None] * n_batches
        for mine, maxima, logits, groups in gathered:
            for j, b in enumerate(mine):
                order[b] = (maxima[j], logits[j], groups[j])
        if any(o is None for o in order):
            raise RuntimeError(f"gather: expected every one of the {n_batches} probe batches "
                               f"from some rank, got {sum(o is not None for o in order)}")
        return dataclasses.replace(summed, maxima=[o[0] for o in order],
                                   logits=[o[1] for o in order], groups=[o[2] for o in order])
