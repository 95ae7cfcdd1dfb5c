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

from deepvid_plugin.api import hooks as api_hooks
from deepvid_plugin.core import kinds, map_record, signals
from deepvid_plugin.core.record import Record
from deepvid_plugin.mlflow import hooks as mlflow_hooks

NAME = "attribution"
VERSION = 1
ARRAYS = {"image": "<f2", "map_pred": "<f4", "map_true": "<f4", "classes": "<i4",
          "maps": "<f4", "probs": "<f4"}


NAMES = map_record.MapNames(pred="map_pred", true="map_true", maps="maps")


def _validate(record: Record) -> None:
    map_record.validate(record, NAMES)
    if not isinstance(record.meta.get("method"), str):
        raise ValueError(f"meta['method']: expected the attribution's name (str), got "
                         f"{record.meta.get('method')!r}")


def _summarize(record: Record, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    return map_record.summarize(record, previous, NAMES)


KIND = kinds.register(kinds.Kind(
    name=NAME, version=VERSION, subject="instance", arrays=ARRAYS,
    optional=frozenset({"map_true", "classes", "maps"}), per_subject=("image",),
    summarize=_summarize, validate=_validate,
    headline="deletion AUC of the predicted-class map", higher_is_better=False,
))


# ---- backends' hooks: a maps kind's, as Grad-CAM's (core/map_record.py) ----------------------
signals.register(NAME, lambda record: map_record.signal(record, NAMES))
mlflow_hooks.register(NAME, mlflow_hooks.MLflowHooks(metrics=map_record.metrics,
                                                     headline_metric="deletion_auc"))
api_hooks.register(NAME, api_hooks.ApiHooks(
    class_map=lambda record, cls: map_record.class_map(record, cls, NAMES)))

__all__ = ["ARRAYS", "KIND", "NAME", "VERSION"]
