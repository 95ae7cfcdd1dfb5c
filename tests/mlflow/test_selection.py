"""What the MLflow sink logs by default (:mod:`deepvid_plugin.mlflow.selection`): a few run-level
metrics per kind, and step images where they tell something. No server needed."""

from __future__ import annotations

import pytest

from deepvid_plugin.core import kinds
from deepvid_plugin.mlflow import layout, selection
from tests.factories import FACTORIES, make_record


def _items(records):
    previous = {}
    out = []
    for rec in records:
        kind, env = kinds.prepare(rec)
        summary = kinds.summarize(env, previous.get((kind.name, env.subject)))
        previous[(kind.name, env.subject)] = summary
        out.append((kind, env, summary, layout.instance_key(env.subject)))
    return out


def test_every_kind_at_once_stays_within_fifteen_run_level_metrics():
    # the demo's distilled run holds every kind; 8 subjects each
    records = [FACTORIES[k](f"s{i}", 3) for k in FACTORIES for i in range(8)]
    got = selection.step_metrics(_items(records))
    assert 0 < len(got) <= 15, sorted(got)
    assert all(k.startswith("deepvid/") and "headline_mean" not in k for k in got)
    # one number per kind and summary, named for what it is
    assert {"deepvid/fidelity_mean", "deepvid/trusted_share", "deepvid/gradcam/trusted_share",
            "deepvid/gradcam/deletion_auc_mean", "deepvid/cam_agreement/pearson_mean",
            "deepvid/netdissect/unique_detectors_mean"} <= set(got)
    # opt-in: every subject's numbers as well
    every = selection.step_metrics(_items(records), subject_metrics=True)
    assert set(got) < set(every) and "deepvid/fidelity/s3" in every


def test_trusted_share_and_means_are_over_subjects():
    recs = [make_record(f"i{k}", 0, trustworthy=k < 3, evidence=True) for k in range(4)]
    got = selection.step_metrics(_items(recs))
    assert got["deepvid/trusted_share"] == pytest.approx(0.75)
    assert got["deepvid/fidelity_mean"] == pytest.approx(
        sum(r.fidelity["top1_agreement"] for r in recs) / 4)
    assert got["deepvid/deletion_auc_mean"] == pytest.approx(
        sum(r.fidelity["deletion_auc"] for r in recs) / 4)
    # records of older versions have no evidence: no deletion mean rather than a made-up one
    assert "deepvid/deletion_auc_mean" not in selection.step_metrics(
        _items([make_record("old", 0)]))


def test_images_at_the_first_step_where_the_prediction_changes_and_at_the_last():
    plan = selection.ImagePlan()
    preds = [3, 3, 5, 5, 5, 3, 3]
    due = [plan.due("deepvid", "a", step, f"rec{step}", {"changed": step > 0 and p != preds[step - 1]})
           for step, p in enumerate(preds)]
    assert [s for s, d in enumerate(due) if d] == [0, 2, 5]
    assert plan.at_close() == [("deepvid", "a", 6, "rec6")]
    assert plan.at_close() == []  # drawn once
    # the last step already drawn (it changed there): nothing left for close
    plan = selection.ImagePlan()
    plan.due("deepvid", "b", 0, "r0", {"changed": False})
    assert plan.at_close() == []
    every = selection.ImagePlan("all")
    assert all(every.due("deepvid", "a", s, "r", {"changed": False}) for s in range(3))
    with pytest.raises(ValueError, match="log_images: expected True, False or one of"):
        selection.ImagePlan("sometimes")
