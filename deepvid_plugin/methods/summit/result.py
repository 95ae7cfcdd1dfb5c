"""What one Summit aggregation found, and the per-class attribution graphs extracted from it."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from deepvid_plugin.methods.summit.graph import jaccard, pagerank


@dataclasses.dataclass(frozen=True)
class Influence:
    """Influence counts into one target layer (or the classifier).

    ``counts[c, o, i]``: in how many images of class ``c`` input ``i`` was among the ``top_k``
    inputs of output channel ``o``. The input axis is the concatenation of ``sources``, each
    ``(layer, start, stop)`` (a residual block has its branch and its shortcut). For the
    classifier (``target`` is the head) the one output is the class's own logit, the only
    logit in its graph: ``counts`` is ``(classes, 1, channels)``.
    """

    target: str
    sources: tuple[tuple[str, int, int], ...]
    counts: np.ndarray
    top_k: int


@dataclasses.dataclass(frozen=True)
class SummitResult:
    """Activation and influence aggregation of one model state over a fixed probe set.

    ``layers`` are the graph layers in forward order (a residual block's inner convs appear as
    ``"<block>.conv1"`` ...); ``head`` is the classifier, whose nodes are the classes.
    ``activation[layer][c, k]`` counts the images of class ``c`` in which channel ``k`` carried
    the top share of the layer's activation mass. ``examples[layer][k]`` are indices into the
    ``data`` given to :class:`Summit` of the probe images where channel ``k`` fired most
    (``examples[head][c]``: the images with the highest logit ``c``).
    """

    class_names: tuple[str, ...]
    layers: tuple[str, ...]
    channels: tuple[int, ...]
    head: str
    activation: dict[str, np.ndarray]
    influence: tuple[Influence, ...]
    group_sizes: np.ndarray
    examples: dict[str, np.ndarray]
    settings: dict[str, Any]

    def class_index(self, cls: int | str) -> int:
        if isinstance(cls, str):
            if cls not in self.class_names:
                raise ValueError(f"cls: expected one of {list(self.class_names)}, got {cls!r}")
            return self.class_names.index(cls)
        if isinstance(cls, (int, np.integer)) and not isinstance(cls, bool) \
                and 0 <= cls < len(self.class_names):
            return int(cls)
        raise ValueError(f"cls: expected a class name or an index in [0, "
                         f"{len(self.class_names)}), got {cls!r}")

    def graph(self, cls: int | str) -> dict[str, list[dict[str, Any]]]:
        """The attribution graph of a class: ``{"nodes": [...], "edges": [...]}``.

        1. Personalised PageRank (``alpha``, default 0.85) over the aggregated influence graph
           of the class, with edges from each output to its counted inputs (importance flows
           from the class towards the channels that drive it), weighted by the counts, and
           personalised by the activation counts (the class node by the class's image count).
        2. The ``nodes_per_layer`` highest-scoring channels of each layer (score > 0), plus the
           class node ``"<head>:<index>"``.
        3. Edges between kept nodes, ``weight = count / images of the class`` (the share of the
           class's images in which the source was among the target's top inputs); edges with
           ``weight < min_edge_weight`` are pruned.

        A node: ``id`` ("layer3.1:42"), ``layer``, ``channel``, ``activation`` (count),
        ``pagerank``, ``examples`` (probe-image indices into ``data``); the class node also has
        ``class``. An edge: ``source`` (input side), ``target``, ``weight``, ``count``.
        """
        ci = self.class_index(cls)
        n_img = int(self.group_sizes[ci])
        if n_img == 0:
            raise ValueError(f"cls: class {self.class_names[ci]!r} has no images in the probe "
                             f"set (group_by={self.settings['group_by']!r})")
        offsets = dict(zip(self.layers, np.cumsum((0,) + self.channels[:-1]).tolist(),
                           strict=True))
        n = sum(self.channels) + 1
        class_node = n - 1
        personal = np.concatenate([self.activation[name][ci] for name in self.layers]
                                  + [np.array([n_img])]).astype(np.float64)
        src, dst, cnt = self._edges(ci, offsets, class_node)
        # PageRank walks output -> input, the reverse of the data flow.
        score = pagerank(n, dst, src, cnt, personal, alpha=self.settings["alpha"])
        keep = {class_node}
        for name, c in zip(self.layers, self.channels, strict=True):
            s = score[offsets[name]:offsets[name] + c]
            order = np.argsort(-s, kind="stable")[:self.settings["nodes_per_layer"]]
            keep.update(offsets[name] + int(k) for k in order if s[k] > 0)
        nodes = [self._node(i, ci, offsets, class_node, score, personal) for i in sorted(keep)]
        min_w = self.settings["min_edge_weight"]
        edges = [{"source": self._node_id(int(s), ci, offsets, class_node),
                  "target": self._node_id(int(d), ci, offsets, class_node),
                  "weight": float(c) / n_img, "count": int(c)}
                 for s, d, c in zip(src, dst, cnt, strict=True)
                 if s in keep and d in keep and c / n_img >= min_w]
        return {"nodes": nodes, "edges": edges}

    def _edges(self, ci: int, offsets: dict[str, int],
               class_node: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All aggregated edges of a class as (input node, output node, count), counts > 0."""
        src, dst, cnt = [], [], []
        for inf in self.influence:
            counts = inf.counts[ci]
            # (for the head, counts hold only this class's logit: the only one in its graph)
            outs, ins = np.nonzero(counts)
            for layer, start, stop in inf.sources:
                sel = (ins >= start) & (ins < stop)
                src.append(offsets[layer] + ins[sel] - start)
                dst.append(np.full(sel.sum(), class_node) if inf.target == self.head
                           else offsets[inf.target] + outs[sel])
                cnt.append(counts[outs[sel], ins[sel]])
        return (np.concatenate(src).astype(np.int64), np.concatenate(dst).astype(np.int64),
                np.concatenate(cnt).astype(np.float64))

    def _locate(self, node: int, offsets: dict[str, int]) -> tuple[str, int]:
        for name, c in zip(self.layers, self.channels, strict=True):
            if offsets[name] <= node < offsets[name] + c:
                return name, node - offsets[name]
        raise IndexError(f"node: expected an index below {sum(self.channels)}, got {node}")

    def _node_id(self, node: int, ci: int, offsets: dict[str, int], class_node: int) -> str:
        layer, channel = (self.head, ci) if node == class_node else self._locate(node, offsets)
        return f"{layer}:{channel}"

    def _node(self, node: int, ci: int, offsets: dict[str, int], class_node: int,
              score: np.ndarray, personal: np.ndarray) -> dict[str, Any]:
        layer, channel = (self.head, ci) if node == class_node else self._locate(node, offsets)
        out = {"id": f"{layer}:{channel}", "layer": layer, "channel": channel,
               "activation": int(personal[node]), "pagerank": float(score[node]),
               "examples": [int(i) for i in self.examples[layer][channel]]}
        if node == class_node:
            out["class"] = self.class_names[ci]
        return out

    def stability(self, previous: SummitResult) -> dict[str, float]:
        """Jaccard index of each class's graph nodes (class node left out) with ``previous``.

        Classes without images in either result are left out.
        """
        if (previous.layers, previous.class_names, previous.head) != (
                self.layers, self.class_names, self.head):
            raise ValueError(f"previous: expected a result over layers {list(self.layers)} and "
                             f"classes {list(self.class_names)}, got {list(previous.layers)} and "
                             f"{list(previous.class_names)}")
        out = {}
        for ci, name in enumerate(self.class_names):
            if self.group_sizes[ci] and previous.group_sizes[ci]:
                a, b = (
                    {nd["id"] for nd in r.graph(ci)["nodes"] if nd["layer"] != self.head}
                    for r in (self, previous))
                out[name] = jaccard(a, b)
        return out
