"""The ``cam_agreement`` kind: does a distilled student look where its teacher looks?

Exp-KD (Pattern Recognition 2024) trains a student to reproduce its teacher's class activation
maps (:class:`deepvid_plugin.methods.cam_agreement.loss.CAMDistillLoss`). This kind records, per tracked instance and
explained epoch, both networks' CAMs for the teacher's top classes and how well they agree. The
engine is :class:`deepvid_plugin.methods.cam_agreement.explainer.CAMAgreement`; this module is the record
side (arrays, validation, step summary, MLflow metrics).

Arrays (``k`` top classes of the teacher, ``C`` classes, instance ``(c, H, W)``):

- ``image`` ``(c, H, W)`` float16: the instance, fixed per subject (stored once by the sinks);
- ``classes`` ``(k,)`` int16: the teacher's top-k classes, best first;
- ``cam_teacher``, ``cam_student`` ``(k, H, W)`` float32: each network's CAM of those classes
  (ReLU, upsampled bilinearly to the input size, in the network's own units);
- ``teacher_probs``, ``student_probs`` ``(C,)`` float32: the two softmaxes on the instance.

``meta``: ``class_names``, ``label`` (int or None), ``pred`` (the student's top-1 class),
``teacher_pred``, ``agree`` (same top-1 class), ``pearson`` and ``iou`` (one per top class, a
float or None where undefined: a constant map has no correlation), ``iou_fraction`` (the share of
pixels each map's top set keeps, 0.2), ``teacher_layer``, ``student_layer``, ``evidence`` (the
deletion/insertion evidence of the student's map of the teacher's top-1 class, target that class,
from :func:`deepvid_plugin.core.faithfulness.evidence`, or None) and ``history`` (the
instance's earlier ``{"step", "pearson", "iou", "agree"}`` entries and this one, so a record can
draw its agreement over epochs by itself).

Headline: the **Pearson correlation** of the two top-1 maps (higher is better).

MLflow metrics (per instance): ``pearson``, ``iou``, ``agree`` (1/0), ``deletion_auc``,
``insertion_auc``; step image: both top-1 maps side by side over the instance, with the numbers.

Nothing here imports torch: readers (the TensorBoard plugin) load this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from deepvid_plugin.core import card, encode, kinds, render, signals
from deepvid_plugin.core.record import Record
from deepvid_plugin.mlflow import hooks as mlflow_hooks

NAME = "cam_agreement"
VERSION = 1
ARRAYS = {"image": "<f2", "classes": "<i2", "cam_teacher": "<f4", "cam_student": "<f4",
          "teacher_probs": "<f4", "student_probs": "<f4"}


def _class_index(meta: Mapping[str, Any], name: str, k: int, required: bool) -> None:
    value = meta.get(name)
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < k:
        raise ValueError(f"meta[{name!r}]: expected an int in [0, {k}), got {value!r}")


def _number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and math.isfinite(value))


def _validate(record: Record) -> None:
    meta, arrays = record.meta, record.arrays
    names = kinds.meta_class_names(meta)
    n = len(names)
    for name in ("teacher_probs", "student_probs"):
        if arrays[name].shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},), got {arrays[name].shape}")
    classes = arrays["classes"]
    if classes.ndim != 1 or not 1 <= classes.size <= n:
        raise ValueError(f"classes: expected 1 to {n} class indices (k,), got shape "
                         f"{classes.shape}")
    if classes.min() < 0 or classes.max() >= n or len(set(classes.tolist())) != classes.size:
        raise ValueError(f"classes: expected distinct class indices in [0, {n}), got "
                         f"{classes.tolist()}")
    k = classes.size
    cam = arrays["cam_teacher"]
    if cam.ndim != 3 or cam.shape[0] != k:
        raise ValueError(f"cam_teacher: expected ({k}, H, W) maps, one per class in classes, got "
                         f"shape {cam.shape}")
    if arrays["cam_student"].shape != cam.shape:
        raise ValueError(f"cam_student: expected shape {cam.shape} (as cam_teacher), got "
                         f"{arrays['cam_student'].shape}")
    if "image" in arrays and (arrays["image"].ndim != 3
                              or arrays["image"].shape[1:] != cam.shape[1:]):
        raise ValueError(f"image: expected a (c, {cam.shape[1]}, {cam.shape[2]}) image (the maps "
                         f"are at the input size), got shape {arrays['image'].shape}")
    _class_index(meta, "pred", n, required=True)
    _class_index(meta, "teacher_pred", n, required=True)
    _class_index(meta, "label", n, required=False)
    if meta["teacher_pred"] != int(classes[0]):
        raise ValueError(f"meta['teacher_pred']: expected the first of classes "
                         f"({int(classes[0])}), got {meta['teacher_pred']!r}")
    if not isinstance(meta.get("agree"), bool):
        raise ValueError(f"meta['agree']: expected a bool, got {meta.get('agree')!r}")
    if meta["agree"] != (meta["pred"] == meta["teacher_pred"]):
        raise ValueError(f"meta['agree']: expected pred == teacher_pred "
                         f"({meta['pred'] == meta['teacher_pred']}), got {meta['agree']!r}")
    for name in ("pearson", "iou"):
        values = meta.get(name)
        if not isinstance(values, list) or len(values) != k \
                or not all(_number_or_none(v) for v in values):
            raise ValueError(f"meta[{name!r}]: expected a list of {k} finite numbers or None "
                             f"(one per class in classes), got {values!r}")
    evidence = meta.get("evidence")
    if evidence is not None and not isinstance(evidence, dict):
        raise ValueError(f"meta['evidence']: expected a dict or None, got {evidence!r}")
    history = meta.get("history", [])
    if not isinstance(history, list) or not all(
            isinstance(h, dict) and isinstance(h.get("step"), int) for h in history):
        raise ValueError(f"meta['history']: expected a list of dicts with an int 'step', got "
                         f"{history!r}")


def _summarize(record: Record, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    meta, arrays = record.meta, record.arrays
    evidence = meta.get("evidence") or {}
    predicted = int(meta["pred"])
    previous_predicted = None if previous is None else previous.get("predicted")
    better = evidence.get("better_than_random")
    pearson, iou = meta["pearson"][0], meta["iou"][0]
    return {
        "predicted": predicted,
        "teacher_predicted": int(meta["teacher_pred"]),
        "agree": bool(meta["agree"]),
        "probs": encode.round_list(arrays["student_probs"]),
        "fidelity": encode.summary_fidelity(evidence),
        # A student map no better than a random one at deletion/insertion is not to be trusted.
        "trustworthy": bool(better) if isinstance(better, bool) else None,
        "changed": previous_predicted is not None and predicted != int(previous_predicted),
        "thumb": encode.thumb(arrays["cam_student"][0]),
        "thumb_teacher": encode.thumb(arrays["cam_teacher"][0]),
        "pearson": None if pearson is None else float(f"{pearson:.4g}"),
        "iou": None if iou is None else float(f"{iou:.4g}"),
        "headline": None if pearson is None else float(pearson),
    }


KIND = kinds.register(kinds.Kind(
    name=NAME,
    version=VERSION,
    subject="instance",
    arrays=ARRAYS,
    per_subject=("image",),
    summarize=_summarize,
    validate=_validate,
    summary_fields={"teacher_predicted": "class", "agree": "bool", "thumb_teacher": "map",
                    "pearson": "number?", "iou": "number?"},
    headline="Pearson correlation of the teacher's and the student's top-1 CAMs",
    higher_is_better=True,
))


# ---- backends' hooks ------------------------------------------------------------------------
def _metrics(record: Record, summary: Mapping[str, Any]) -> dict[str, Any]:
    meta = record.meta
    evidence = meta.get("evidence") or {}
    return {"pearson": meta["pearson"][0], "iou": meta["iou"][0],
            "agree": 1.0 if meta["agree"] else 0.0,
            "deletion_auc": evidence.get("deletion_auc"),
            "insertion_auc": evidence.get("insertion_auc")}


def _step_image(record: Record) -> np.ndarray:
    """Teacher's and student's top-1 maps side by side over the instance, as a step card
    (:mod:`deepvid_plugin.core.card`): the instance, its true label, the student's prediction,
    the two maps' Pearson correlation, and the trust verdict of the student's map. MLflow's image
    slider then shows the student converging (or not) with no extra code."""
    meta, arrays = record.meta, record.arrays
    cam_t, cam_s = (np.asarray(arrays[n][0], np.float64) for n in ("cam_teacher", "cam_student"))
    image = arrays.get("image")
    grey = render.grey(image) if image is not None else np.full(cam_t.shape, 60.0)
    names = meta["class_names"]
    pearson = meta["pearson"][0]
    evidence = meta.get("evidence") or {}
    probs = arrays.get("student_probs")
    pred = int(meta["pred"])
    lines = card.label_lines(record.subject, names, meta.get("label"), pred,
                             None if probs is None else float(probs[pred]), who="student")
    teacher = names[meta["teacher_pred"]] if 0 <= meta["teacher_pred"] < len(names) else "?"
    lines.append(card.Line(f"teacher {teacher} · r " + ("n/a" if pearson is None
                                                         else f"{pearson:.2f}"),
                           card.INK if meta["agree"] else card.BAD))
    trusted = evidence.get("better_than_random")
    lines += card.trust_lines(trusted, None if trusted is not False else "random", None)
    panels = [card.Panel(render.overlay(cam, grey)[0], title, key=("0", "max"), signed=False)
              for title, cam in (("teacher", cam_t), ("student", cam_s))]
    return card.draw(lines, panels)


def _signal(record: Record) -> signals.MapSignal:
    # The student's map of the teacher's top class: what this run's model (the student) uses.
    meta = record.meta
    image = record.arrays.get("image")
    return signals.MapSignal(record.subject,
                             np.asarray(record.arrays["cam_student"][0], np.float64),
                             None if image is None else np.asarray(image, np.float64),
                             int(meta["pred"]), meta.get("label"),
                             signals.trust_of(meta.get("evidence")))


signals.register(NAME, _signal)
mlflow_hooks.register(NAME, mlflow_hooks.MLflowHooks(metrics=_metrics, headline_metric="pearson",
                                                     step_image=_step_image))

__all__ = ["ARRAYS", "KIND", "NAME", "VERSION"]
