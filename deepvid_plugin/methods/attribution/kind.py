"""The ``attribution`` kind: the maps of a user's own attribution method on one tracked instance.

The engine is :mod:`deepvid_plugin.methods.attribution.engine`; this module is the record side.

Arrays (``K`` classes, instance ``(C, H, W)``):

- ``image`` ``(C, H, W)`` float16: the instance, fixed per subject (stored once by the sinks);
- ``map_pred`` ``(H, W)`` float32: the map of the predicted class, at the input size;
- ``map_true`` ``(H, W)`` float32, optional: the map of the true class (single labels);
- ``classes`` ``(T,)`` int32 and ``maps`` ``(T, H, W)`` float32, optional: further explained
  classes (``targets=``, a multi-label model's other predicted and true classes) and their maps;
- ``probs`` ``(K,)`` float32: the model's probabilities (softmax, or each class's sigmoid).

``meta``: ``class_names``, ``label`` (int or None), ``labels`` (multi-hot labels as a class list,
optional), ``pred``, ``method`` (the attribution's name), ``outputs`` and ``evidence`` (the
deletion/insertion evidence of ``map_pred`` next to a random map's, or None).

Maps are signed (an attribution may say "this pixel speaks against the class"); the views draw
them with a diverging scale. Headline: the **deletion AUC** of the predicted-class map (lower is
better), as Grad-CAM's. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from deepvid_plugin.api import hooks as api_hooks
from deepvid_plugin.core import encode, kinds, signals
from deepvid_plugin.core.record import Record
from deepvid_plugin.mlflow import hooks as mlflow_hooks

NAME = "attribution"
VERSION = 1
ARRAYS = {"image": "<f2", "map_pred": "<f4", "map_true": "<f4", "classes": "<i4",
          "maps": "<f4", "probs": "<f4"}


def _class_index(meta: Mapping[str, Any], name: str, k: int, required: bool) -> None:
    value = meta.get(name)
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < k:
        raise ValueError(f"meta[{name!r}]: expected an int in [0, {k}), got {value!r}")


def _validate(record: Record) -> None:
    meta, arrays = record.meta, record.arrays
    k = len(kinds.meta_class_names(meta))
    if arrays["probs"].shape != (k,):
        raise ValueError(f"probs: expected shape ({k},), got {arrays['probs'].shape}")
    _class_index(meta, "pred", k, required=True)
    _class_index(meta, "label", k, required=False)
    m = arrays["map_pred"]
    if m.ndim != 2:
        raise ValueError(f"map_pred: expected an (H, W) map, got shape {m.shape}")
    if "map_true" in arrays and arrays["map_true"].shape != m.shape:
        raise ValueError(f"map_true: expected shape {m.shape} (as map_pred), got "
                         f"{arrays['map_true'].shape}")
    if ("classes" in arrays) != ("maps" in arrays):
        raise ValueError("classes, maps: expected both or neither")
    if "classes" in arrays:
        classes = arrays["classes"]
        if classes.ndim != 1 or arrays["maps"].shape != (len(classes), *m.shape):
            raise ValueError(f"maps: expected ({len(classes)}, {m.shape[0]}, {m.shape[1]}), one "
                             f"map per entry of classes, got {arrays['maps'].shape}")
        if len(classes) and not (int(classes.min()) >= 0 and int(classes.max()) < k):
            raise ValueError(f"classes: expected class indices in [0, {k}), got "
                             f"{classes.tolist()}")
    if "image" in arrays and (arrays["image"].ndim != 3 or arrays["image"].shape[1:] != m.shape):
        raise ValueError(f"image: expected a (C, {m.shape[0]}, {m.shape[1]}) image (the maps "
                         f"are at the input size), got shape {arrays['image'].shape}")
    if not isinstance(meta.get("method"), str):
        raise ValueError(f"meta['method']: expected the attribution's name (str), got "
                         f"{meta.get('method')!r}")
    evidence = meta.get("evidence")
    if evidence is not None and not isinstance(evidence, dict):
        raise ValueError(f"meta['evidence']: expected a dict or None, got {evidence!r}")


def _summarize(record: Record, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    meta = record.meta
    evidence = meta.get("evidence") or {}
    predicted = int(meta["pred"])
    deletion = evidence.get("deletion_auc")
    before = None if previous is None else previous.get("predicted")
    better = evidence.get("better_than_random")
    return {
        "predicted": predicted,
        "probs": encode.round_list(record.arrays["probs"]),
        "fidelity": encode.summary_fidelity(evidence),
        # A map no better than a random one at deletion/insertion is not to be trusted.
        "trustworthy": bool(better) if isinstance(better, bool) else None,
        "changed": before is not None and predicted != int(before),
        "thumb": encode.thumb(record.arrays["map_pred"]),
        "headline": float(deletion) if isinstance(deletion, (int, float))
        and not isinstance(deletion, bool) else None,
    }


KIND = kinds.register(kinds.Kind(
    name=NAME, version=VERSION, subject="instance", arrays=ARRAYS,
    optional=frozenset({"map_true", "classes", "maps"}), per_subject=("image",),
    summarize=_summarize, validate=_validate,
    headline="deletion AUC of the predicted-class map", higher_is_better=False,
))


# ---- backends' hooks ------------------------------------------------------------------------
def _metrics(record: Record, summary: Mapping[str, Any]) -> dict[str, Any]:
    evidence = record.meta.get("evidence") or {}
    return {"deletion_auc": evidence.get("deletion_auc"),
            "insertion_auc": evidence.get("insertion_auc")}


def _class_map(record: Record, cls: int) -> np.ndarray | None:
    # the maps of the prediction, of the true label where known, and of any further target
    if cls == int(record.meta["pred"]):
        return np.asarray(record.arrays["map_pred"], np.float64)
    if cls == record.meta.get("label") and "map_true" in record.arrays:
        return np.asarray(record.arrays["map_true"], np.float64)
    if "classes" in record.arrays:
        hits = np.flatnonzero(np.asarray(record.arrays["classes"]) == cls)
        if hits.size:
            return np.asarray(record.arrays["maps"][hits[0]], np.float64)
    return None


def _signal(record: Record) -> signals.MapSignal:
    # as Grad-CAM's: the predicted class's map, watched by the drift detectors
    meta = record.meta
    image = record.arrays.get("image")
    return signals.MapSignal(record.subject, np.asarray(record.arrays["map_pred"], np.float64),
                             None if image is None else np.asarray(image, np.float64),
                             int(meta["pred"]), meta.get("label"),
                             signals.trust_of(meta.get("evidence")))


signals.register(NAME, _signal)
mlflow_hooks.register(NAME, mlflow_hooks.MLflowHooks(metrics=_metrics,
                                                     headline_metric="deletion_auc"))
api_hooks.register(NAME, api_hooks.ApiHooks(class_map=_class_map))

__all__ = ["ARRAYS", "KIND", "NAME", "VERSION"]
