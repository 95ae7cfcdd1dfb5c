"""The ``gradcam`` kind: Grad-CAM class activation maps of one tracked instance.

The engine is :mod:`deepvid_plugin.explain.gradcam`; this module is the record side: what a
``gradcam`` record holds, its validation and its step summary, and
:func:`records_from_result`, which turns a ``GradCAMResult`` into records.

Arrays (``K`` classes, instance ``(C, H, W)``):

- ``image`` ``(C, H, W)`` float16: the instance, fixed per subject (stored once by the sinks);
- ``cam_pred`` ``(H, W)`` float32: the map of the predicted class, at the input size;
- ``cam_true`` ``(H, W)`` float32, optional: the map of the true class (when labels are known);
- ``probs`` ``(K,)`` float32: the model's softmax on the instance.

``meta``: ``class_names``, ``label`` (int or None), ``pred`` (int), ``layer`` (dotted module
name) and ``evidence`` (the deletion/insertion evidence of ``cam_pred`` next to a random map's,
as :func:`deepvid_plugin.explain.faithfulness.evidence` gives it, or None).

Headline: the **deletion AUC** of the predicted-class map (lower is better: removing the pixels
the map ranks first makes the model lose the class quickly); ``None`` without evidence.

Nothing here imports torch: readers (the TensorBoard plugin) load this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from deepvid_plugin import kinds
from deepvid_plugin.record import Record

if TYPE_CHECKING:
    from deepvid_plugin.explain.gradcam import GradCAMResult

NAME = "gradcam"
VERSION = 1
ARRAYS = {"image": "<f2", "cam_pred": "<f4", "cam_true": "<f4", "probs": "<f4"}


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
    evidence = meta.get("evidence")
    if evidence is not None and not isinstance(evidence, dict):
        raise ValueError(f"meta['evidence']: expected a dict or None, got {evidence!r}")


def _summarize(record: Record, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    from deepvid_plugin import api

    meta = record.meta
    evidence = meta.get("evidence") or {}
    predicted = int(meta["pred"])
    deletion = evidence.get("deletion_auc")
    previous_predicted = None if previous is None else previous.get("predicted")
    better = evidence.get("better_than_random")
    return {
        "predicted": predicted,
        "probs": api._round(record.arrays["probs"]),
        "fidelity": api.summary_fidelity(evidence),
        # A map no better than a random one at deletion/insertion is not to be trusted.
        "trustworthy": bool(better) if isinstance(better, bool) else None,
        "changed": previous_predicted is not None and predicted != int(previous_predicted),
        "thumb": api.encode_map(api._block_mean(
            np.asarray(record.arrays["cam_pred"], np.float64), api.THUMB_SIZE)),
        "headline": float(deletion) if isinstance(deletion, (int, float))
        and not isinstance(deletion, bool) else None,
    }


def _metrics(record: Record, summary: Mapping[str, Any]) -> dict[str, Any]:
    evidence = record.meta.get("evidence") or {}
    return {"deletion_auc": evidence.get("deletion_auc"),
            "insertion_auc": evidence.get("insertion_auc")}


def _class_maps(record: Record) -> dict[int, np.ndarray]:
    # The true label's map first, so that when the model is right the prediction's (the same
    # class, the same map) is the one kept.
    out: dict[int, np.ndarray] = {}
    label = record.meta.get("label")
    if label is not None and "cam_true" in record.arrays:
        out[int(label)] = np.asarray(record.arrays["cam_true"], np.float64)
    out[int(record.meta["pred"])] = np.asarray(record.arrays["cam_pred"], np.float64)
    return out


KIND = kinds.register(kinds.Kind(
    name=NAME,
    version=VERSION,
    subject="instance",
    arrays=ARRAYS,
    optional=frozenset({"cam_true"}),
    per_subject=("image",),
    summarize=_summarize,
    validate=_validate,
    headline="deletion AUC of the predicted-class map",
    higher_is_better=False,
    metrics=_metrics,
    headline_metric="deletion_auc",
    class_maps=_class_maps,
))


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def records_from_result(result: GradCAMResult, step: int, class_names: Sequence[str], *,
                        images: Any = None, settings: Mapping[str, Any] | None = None
                        ) -> list[Record]:
    """One ``gradcam`` record per instance of ``result``, at ``step``.

    Args:
        result: what ``GradCAM().explain(model, x, labels, ids)`` returned.
        step: the training step or epoch.
        class_names: the model's ``K`` class names (``K`` = ``result.probs.shape[1]``).
        images: ``(K, C, H, W)`` the explained images ``x`` (array or tensor); the overview
            shows each instance with its map. Without it the records carry no image.
        settings: the explainer's settings (``GradCAM().settings()``).
    """
    names = [str(c) for c in class_names]
    probs = np.asarray(result.probs)
    if probs.ndim != 2 or probs.shape[1] != len(names):
        raise ValueError(f"class_names: expected {probs.shape[-1]} names (one per output of the "
                         f"model), got {len(names)}")
    n = len(result.ids)
    if images is not None:
        images = _numpy(images)
        if images.ndim != 4 or images.shape[0] != n:
            raise ValueError(f"images: expected ({n}, C, H, W), the images explained, got shape "
                             f"{images.shape}")
    out = []
    for i, iid in enumerate(result.ids):
        arrays = {"cam_pred": result.cam_pred[i], "probs": probs[i]}
        if result.cam_true is not None:
            arrays["cam_true"] = result.cam_true[i]
        if images is not None:
            arrays["image"] = images[i]
        meta = {"class_names": names, "pred": int(result.pred[i]), "layer": result.layer,
                "label": None if result.labels is None else int(result.labels[i]),
                "evidence": None if result.evidence is None else result.evidence[i]}
        record = Record(kind=NAME, subject=str(iid), step=step, arrays=arrays, meta=meta,
                        settings=dict(settings or {}), kind_version=VERSION)
        out.append(kinds.prepare(record)[1])
    return out


__all__ = ["ARRAYS", "KIND", "NAME", "VERSION", "records_from_result"]
