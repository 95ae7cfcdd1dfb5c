"""The ``deepvid`` kind: DeepVID's local linear student of one tracked instance.

Arrays and metadata are :class:`~deepvid_plugin.methods.deepvid.record.ExplanationRecord`'s (its
typed view): ``image``, ``teacher_probs``, ``student_probs``, ``weights``, ``bias``,
``neighbours``, ``neighbour_teacher``, ``neighbour_student``, and since kind version 2
``classes`` (which classes ``weights`` holds) and, for a student over regions, ``segments``;
``meta`` holds ``class_names``, ``label``, ``fidelity`` and ``image_shape``. The instance and its
neighbour images are fixed per instance (sampled once, reused every epoch), so they are stored
once per subject (version-1 records carry the image in every record, and still read).

Headline: the student's **held-out top-1 agreement** with the teacher (``fidelity
.top1_agreement``, higher is better). It is DeepVID's own trust number and every DeepVID record
ever written carries it (version-1 records included), whereas the deletion AUC exists only in
records with faithfulness evidence; the AUCs stay in the summary's ``fidelity`` for charts that
compare kinds on equal terms.

Nothing here imports torch: readers (the TensorBoard plugin) load this module.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from deepvid_plugin.api import hooks as api_hooks
from deepvid_plugin.core import encode, kinds, signals
from deepvid_plugin.core.record import Record
from deepvid_plugin.methods.deepvid.record import ARRAYS, OPTIONAL, ExplanationRecord
from deepvid_plugin.mlflow import hooks as mlflow_hooks

HEADLINE_KEY = "top1_agreement"


def _view(record: Record) -> ExplanationRecord:
    return ExplanationRecord.from_record(record)


def _validate(record: Record) -> None:
    _view(record)  # ExplanationRecord checks every shape, the label and the JSON fields


def _headline(fidelity: Mapping[str, Any]) -> float | None:
    value = fidelity.get(HEADLINE_KEY)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _summarize(record: Record, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    rec = _view(record)
    predicted = rec.predicted
    fidelity = encode.summary_fidelity(rec.fidelity)
    previous_predicted = None if previous is None else previous.get("predicted")
    return {
        "predicted": predicted,
        "probs": encode.round_list(rec.teacher_probs),
        "fidelity": fidelity,
        "trustworthy": rec.trustworthy,
        "changed": previous_predicted is not None and predicted != int(previous_predicted),
        "thumb": encode.thumb(_map_or_zeros(rec.weight_map, rec, predicted)),
        # weight x input summed over channels (a region's weight for a region student): what
        # each pixel of this instance adds to the predicted class; the grid can show either
        "thumb_contribution": encode.thumb(_map_or_zeros(rec.contribution_map, rec, predicted)),
        "headline": _headline(fidelity),
    }


def _map_or_zeros(how: Any, rec: ExplanationRecord, cls: int) -> np.ndarray:
    # The predicted class is always kept (it is the teacher's top class); zeros only for a
    # hand-made record that leaves it out.
    found = how(cls)
    return found if found is not None else np.zeros(rec.image.shape[1:])


def _upgrade_summary(summary: dict[str, Any]) -> dict[str, Any]:
    # Summaries written before kinds (version 1) have no headline; it is their fidelity's.
    if "headline" not in summary:
        fidelity = summary.get("fidelity")
        summary["headline"] = _headline(fidelity) if isinstance(fidelity, dict) else None
    return summary


KIND = kinds.register(kinds.Kind(
    name=ExplanationRecord.KIND,
    version=ExplanationRecord.KIND_VERSION,
    subject="instance",
    arrays=dict(ARRAYS),
    optional=frozenset(OPTIONAL),
    per_subject=("image", "neighbours"),
    summarize=_summarize,
    validate=_validate,
    headline="fidelity (held-out top-1 agreement)",
    higher_is_better=True,
    view=_view,
    upgrade_summary=_upgrade_summary,
))


def step_summary(record: ExplanationRecord, previous_predicted: int | None) -> dict[str, Any]:
    """The step summary of a DeepVID explanation (what the overview draws), as the sinks store
    it: ``previous_predicted`` is the instance's predicted class at its previous logged step
    (``None`` for the first one) and sets ``changed``."""
    if not isinstance(record, ExplanationRecord):
        raise TypeError(f"record: expected an ExplanationRecord, got {type(record).__name__}")
    if previous_predicted is not None and (
        isinstance(previous_predicted, bool)
        or not isinstance(previous_predicted, (int, np.integer))
    ):
        raise TypeError(f"previous_predicted: expected an int or None, got {previous_predicted!r}")
    previous = None if previous_predicted is None else {"predicted": int(previous_predicted)}
    return kinds.summarize(record.to_record(), previous)


# ---- backends' hooks ------------------------------------------------------------------------
def _metrics(record: Record, summary: Mapping[str, Any]) -> dict[str, Any]:
    fidelity = record.meta.get("fidelity", {})
    return {"fidelity": fidelity.get(HEADLINE_KEY), "deletion_auc": fidelity.get("deletion_auc"),
            "insertion_auc": fidelity.get("insertion_auc")}


def _step_image(record: Record) -> np.ndarray:
    from deepvid_plugin.methods.deepvid.render import render_weight_map  # PIL: only when drawing

    return render_weight_map(_view(record))


def _record_json(rec: ExplanationRecord, run: str, instance: str) -> dict[str, Any]:
    """The ``record`` route's answer for DeepVID (the shape the ``deepvid`` view reads).

    ``weights[i]`` is the map of class ``classes[i]``: a pixel student's ``(C, H, W)`` weights,
    or a region student's ``(F,)`` weights with ``segments`` (each pixel's region) to draw them
    back onto the image."""
    warns = []
    if not rec.has_neighbour_images:
        warns.append(f"neighbour images of instance {instance!r} in run {run!r} are missing "
                     "or unreadable; their labels are still shown")
    if not rec.has_image:
        warns.append(f"the image of instance {instance!r} in run {run!r} is missing or "
                     "unreadable; its maps are drawn without it")
    for w in warns:
        warnings.warn(w, stacklevel=3)
    return {
        "run": run, "kind": KIND.name, "instance": instance, "step": rec.step,
        "schema_version": rec.schema_version,
        "class_names": list(rec.class_names), "label": rec.label, "predicted": rec.predicted,
        "image": encode.encode_image(rec.image),
        # The instance in the model's own input space, signed: the frontend multiplies it with
        # a pixel student's weights to draw contributions (weight x input), per channel and
        # summed. A region's weight is its contribution already.
        "input": encode.encode_map(rec.image) if rec.has_image and not rec.regions else None,
        "teacher_probs": encode.round_list(rec.teacher_probs),
        "student_probs": encode.round_list(rec.student_probs),
        "classes": [int(c) for c in rec.classes],
        "weights": [encode.encode_map(w) for w in rec.weights],
        "segments": encode.encode_index_map(rec.segments) if rec.regions else None,
        "bias": encode.round_list(rec.bias),
        "fidelity": dict(rec.fidelity), "trustworthy": rec.trustworthy,
        "neighbours": [encode.encode_image(n) for n in rec.neighbours],
        "neighbour_teacher": [int(v) for v in rec.neighbour_teacher],
        "neighbour_student": [int(v) for v in rec.neighbour_student],
        "settings": dict(rec.settings),
        "warnings": warns,
    }


def _class_map(record: Record, cls: int) -> np.ndarray | None:
    # The weights of every kept class (every class in version-1 records, the teacher's top
    # classes and the true class since version 2), channel-averaged or drawn back from regions;
    # None for a class the record did not keep.
    return _view(record).weight_map(cls)


def _signal(record: Record) -> signals.MapSignal | None:
    # The contribution map w[pred] * x (a region student's region weights): what the UI draws
    # and the evidence scores.
    rec = _view(record)
    k = rec.predicted
    contribution = rec.contribution_map(k)
    if contribution is None:  # a hand-made record without its prediction's map
        return None
    image = np.asarray(rec.image, np.float64)
    if not np.isfinite(image).all():  # read back without its per-subject image
        image = None
    return signals.MapSignal(rec.instance_id, contribution, image, k, rec.label,
                             bool(rec.trustworthy) if "trustworthy" in rec.fidelity else None)


signals.register(KIND.name, _signal)
mlflow_hooks.register(KIND.name, mlflow_hooks.MLflowHooks(
    metrics=_metrics, headline_metric="fidelity", step_image=_step_image))
api_hooks.register(KIND.name, api_hooks.ApiHooks(record_json=_record_json,
                                                 class_map=_class_map))

__all__ = ["HEADLINE_KEY", "KIND", "step_summary"]
