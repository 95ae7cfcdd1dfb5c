"""The ``summit`` kind: one class's Summit attribution graph at one explained epoch.

The engine is :mod:`deepvid_plugin.methods.summit`, the explainer
:class:`~deepvid_plugin.methods.summit.explainer.SummitExplainer`; this module is the record
side. Subject = the class's name; one record per class per explained epoch.

Arrays (``N`` graph nodes, ``M`` edges, ``E`` examples per node, ``S`` channels of all graph
layers together, ``P`` probe images of the class):

- ``node_layer`` ``(N,)`` int16: the node's layer (index into ``meta["layers"]``, whose last
  entry is the classifier: the class node);
- ``node_channel`` ``(N,)`` int32, ``node_activation`` ``(N,)`` int32 (how many of the class's
  images the channel carried the top share of its layer's activation in), ``node_pagerank``
  ``(N,)`` float32;
- ``node_examples`` ``(N * E,)`` int32: each node's top probe images, row-major, as *probe
  references* (``-1`` pads): reference ``r`` is image ``r - offset[c]`` of the class ``c`` whose
  range ``[offset[c], offset[c] + meta["probe_counts"][c])`` holds it (offsets = cumulative
  ``probe_counts``), i.e. row ``r - offset[c]`` of class ``c``'s ``probe`` array;
- ``edge_source``, ``edge_target`` ``(M,)`` int32 (node indices; source = input side),
  ``edge_weight`` ``(M,)`` float32 (share of the class's images in which the source was among
  the target's top inputs), ``edge_count`` ``(M,)`` int32;
- ``activation`` ``(S,)`` int32: the class's activation counts of every channel of every graph
  layer, layer after layer (``meta["channels"]`` sizes them), for the channel x epoch strip.

Fixed per subject (stored once by the sinks): ``probe`` ``(P, C, h, w)`` uint8, the class's
probe images as thumbnails (min-max scaled per image, at most ``THUMB_SIDE`` pixels a side), and
``image`` ``(C, H, W)`` float16, the class's first probe image (the overview's row header).

``meta``: ``class_names``, ``label`` (the class's index), ``class``, ``layers`` (graph layers +
the classifier), ``channels`` (their sizes; the classifier's = number of classes), ``head``,
``images`` (the class's probe images counted), ``examples_per_node``, ``probe_counts`` (probe
images per class), ``stability`` (Jaccard of this graph's node set with the class's graph at
``previous_step``; None at the first explained epoch) and ``previous_step``.

Headline: the **stability** (higher is better); None at the first explained epoch.

Nothing here imports torch: readers (the TensorBoard plugin) load this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from deepvid_plugin.core import kinds, signals
from deepvid_plugin.core.record import Record
from deepvid_plugin.mlflow import hooks as mlflow_hooks

NAME = "summit"
VERSION = 1
#: thumbnails of the probe images are at most this many pixels on each side.
THUMB_SIDE = 32
ARRAYS = {
    "node_layer": "<i2", "node_channel": "<i4", "node_activation": "<i4",
    "node_pagerank": "<f4", "node_examples": "<i4",
    "edge_source": "<i4", "edge_target": "<i4", "edge_weight": "<f4", "edge_count": "<i4",
    "activation": "<i4",
    "probe": "|u1", "image": "<f2",
}
PER_SUBJECT = ("probe", "image")


def _int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _int_list(meta: Mapping[str, Any], name: str, n: int | None = None) -> list[int]:
    value = meta.get(name)
    if not isinstance(value, list) or not all(_int(v) and v >= 0 for v in value) or (
            n is not None and len(value) != n):
        size = "" if n is None else f" of length {n}"
        raise ValueError(f"meta[{name!r}]: expected a list{size} of ints >= 0, got {value!r}")
    return [int(v) for v in value]


def _range(name: str, a: np.ndarray, low: int, high: int) -> None:
    if a.size and (int(a.min()) < low or int(a.max()) >= high):
        raise ValueError(f"{name}: expected values in [{low}, {high}), got "
                         f"[{int(a.min())}, {int(a.max())}]")


def _validate(record: Record) -> None:
    meta, arrays = record.meta, record.arrays
    names = kinds.meta_class_names(meta)
    k = len(names)
    label = meta.get("label")
    if not _int(label) or not 0 <= label < k:
        raise ValueError(f"meta['label']: expected the class index, an int in [0, {k}), got "
                         f"{label!r}")
    layers = meta.get("layers")
    if not isinstance(layers, list) or len(layers) < 2 or not all(
            isinstance(x, str) and x for x in layers):
        raise ValueError(f"meta['layers']: expected the graph layers and the classifier (at "
                         f"least 2 names), got {layers!r}")
    channels = _int_list(meta, "channels", len(layers))
    if channels[-1] != k:
        raise ValueError(f"meta['channels']: expected the classifier's entry to be the number "
                         f"of classes {k}, got {channels[-1]}")
    counts = _int_list(meta, "probe_counts", k)
    e = meta.get("examples_per_node")
    if not _int(e) or e < 0:
        raise ValueError(f"meta['examples_per_node']: expected an int >= 0, got {e!r}")
    stability = meta.get("stability")
    if stability is not None and not (isinstance(stability, (int, float))
                                      and not isinstance(stability, bool)
                                      and 0.0 <= stability <= 1.0):
        raise ValueError(f"meta['stability']: expected None or a number in [0, 1], got "
                         f"{stability!r}")
    nodes = arrays["node_layer"]
    n = nodes.shape
    for name in ("node_layer", "node_channel", "node_activation", "node_pagerank"):
        if arrays[name].ndim != 1 or arrays[name].shape != n:
            raise ValueError(f"{name}: expected shape {n} (one value per node, as node_layer), "
                             f"got {arrays[name].shape}")
    _range("node_layer", nodes, 0, len(layers))
    for i, (layer, channel) in enumerate(zip(nodes.tolist(), arrays["node_channel"].tolist(),
                                             strict=True)):
        if not 0 <= channel < channels[layer]:
            raise ValueError(f"node_channel[{i}]: expected a channel of {layers[layer]!r} in "
                             f"[0, {channels[layer]}), got {channel}")
    if arrays["node_examples"].shape != (n[0] * int(e),):
        raise ValueError(f"node_examples: expected shape ({n[0] * int(e)},) (nodes x "
                         f"examples_per_node), got {arrays['node_examples'].shape}")
    _range("node_examples", arrays["node_examples"], -1, sum(counts))
    m = arrays["edge_source"].shape
    for name in ("edge_source", "edge_target", "edge_weight", "edge_count"):
        if arrays[name].ndim != 1 or arrays[name].shape != m:
            raise ValueError(f"{name}: expected shape {m} (one value per edge, as edge_source), "
                             f"got {arrays[name].shape}")
    _range("edge_source", arrays["edge_source"], 0, n[0])
    _range("edge_target", arrays["edge_target"], 0, n[0])
    if arrays["activation"].shape != (sum(channels[:-1]),):
        raise ValueError(f"activation: expected shape ({sum(channels[:-1])},) (every channel "
                         f"of the graph layers), got {arrays['activation'].shape}")
    probe = arrays.get("probe")
    if probe is not None and (probe.ndim != 4 or probe.shape[0] != counts[label]):
        raise ValueError(f"probe: expected ({counts[label]}, C, h, w) thumbnails (the class's "
                         f"probe images), got shape {probe.shape}")
    image = arrays.get("image")
    if image is not None and image.ndim != 3:
        raise ValueError(f"image: expected a (C, H, W) image, got shape {image.shape}")


def _summarize(record: Record, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    stability = record.meta.get("stability")
    headline = None if stability is None else float(f"{float(stability):.4g}")
    # A class has no prediction, thumbnail map or faithfulness evidence, and readers read those
    # with .get: only instance kinds owe them (tests/test_sink_contract.py).
    return {
        "stability": headline, "nodes": int(record.arrays["node_layer"].shape[0]),
        "edges": int(record.arrays["edge_source"].shape[0]),
        "images": int(record.meta.get("images", 0)),
        "headline": headline,
    }


KIND = kinds.register(kinds.Kind(
    name=NAME,
    version=VERSION,
    subject="class",
    arrays=ARRAYS,
    optional=frozenset(),
    per_subject=PER_SUBJECT,
    summarize=_summarize,
    validate=_validate,
    summary_fields={"stability": "number?", "nodes": "count", "edges": "count",
                    "images": "count"},
    headline="stability of the class's attribution graph (Jaccard with the previous epoch's)",
    higher_is_better=True,
))


# ---- backends' hooks ------------------------------------------------------------------------
def _metrics(record: Record, summary: Mapping[str, Any]) -> dict[str, Any]:
    return {"stability": record.meta.get("stability")}


def _signal(record: Record) -> signals.GraphSignal:
    a, meta = record.arrays, record.meta
    layers = meta["layers"]
    head = len(layers) - 1  # the classifier's nodes are the classes, not channels
    nodes = tuple((layers[int(li)], int(ch)) for li, ch in zip(a["node_layer"], a["node_channel"],
                                                                 strict=True) if int(li) != head)
    stability = meta.get("stability")
    return signals.GraphSignal(record.subject, nodes,
                               None if stability is None else float(stability))


signals.register(NAME, _signal)
mlflow_hooks.register(NAME, mlflow_hooks.MLflowHooks(metrics=_metrics,
                                                     headline_metric="stability"))


def graph_of(record: Record) -> dict[str, list[dict[str, Any]]]:
    """The record's attribution graph in the engine's form (``SummitResult.graph``), with
    examples as probe references: ``{"nodes": [...], "edges": [...]}``."""
    a, meta = record.arrays, record.meta
    layers, e = meta["layers"], int(meta["examples_per_node"])
    ids = [f"{layers[int(li)]}:{int(ch)}" for li, ch in zip(a["node_layer"], a["node_channel"],
                                                             strict=True)]
    examples = np.asarray(a["node_examples"]).reshape(len(ids), e)
    nodes = [{"id": ids[i], "layer": layers[int(a["node_layer"][i])],
              "channel": int(a["node_channel"][i]),
              "activation": int(a["node_activation"][i]),
              "pagerank": float(a["node_pagerank"][i]),
              "examples": [int(x) for x in examples[i] if x >= 0]} for i in range(len(ids))]
    edges = [{"source": ids[int(s)], "target": ids[int(t)], "weight": float(w), "count": int(c)}
             for s, t, w, c in zip(a["edge_source"], a["edge_target"], a["edge_weight"],
                                   a["edge_count"], strict=True)]
    return {"nodes": nodes, "edges": edges}


__all__ = ["ARRAYS", "KIND", "NAME", "PER_SUBJECT", "THUMB_SIDE", "VERSION", "graph_of"]
