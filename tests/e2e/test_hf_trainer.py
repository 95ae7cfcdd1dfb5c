"""A HuggingFace Trainer run of 2 epochs with DeepVIDTrainerCallback (a tiny random ViT,
report_to TensorBoard and MLflow), read back through a real TensorBoard under both loaders and
through a real `mlflow server --app-name deepvid`."""

import urllib.parse

import pytest

from tests.callbacks.hf_helpers import data, train, vit
from tests.e2e.fixtures_tensorboard import get_json, wait_for_json

pytestmark = pytest.mark.e2e
pytest.importorskip("transformers")

INSTANCES = ["0", "1", "2"]


def _q(base, route, **params):
    return f"{base}{route}?{urllib.parse.urlencode(params)}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mlflow_app_server):
    import mlflow

    from deepvid_plugin.callbacks.hf import DeepVIDTrainerCallback
    from deepvid_plugin.explain import GradCAM

    out = tmp_path_factory.mktemp("hf-trainer")
    with pytest.MonkeyPatch.context() as mp:
        # the Trainer's MLflowCallback reads these (as users configure it)
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_app_server.url)
        mp.setenv("MLFLOW_EXPERIMENT_NAME", "hf-trainer-e2e")
        before = mlflow.get_tracking_uri()
        x, y = data(seed=1)
        model = vit()
        cb = DeepVIDTrainerCallback(x[:3], labels=y[:3], model=model,
                                    class_names=["cat", "dog", "bird"],
                                    explainers=[GradCAM(evidence_steps=3)])
        try:
            train(model, out, cb, ["tensorboard", "mlflow"])
        finally:
            mlflow.set_tracking_uri(before)
    client = mlflow_app_server.client()
    [run] = client.search_runs([client.get_experiment_by_name("hf-trainer-e2e").experiment_id])
    assert cb.failures == {}
    return out, run


@pytest.mark.parametrize("load_fast", ["false", "true"])
def test_tensorboard_plugin_reads_the_trainers_run(trained, tensorboard_server, load_fast):
    out, _ = trained
    [run_dir] = (out / "runs").iterdir()
    base = tensorboard_server(out / "runs", load_fast=load_fast) + "/data/plugin/deepvid/"
    runs = wait_for_json(base + "runs", lambda b: len(b["runs"]) == 1, timeout=120)["runs"]
    assert runs[0]["run"] == run_dir.name and runs[0]["kinds"] == ["gradcam"]
    for instance in INSTANCES:
        timeline = wait_for_json(_q(base, "timeline", run=run_dir.name, instance=instance,
                                    kind="gradcam"), lambda b: len(b["steps"]) == 2)
        assert [s["step"] for s in timeline["steps"]] == [0, 1]
        assert timeline["class_names"] == ["cat", "dog", "bird"]
    status, rec = get_json(_q(base, "record", run=run_dir.name, instance="1", step=1,
                              kind="gradcam"))
    assert status == 200, rec
    assert rec["arrays"]["cam_pred"]["shape"] == [32, 32]
    assert rec["meta"]["layer"].endswith("layernorm_before")
    assert len(rec["fidelity"]["deletion_curve"]) == 4  # 3 evidence steps


def test_mlflow_app_reads_the_trainers_run(trained, mlflow_app_server):
    _, run = trained
    base = mlflow_app_server.url + "/deepvid/api/"
    status, body = get_json(_q(base, "runs", experiment=run.info.experiment_id))
    assert status == 200, body
    [listed] = body["runs"]
    assert listed["run"] == run.info.run_id and listed["kinds"] == ["gradcam"]
    for instance in INSTANCES:
        status, timeline = get_json(_q(base, "timeline", run=run.info.run_id,
                                       instance=instance, kind="gradcam"))
        assert status == 200, timeline
        assert [s["step"] for s in timeline["steps"]] == [0, 1]
    # the Trainer's own metrics and ours share the run
    metrics = set(run.data.metrics)
    assert "loss" in metrics or "train_loss" in metrics
    assert any(m.startswith("deepvid/gradcam/") for m in metrics)
