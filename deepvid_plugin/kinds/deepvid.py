"""The ``deepvid`` kind: DeepVID's local linear student of one tracked instance.

Arrays and metadata are :class:`~deepvid_plugin.record.ExplanationRecord`'s (its typed view):
``image``, ``teacher_probs``, ``student_probs``, ``weights``, ``bias``, ``neighbours``,
``neighbour_teacher``, ``neighbour_student``; ``meta`` holds ``class_names``, ``label`` and
``fidelity``. The neighbour images are fixed per instance (sampled once, reused every epoch), so
they are stored once per subject.

Headline: the student's **held-out top-1 agreement** with the teacher (``fidelity
.top1_agreement``, higher is better). It is DeepVID's own trust number and every DeepVID record
ever written carries it (version-1 records included), whereas the deletion AUC exists only in
records with faithfulness evidence; the AUCs stay in the summary's ``fidelity`` for charts that
compare kinds on equal terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepvid_plugin import kinds
from deepvid_plugin.record import _ARRAY_FIELDS, ExplanationRecord, Record

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
    from deepvid_plugin import api

    rec = _view(record)
    predicted = rec.predicted
    thumb = api._block_mean(api.channel_mean(rec.weights[predicted]), api.THUMB_SIZE)
    fidelity = api.summary_fidelity(rec.fidelity)
    previous_predicted = None if previous is None else previous.get("predicted")
    return {
        "predicted": predicted,
        "probs": api._round(rec.teacher_probs),
        "fidelity": fidelity,
        "trustworthy": rec.trustworthy,
        "changed": previous_predicted is not None and predicted != int(previous_predicted),
        "thumb": api.encode_map(thumb),
        "headline": _headline(fidelity),
    }


def _upgrade_summary(summary: dict[str, Any]) -> dict[str, Any]:
    # Summaries written before kinds (version 1) have no headline; it is their fidelity's.
    if "headline" not in summary:
        fidelity = summary.get("fidelity")
        summary["headline"] = _headline(fidelity) if isinstance(fidelity, dict) else None
    return summary


def _metrics(record: Record, summary: Mapping[str, Any]) -> dict[str, Any]:
    # MLflow metric names of layout 1: deepvid/fidelity/<key>, deepvid/deletion_auc/<key>, ...
    fidelity = record.meta.get("fidelity", {})
    return {"fidelity": fidelity.get(HEADLINE_KEY), "deletion_auc": fidelity.get("deletion_auc"),
            "insertion_auc": fidelity.get("insertion_auc")}


def _step_image(record: Record) -> Any:
    from deepvid_plugin.mlflow.sink import render_weight_map  # PIL: only when drawing

    return render_weight_map(_view(record))


KIND = kinds.register(kinds.Kind(
    name=ExplanationRecord.KIND,
    version=ExplanationRecord.KIND_VERSION,
    subject="instance",
    arrays=dict(_ARRAY_FIELDS),
    per_subject=("neighbours",),
    summarize=_summarize,
    validate=_validate,
    headline="fidelity (held-out top-1 agreement)",
    higher_is_better=True,
    view=_view,
    upgrade_summary=_upgrade_summary,
    metrics=_metrics,
    headline_metric="fidelity",
    step_image=_step_image,
))
