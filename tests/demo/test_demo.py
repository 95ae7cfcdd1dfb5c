"""`deepvid demo --no-serve` end to end, through the real console script: the default story (a
clean, a shortcut and a distilled run on the marked digits, every kind) at its real sizes, both
stories with ``--quick``, and the single-run ``--data digits`` kept small by flags."""

from __future__ import annotations

import json
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


def _run_kind(run):
    """'marked-digits-shortcut-20261126-001500' -> 'shortcut'."""
    return re.match(r"(?:marked-digits|shapes)-(clean|shortcut|distilled)-\d{8}-\d{6}$",
                    run).group(1)


def _check_runs(out, expected_runs, instances):
    """Every run holds every kind (the distilled one cam_agreement too) for the same ids, and
    Compare runs compares clean and shortcut on one instance for both instance kinds."""
    from deepvid_plugin import api
    from deepvid_plugin.tensorboard.plugin import DataProviderStore

    store = DataProviderStore(data_provider(out / "runs"))
    runs = {_run_kind(r[0]): r[0] for r in store.runs()}
    assert sorted(runs) == sorted(expected_runs), runs
    ids = {}
    for name, run in runs.items():
        extra = ["cam_agreement"] if name == "distilled" else []
        # plus the alert kind wherever the drift detectors fired (tests/methods/alert)
        explained = [k for k in store.kinds(run) if k != "alert"]
        assert sorted(explained) == sorted(KINDS + extra), (name, store.kinds(run))
        body, status = api.respond(store, "instances", {"run": run, "kind": "deepvid"})
        assert status == 200
        ids[name] = [row["id"] for row in body["instances"]]
    assert len(ids["clean"]) == instances
    assert all(v == ids["clean"] for v in ids.values()), ids
    pair = f"{runs['clean']},{runs['shortcut']}"
    for kind in KINDS[:2]:  # the instance kinds compare one instance across the two runs
        body, status = api.respond(store, "compare", {"runs": pair, "kind": kind,
                                                      "instance": ids["clean"][0]})
        assert status == 200, body
        assert body["only_in"] == {runs["clean"]: [], runs["shortcut"]: []}
        assert len(body["steps"]) >= 2
    return runs, ids["clean"]


def _check_mlflow(out, expected_runs, epochs, tb_runs):
    from mlflow import MlflowClient

    from deepvid_plugin.mlflow import layout

    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    (exp,) = [e for e in client.search_experiments() if e.name == "deepvid-demo"]
    found = client.search_runs([exp.experiment_id])
    assert sorted(r.data.params["run"] for r in found) == sorted(expected_runs)
    # one name per run in both backends, so links and the compare pickers read the same
    assert {r.info.run_name for r in found} == set(tb_runs.values())
    for run in found:
        top = {f.path for f in client.list_artifacts(run.info.run_id, "deepvid")}
        assert {layout.paths(k).steps.rsplit("/", 1)[0] for k in KINDS} <= top | {"deepvid"}, top
        assert len(client.get_metric_history(run.info.run_id, "test_accuracy")) == epochs


def _check_where_to_look(stdout, out, runs):
    """The closing text names both servers and links Compare runs (clean vs shortcut) in each."""
    from urllib.parse import parse_qs, urlsplit

    assert "http://127.0.0.1:6006/#deepvid" in stdout and "'Compare runs'" in stdout
    tb = re.search(r"http://127\.0\.0\.1:6006/\?(\S+)#deepvid", stdout)
    ml = re.search(r"http://127\.0\.0\.1:5000/deepvid/\?(\S+)", stdout)
    assert tb and ml, stdout[-2000:]
    tb_q = {k: v[0] for k, v in parse_qs(urlsplit("?" + tb.group(1)).query).items()}
    ml_q = {k: v[0] for k, v in parse_qs(urlsplit("?" + ml.group(1)).query).items()}
    assert tb_q["deepvid_view"] == ml_q["view"] == "compare"
    assert tb_q["deepvid_a"] == ml_q["a"] == runs["clean"]
    assert tb_q["deepvid_b"] == ml_q["b"] == runs["shortcut"]
    assert tb_q["deepvid_instance"] == ml_q["instance"] and ml_q["experiment"] == "deepvid-demo"
    assert (f"mlflow server --backend-store-uri sqlite:///{out}/mlflow.db --app-name deepvid"
            in stdout)
    for view in ("accuracy:", "DeepVID:", "Grad-CAM:", "Network Dissection:", "Summit:"):
        assert f"  {view} " in stdout


@pytest.mark.slow
def test_default_demo_shows_the_shortcut_in_every_view(tmp_path):
    """`deepvid demo` at its real sizes (about 25 s on an idle 2-core box): the shortcut run's
    numbers differ from the clean run's in every view, by margins far above run-to-run noise."""
    out = tmp_path / "demo"
    proc = _demo(out)
    runs, ids = _check_runs(out, ["clean", "shortcut", "distilled"], 8)
    _check_mlflow(out, ["clean", "shortcut", "distilled"], 10, runs)
    _check_where_to_look(proc.stdout, out, runs)
    assert "  Exp-KD: " in proc.stdout
    summary = json.loads((out / "shortcut-summary.json").read_text())
    assert summary["data"] == "marked-digits" and summary["ids"] == ids
    m = {r["run"]: r for r in summary["runs"]}
    clean, short, dist = m["clean"], m["shortcut"], m["distilled"]
    # accuracy: the shortcut model fits its training set and fails where the marker is random
    assert short["train_accuracy"] > 0.98 and clean["test_accuracy"] > 0.95
    assert clean["test_accuracy"] - short["test_accuracy"] > 0.3, (clean, short)
    # the maps: both put several times the clean run's mass on the marker
    assert short["gradcam_cue"] > 2.5 * clean["gradcam_cue"], (clean, short)
    assert short["deepvid_cue"] > 2 * clean["deepvid_cue"], (clean, short)
    # Network Dissection: colour detectors replace digit detectors in the last layer
    assert short["cue_detectors"] >= clean["cue_detectors"] + 20, (clean, short)
    assert clean["task_detectors"] >= short["task_detectors"] + 20, (clean, short)
    # Summit: the class graphs are built from colour detectors
    assert short["summit_cue_nodes"] >= clean["summit_cue_nodes"] + 0.4, (clean, short)
    # Exp-KD: the student learned the digits from the clean teacher, not the marker
    assert dist["test_accuracy"] > 0.85 and dist["cam_pearson"] > 0.3, dist
    assert dist["gradcam_cue"] < short["gradcam_cue"] / 2, (dist, short)
    # the drift alerts: the shortcut run is flagged on the top-left marker, the clean run never
    hot = [a for a in short["alerts"] if a["detector"] == "hot_spot"]
    assert any("top-left" in a["message"] for a in hot), short["alerts"]
    assert [a for a in clean["alerts"] if a["detector"] in ("hot_spot", "concept_shift")] == []
    assert any(a["detector"] == "concept_shift" and "color" in a["message"]
               for a in short["alerts"]), short["alerts"]
    assert "alerts (the tool's own reading" in proc.stdout and "clean: none" in proc.stdout
    # the printed table carries the same numbers, one column per run
    for row in ("test accuracy (cue random)", "Grad-CAM mass on the cue", "DeepVID |weight| mass",
                "pass their evidence", "colour detectors", "digit detectors (last",
                "Summit: colour detectors"):
        line = next((ln for ln in proc.stdout.splitlines() if row in ln), None)
        assert line is not None, row
        assert len(re.findall(r"\d+(?:\.\d+)?%?(?:/\d+)?", line.split(row)[1])) == 3, line


@pytest.mark.slow
def test_quick_stories_run_every_kind_on_the_same_instances(tmp_path):
    """--quick (the sizes the browser tests use) for both stories: shapes has no student."""
    for data, expected in (("marked-digits", ["clean", "shortcut", "distilled"]),
                           ("shapes", ["clean", "shortcut"])):
        out = tmp_path / data
        proc = _demo(out, "--data", data, "--quick")
        runs, _ = _check_runs(out, expected, 4)
        _check_mlflow(out, expected, 2, runs)
        _check_where_to_look(proc.stdout, out, runs)
        assert ("  Exp-KD: " in proc.stdout) == (data == "marked-digits")


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


@pytest.mark.slow
def test_demo_serves_tensorboard_with_the_compare_link_until_ctrl_c(tmp_path):
    """Without --no-serve (what `make demo` does) the demo ends by serving TensorBoard and prints
    the compare link on the port it got; the link's runs exist there; Ctrl-C stops it cleanly."""
    import signal
    import socket
    import time
    import urllib.request
    from urllib.parse import parse_qs, urlsplit

    with socket.socket() as s:  # a port that is free now (the demo takes another if it is not)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = os.path.join(os.path.dirname(sys.executable), "deepvid")
    # SIGINT back to its default in the child: a test run started in the background by a
    # non-interactive shell (a CI script's `cmd &`) ignores SIGINT, children inherit that, and
    # Python then installs no KeyboardInterrupt handler, so Ctrl-C would never reach the demo.
    proc = subprocess.Popen(
        [exe, "demo", "--quick", "--out", os.fspath(tmp_path / "demo"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "".join(lines[-40:])  # the demo ended before serving
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        link = next(ln.split(": ", 1)[1].strip() for ln in lines
                    if ln.startswith("  Compare runs (clean vs shortcut): "))
        parts = urlsplit(link)
        assert parts.fragment == "deepvid" and parts.port == port, link
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        served: set = set()
        wait_until = time.monotonic() + 60  # TensorBoard reads the logdir in the background
        while not {query["deepvid_a"], query["deepvid_b"]} <= served:
            assert time.monotonic() < wait_until, (query, served)
            time.sleep(0.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/deepvid/runs",
                                        timeout=30) as r:
                served = {row["run"] for row in json.loads(r.read())["runs"]}
        assert "-clean-" in query["deepvid_a"] and "-shortcut-" in query["deepvid_b"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
