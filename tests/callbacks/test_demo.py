"""`deepvid demo --no-serve` end to end, through the real console script, kept small by flags:
the shapes story (a clean and a shortcut run, every kind) with ``--quick``, and ``--data digits``."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.callbacks.helpers import data_provider, summary_steps

EPOCHS = 3
INSTANCES = 4
KINDS = ["deepvid", "gradcam", "netdissect", "summit"]


def _demo(out, *flags):
    exe = os.path.join(os.path.dirname(sys.executable), "deepvid")
    proc = subprocess.run(
        [exe, "demo", "--no-serve", "--out", os.fspath(out), *flags],
        capture_output=True, text=True, timeout=540,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_shapes_demo_two_runs_every_kind_same_instances(tmp_path):
    from deepvid_plugin import api
    from deepvid_plugin.tensorboard.plugin import DataProviderStore

    out = tmp_path / "demo"
    proc = _demo(out, "--data", "shapes", "--quick")
    stdout = proc.stdout
    # TensorBoard: a clean and a shortcut run, each with every kind, tracking the same ids
    store = DataProviderStore(data_provider(out / "runs"))
    runs = sorted(r[0] for r in store.runs())
    assert [r.split("-")[1] for r in runs] == ["clean", "shortcut"], runs
    ids = {}
    for run in runs:
        assert store.kinds(run) == KINDS
        body, status = api.respond(store, "instances", {"run": run, "kind": "deepvid"})
        assert status == 200
        ids[run] = [row["id"] for row in body["instances"]]
    assert len(ids[runs[0]]) == 4 and ids[runs[0]] == ids[runs[1]]
    for kind in KINDS[:2]:  # the instance kinds compare one instance across the two runs
        body, status = api.respond(store, "compare", {"runs": ",".join(runs), "kind": kind,
                                                      "instance": ids[runs[0]][0]})
        assert status == 200, body
        assert body["only_in"] == {runs[0]: [], runs[1]: []} and len(body["steps"]) == 2
    # the printed story: one measured row per view, both runs, and where to look
    for row in ("test accuracy", "Grad-CAM mass on the marker", "DeepVID |weight| mass",
                "colour detectors", "shape detectors (last", "Summit: shape detectors"):
        line = next((ln for ln in stdout.splitlines() if row in ln), None)
        assert line is not None, row
        assert len(re.findall(r"\d+(?:\.\d+)?%?", line.split(row)[1])) == 2, line
    assert "http://127.0.0.1:6006/#deepvid" in stdout and "'Compare runs'" in stdout
    assert (f"mlflow server --backend-store-uri sqlite:///{out}/mlflow.db --app-name deepvid"
            in stdout)
    for view in ("accuracy:", "DeepVID:", "Grad-CAM:", "Network Dissection:", "Summit:"):
        assert f"  {view} " in stdout
    # MLflow: both runs in the demo experiment, with every kind's artifacts
    from mlflow import MlflowClient

    from deepvid_plugin.mlflow import layout

    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    (exp,) = [e for e in client.search_experiments() if e.name == "deepvid-demo"]
    found = client.search_runs([exp.experiment_id])
    assert sorted(r.data.params["shortcut"] for r in found) == ["False", "True"]
    for run in found:
        top = {f.path for f in client.list_artifacts(run.info.run_id, "deepvid")}
        assert {layout.paths(k).steps.rsplit("/", 1)[0] for k in KINDS} <= top | {"deepvid"}, top
        assert len(client.get_metric_history(run.info.run_id, "test_accuracy")) == 2


@pytest.mark.slow
def test_digits_demo_no_serve_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = _demo(out, "--data", "digits", "--epochs", str(EPOCHS), "--instances",
                 str(INSTANCES), "--neighbours", "64", "--vae-epochs", "2")
    stdout = proc.stdout
    # TensorBoard's own data provider sees every epoch of every tracked instance
    steps = summary_steps(out / "runs")
    assert len(steps) == 1, steps
    (instances,) = steps.values()
    assert len(instances) == INSTANCES
    assert all(s == list(range(EPOCHS)) for s in instances.values()), instances
    # the printed report: fidelity table (one row per instance), sanity check, where to look
    for iid in instances:
        assert f"  {iid} " in stdout
    assert "explanations are trustworthy" in stdout
    assert "randomization check: mean Spearman" in stdout
    assert "http://127.0.0.1:6006/#deepvid" in stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{out}/mlflow.db" in stdout
    assert "fitting VAE" in proc.stderr and "training" in proc.stderr  # progress bars
    png = out / "deepvid-demo.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the MLflow run holds the records of every epoch and the fitted VAE
    from mlflow import MlflowClient

    from deepvid_plugin.mlflow import layout

    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    (exp,) = [e for e in client.search_experiments() if e.name == "deepvid-demo"]
    (run,) = client.search_runs([exp.experiment_id])
    steps_dir = layout.paths("deepvid").steps
    step_files = [f.path for f in client.list_artifacts(run.info.run_id, steps_dir)]
    assert step_files == [f"{steps_dir}/{s}.json" for s in range(EPOCHS)]
    assert [f.path for f in client.list_artifacts(run.info.run_id, "deepvid-generator")] == [
        "deepvid-generator/deepvid-vae.pt"]
    assert len(client.get_metric_history(run.info.run_id, "test_accuracy")) == EPOCHS
