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

from deepvid_plugin.api import hooks as api_hooks
from deepvid_plugin.core import kinds, map_record, signals
from deepvid_plugin.core.record import Record
from deepvid_plugin.mlflow import hooks as mlflow_hooks

NAME = "gradcam"
VERSION = 2  # 2: classes/cams of further targets, meta outputs and multi-hot labels
ARRAYS = {"image": "<f2", "cam_pred": "<f4", "cam_true": "<f4", "probs": "<f4",
          "classes": "<i4", "cams": "<f4"}


NAMES = map_record.MapNames(pred="cam_pred", true="cam_true", maps="cams")


def _validate(record: Record) -> None:
    k = map_record.validate(record, NAMES)
    labels = record.meta.get("labels")
    if labels is not None and (not isinstance(labels, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c < k for c in labels)):
        raise ValueError(f"meta['labels']: expected a list of class indices in [0, {k}), got "
                         f"{labels!r}")


def _summarize(record: Record, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    return map_record.summarize(record, previous, NAMES)


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


# ---- backends' hooks: a maps kind's (core/map_record.py) -------------------------------------
signals.register(NAME, lambda record: map_record.signal(record, NAMES))
mlflow_hooks.register(NAME, mlflow_hooks.MLflowHooks(metrics=map_record.metrics,
                                                     headline_metric="deletion_auc"))
api_hooks.register(NAME, api_hooks.ApiHooks(
    class_map=lambda record, cls: map_record.class_map(record, cls, NAMES)))

__all__ = ["ARRAYS", "KIND", "NAME", "VERSION"]
