"""A distillation run with ``explainers=[CAMAgreement(...)]``: the student is trained with
CAMDistillLoss and the callback records, every epoch, where it looks compared with its teacher,
into a real TensorBoard logdir (read back through TensorBoard's data provider) and an MLflow run
(run-level metrics ``deepvid/cam_agreement/...`` and teacher-vs-student step cards for MLflow's
image slider, where each instance's prediction changes and at its first and last epoch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepvid_plugin.callbacks import DeepVIDCallback
from deepvid_plugin.methods.cam_agreement.explainer import CAMAgreement
from deepvid_plugin.methods.cam_agreement.loss import CAMDistillLoss
from tests.callbacks.helpers import kind_steps, records, tracked, train_slice
from tests.methods.cam_agreement.test_explainer import Net

EPOCHS = 6


def _distil(cb: DeepVIDCallback, teacher: Net, student: Net) -> None:
    x = torch.as_tensor(train_slice()[0], dtype=torch.float32)
    kd = CAMDistillLoss(teacher, student, "features", "features", top_k=3, cam_weight=20.0,
                        kd_weight=1.0)
    opt = torch.optim.Adam(student.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(0)
    for epoch in range(EPOCHS):
        if epoch:  # epoch 0 records the untrained student
            for idx in torch.randperm(len(x), generator=g).split(32):
                _, distill = kd(x[idx])  # distillation only: the teacher's labels and maps
                opt.zero_grad()
                distill.backward()
                opt.step()
        cb.on_epoch_end(epoch)


def _teacher_student():
    return Net(seed=0), Net(seed=11)


def test_cam_agreement_to_a_real_tensorboard_logdir(tmp_path):
    teacher, student = _teacher_student()
    xi, yi = tracked()
    cb = DeepVIDCallback(student, xi, labels=yi % 5, class_names=[f"c{c}" for c in range(5)],
                         explainers=[CAMAgreement(teacher, "features", "features",
                                                  evidence_steps=4)],
                         logdir=tmp_path, progress=False)
    with cb:
        _distil(cb, teacher, student)
    assert cb.failures == {}
    ids = [str(i) for i in range(4)]
    steps = list(range(EPOCHS))
    assert kind_steps(tmp_path, "cam_agreement") == {".": {i: steps for i in ids}}
    first = records(tmp_path, ".", "0", 0, kind="cam_agreement")
    last = records(tmp_path, ".", "0", EPOCHS - 1, kind="cam_agreement")
    assert last.kind == "cam_agreement" and last.step == EPOCHS - 1
    assert last.arrays["cam_teacher"].shape == (3, 8, 8) == last.arrays["cam_student"].shape
    assert last.arrays["image"].shape == (1, 8, 8)  # stored once per subject, put back
    assert last.meta["evidence"] is not None and "deletion_auc" in last.meta["evidence"]
    assert [h["step"] for h in last.meta["history"]] == steps
    assert last.meta["history"][0]["pearson"] == pytest.approx(first.meta["pearson"][0])
    # the teacher's maps do not move (it is not trained, and explaining leaves it as found);
    # the distilled student learns its top class and comes to look where it looks
    np.testing.assert_array_equal(first.arrays["cam_teacher"], last.arrays["cam_teacher"])
    assert not first.meta["agree"] and last.meta["agree"]
    assert last.meta["pearson"][0] > first.meta["pearson"][0] + 0.15


def test_cam_agreement_metrics_in_an_mlflow_run(tmp_path):
    from mlflow import MlflowClient


    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment(
        "distil", artifact_location=(tmp_path / "artifacts").as_uri()))
    teacher, student = _teacher_student()
    xi, yi = tracked(k=2)
    with DeepVIDCallback(student, xi, labels=yi % 5,
                         explainers=[CAMAgreement(teacher, "features", "features",
                                                  evidence_steps=4)],
                         mlflow=run.info.run_id, tracking_uri=uri, progress=False) as cb:
        _distil(cb, teacher, student)
    assert cb.failures == {}
    keys = set(client.get_run(run.info.run_id).data.metrics)
    # by default, run-level summaries only (per-instance numbers are opt-in: subject_metrics)
    assert keys == {"deepvid/cam_agreement/pearson_mean", "deepvid/cam_agreement/deletion_auc_mean",
                    "deepvid/cam_agreement/trusted_share"}
    history = client.get_metric_history(run.info.run_id, "deepvid/cam_agreement/pearson_mean")
    assert sorted(m.step for m in history) == list(range(EPOCHS))
    assert all(-1.0 <= m.value <= 1.0 for m in history)
    # MLflow's own image slider: the teacher-vs-student picture of each instance and epoch
    pngs = sorted(f.path for f in client.list_artifacts(run.info.run_id, "images")
                  if f.path.endswith(".png"))
    # at each instance's first epoch, where its prediction changes, and at its last
    assert 2 * 2 <= len(pngs) <= 2 * EPOCHS
    for i in range(2):
        steps = [int(p.split("+step+")[1].split("+")[0]) for p in pngs if f"~{i}+step+" in p]
        assert 0 in steps and EPOCHS - 1 in steps, (i, steps)
    assert all(p.startswith("images/deepvid~cam_agreement~") for p in pngs), pngs
