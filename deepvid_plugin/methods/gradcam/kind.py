"""The ``gradcam`` kind: Grad-CAM class activation maps of one tracked instance.

The engine is :mod:`deepvid_plugin.methods.gradcam.engine`; this module is the record side: what a
``gradcam`` record holds, its validation and its step summary (the explainer builds records with
``KIND.record``).

Arrays (``K`` classes, instance ``(C, H, W)``):

- ``image`` ``(C, H, W)`` float16: the instance, fixed per subject (stored once by the sinks);
- ``cam_pred`` ``(H, W)`` float32: the map of the predicted class, at the input size;
- ``cam_true`` ``(H, W)`` float32, optional: the map of the true class (when labels are known);
- ``probs`` ``(K,)`` float32: the model's probabilities on the instance (softmax; with
  ``meta["outputs"] == "sigmoid"`` each class's own sigmoid, not summing to 1);
- ``classes`` ``(T,)`` int32 and ``cams`` ``(T, H, W)`` float32, optional (version 2): the other
  explained classes and their maps (``targets=``; a multi-label model's other predicted and true
  classes).

``meta``: ``class_names``, ``label`` (int or None), ``pred`` (int), ``layer`` (dotted module
name) and ``evidence`` (the deletion/insertion evidence of ``cam_pred`` next to a random map's,
as :func:`deepvid_plugin.core.faithfulness.evidence` gives it, or None); version 2 adds
``outputs`` (``"logits"``, ``"probs"`` or ``"sigmoid"``) and, for multi-hot labels, ``labels``
(the instance's true classes; ``label`` is then None).

Headline: the **deletion AUC** of the predicted-class map (lower is better: removing the pixels
the map ranks first makes the model lose the class quickly); ``None`` without evidence.

Nothing here imports torch: readers (the TensorBoard plugin) load this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from deepvid_plugin.api import hooks as api_hooks
from deepvid_plugin.core import encode, kinds, signals
from deepvid_plugin.core.record import Record
from deepvid_plugin.mlflow import hooks as mlflow_hooks

NAME = "gradcam"
VERSION = 2  # 2: classes/cams of further targets, meta outputs and multi-hot labels
ARRAYS = {"image": "<f2", "cam_pred": "<f4", "cam_true": "<f4", "probs": "<f4",
          "classes": "<i4", "cams": "<f4"}


def _label(meta: Mapping[str, Any], name: str, k: int, required: bool) -> None:
    value = meta.get(name)
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < k:
        raise ValueError(f"meta[{name!r}]: expected an int in [0, {k}), got {value!r}")


def _validate(record: Record) -> None:
    meta, arrays = record.meta, record.arrays
    names = kinds.meta_class_names(meta)
    k = len(names)
    if arrays["probs"].shape != (k,):
        raise ValueError(f"probs: expected shape ({k},), got {arrays['probs'].shape}")
    _label(meta, "pred", k, required=True)
    _label(meta, "label", k, required=False)
    cam = arrays["cam_pred"]
    if cam.ndim != 2:
        raise ValueError(f"cam_pred: expected an (H, W) map, got shape {cam.shape}")
    if "cam_true" in arrays and arrays["cam_true"].shape != cam.shape:
        raise ValueError(f"cam_true: expected shape {cam.shape} (as cam_pred), got "
                         f"{arrays['cam_true'].shape}")
    if "image" in arrays and (arrays["image"].ndim != 3 or arrays["image"].shape[1:] != cam.shape):
        raise ValueError(f"image: expected a (C, {cam.shape[0]}, {cam.shape[1]}) image (the "
                         f"maps are at the input size), got shape {arrays['image'].shape}")
    if ("classes" in arrays) != ("cams" in arrays):
        raise ValueError(f"classes, cams: expected both or neither, got "
                         f"{sorted(n for n in ('classes', 'cams') if n in arrays)}")
    if "classes" in arrays:
        classes, cams = arrays["classes"], arrays["cams"]
        if classes.ndim != 1 or cams.shape != (len(classes), *cam.shape):
            raise ValueError(f"cams: expected ({len(classes)}, {cam.shape[0]}, {cam.shape[1]}) "
                             f"maps, one per entry of classes, got shape {cams.shape}")
        if len(classes) and not (0 <= int(classes.min()) and int(classes.max()) < k):
            raise ValueError(f"classes: expected class indices in [0, {k}), got "
                             f"{classes.tolist()}")
    labels = meta.get("labels")
    if labels is not None and (not isinstance(labels, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c < k for c in labels)):
        raise ValueError(f"meta['labels']: expected a list of class indices in [0, {k}), got "
                         f"{labels!r}")
    evidence = meta.get("evidence")
    if evidence is not None and not isinstance(evidence, dict):
        raise ValueError(f"meta['evidence']: expected a dict or None, got {evidence!r}")


def _summarize(record: Record, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    meta = record.meta
    evidence = meta.get("evidence") or {}
    predicted = int(meta["pred"])
    deletion = evidence.get("deletion_auc")
    previous_predicted = None if previous is None else previous.get("predicted")
    better = evidence.get("better_than_random")
    return {
        "predicted": predicted,
        "probs": encode.round_list(record.arrays["probs"]),
        "fidelity": encode.summary_fidelity(evidence),
        # A map no better than a random one at deletion/insertion is not to be trusted.
        "trustworthy": bool(better) if isinstance(better, bool) else None,
        "changed": previous_predicted is not None and predicted != int(previous_predicted),
        "thumb": encode.thumb(record.arrays["cam_pred"]),
        "headline": float(deletion) if isinstance(deletion, (int, float))
        and not isinstance(deletion, bool) else None,
    }


KIND = kinds.register(kinds.Kind(
    name=NAME,
    version=VERSION,
    subject="instance",
    arrays=ARRAYS,
    optional=frozenset({"cam_true", "classes", "cams"}),
    per_subject=("image",),
    summarize=_summarize,
    validate=_validate,
    headline="deletion AUC of the predicted-class map",
    higher_is_better=False,
))


# ---- backends' hooks ------------------------------------------------------------------------
def _metrics(record: Record, summary: Mapping[str, Any]) -> dict[str, Any]:
    evidence = record.meta.get("evidence") or {}
    return {"deletion_auc": evidence.get("deletion_auc"),
            "insertion_auc": evidence.get("insertion_auc")}


def _class_map(record: Record, cls: int) -> np.ndarray | None:
    # A Grad-CAM record keeps the maps of its prediction, where known of the true label, and of
    # any further explained class.
    if cls == int(record.meta["pred"]):
        return np.asarray(record.arrays["cam_pred"], np.float64)
    if cls == record.meta.get("label") and "cam_true" in record.arrays:
        return np.asarray(record.arrays["cam_true"], np.float64)
    if "classes" in record.arrays:  # further explained classes (targets=, multi-label)
        hits = np.flatnonzero(np.asarray(record.arrays["classes"]) == cls)
        if hits.size:
            return np.asarray(record.arrays["cams"][hits[0]], np.float64)
    return None


def _signal(record: Record) -> signals.MapSignal:
    meta = record.meta
    image = record.arrays.get("image")
    return signals.MapSignal(record.subject, np.asarray(record.arrays["cam_pred"], np.float64),
                             None if image is None else np.asarray(image, np.float64),
                             int(meta["pred"]), meta.get("label"),
                             signals.trust_of(meta.get("evidence")))


signals.register(NAME, _signal)
mlflow_hooks.register(NAME, mlflow_hooks.MLflowHooks(metrics=_metrics,
                                                     headline_metric="deletion_auc"))
api_hooks.register(NAME, api_hooks.ApiHooks(class_map=_class_map))

__all__ = ["ARRAYS", "KIND", "NAME", "VERSION"]
