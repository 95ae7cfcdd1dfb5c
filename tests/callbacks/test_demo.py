"""`deepvid demo --no-serve` end to end, through the real console script, kept small by flags."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.callbacks.helpers import summary_steps

EPOCHS = 3
INSTANCES = 4


@pytest.mark.slow
def test_demo_no_serve_end_to_end(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "deepvid")
    out = tmp_path / "demo"
    proc = subprocess.run(
        [exe, "demo", "--no-serve", "--out", os.fspath(out), "--epochs", str(EPOCHS),
         "--instances", str(INSTANCES), "--neighbours", "64", "--vae-epochs", "2"],
        capture_output=True, text=True, timeout=540,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
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
