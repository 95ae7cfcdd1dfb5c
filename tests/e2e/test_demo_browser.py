"""`deepvid demo --quick` (the default marked-digits story) in the browser: its output opened in
TensorBoard (both loaders' default, the Python one) and in the MLflow app (``mlflow server
--app-name deepvid`` on the demo's own ``mlflow.db``). "Compare runs" puts the clean and the
shortcut run side by side on the same instance, and every kind's view renders without an error
state, the distilled run's "Teacher vs student" (cam_agreement) included."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]

INSTANCE_KINDS = ("deepvid", "gradcam")
PAGE_KINDS = ("netdissect", "summit")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    exe = os.path.join(os.path.dirname(sys.executable), "deepvid")
    proc = subprocess.run([exe, "demo", "--quick", "--no-serve", "--out", os.fspath(out)],
                          capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _check_every_view(frame, page, shot):
    """Timeline of each instance kind, Compare runs (clean vs shortcut), each page kind, then the
    distilled run's teacher-vs-student grid."""
    frame.locator("[data-testid=overview-cell][data-kind=deepvid]").first.wait_for()
    _select_run(frame, "clean")
    switch = frame.locator("[data-testid=kind-switch]")
    for kind in INSTANCE_KINDS:
        switch.locator(f"[data-testid=kind-{kind}]").click()
        cells = frame.locator(f"[data-testid=overview-cell][data-kind={kind}]")
        cells.first.wait_for()
        assert cells.count() == 4 * 2  # 4 tracked instances x 2 epochs (--quick)
        assert frame.locator("[data-testid=error-state]").count() == 0
    # Compare runs compares the grid's kind: DeepVID's weight maps, clean (A) vs shortcut (B)
    switch.locator("[data-testid=kind-deepvid]").click()
    frame.locator("[data-testid=tab-compare]").click()
    run_a, run_b = frame.locator("[data-testid=compare-run-a]"), frame.locator(
        "[data-testid=compare-run-b]")
    names = [o for o in run_a.locator("option").all_inner_texts()]
    clean = next(n for n in names if "clean" in n)
    shortcut = next(n for n in names if "shortcut" in n)
    run_a.select_option(label=clean)
    run_b.select_option(label=shortcut)
    frame.locator("[data-testid=compare-strip]").wait_for()
    instances = frame.locator("[data-testid=compare-instance] option").all_inner_texts()
    assert len(instances) == 4 and any("test-0" in i for i in instances), instances
    frame.locator("[data-testid=compare-map-a]").first.wait_for()  # drawn after its records load
    assert frame.locator("[data-testid=compare-map-a]").count() == 1
    # the instance is shown beside the maps (they are drawn over it)
    assert frame.locator("[data-testid=compare-instance-image] canvas").count() == 1
    assert frame.locator("[data-testid=compare-map-b]").count() == 1
    assert frame.locator("[data-testid=error-state]").count() == 0
    page.screenshot(path=shot)
    for kind in PAGE_KINDS:
        frame.locator(f"[data-testid=tab-{kind}]").click()
        view = frame.locator(f"[data-testid=page-view][data-kind={kind}]")
        view.wait_for()
        assert view.get_attribute("data-has-data") == "true", kind
        page.wait_for_timeout(500)  # the view fetches its records after it is drawn
        assert frame.locator("[data-testid=error-state]").count() == 0, kind
    frame.locator("[data-testid=tab-overview]").click()
    _select_run(frame, "distilled")
    frame.locator("[data-testid=kind-switch] [data-testid=kind-cam_agreement]").click()
    cells = frame.locator("[data-testid=overview-cell][data-kind=cam_agreement]")
    cells.first.wait_for()
    assert cells.count() == 4 * 2
    assert frame.locator("[data-testid=error-state]").count() == 0


def _select_run(frame, which):
    """Pick the demo run whose name holds ``which`` (clean, shortcut, distilled)."""
    sel = frame.locator("[data-testid=run-select]")
    options = sel.locator("option")
    # TensorBoard's values are the run folders; the MLflow app's are run ids, its labels the names
    found = [options.nth(i).get_attribute("value") for i in range(options.count())
             if f"-{which}-" in options.nth(i).inner_text()]
    assert len(found) == 1, (which, options.all_inner_texts())
    sel.select_option(found[0])


def test_demo_in_tensorboard(demo_out, tensorboard_server, page, artifacts_dir):
    from tests.e2e.fixtures_tensorboard import wait_for_json

    base_url = tensorboard_server(demo_out / "runs")
    runs = wait_for_json(base_url + "/data/plugin/deepvid/runs",
                         lambda b: len(b.get("runs", [])) == 3)
    assert sorted(r["run"].split("-")[2] for r in runs["runs"]) == ["clean", "distilled",
                                                                    "shortcut"]
    page.goto(base_url + "/#deepvid")
    frame = page.frame_locator("iframe[src*='plugin_entry.html?name=deepvid']")
    _check_every_view(frame, page, os.path.join(artifacts_dir, "demo_tensorboard.png"))
    assert not page.dv_errors, page.dv_errors


def test_demo_in_the_mlflow_app(demo_out, page, artifacts_dir):
    from tests.e2e.fixtures_mlflow import start_mlflow_server

    # the server's root is the demo's folder: its backend is the demo's own mlflow.db
    server = start_mlflow_server(demo_out, app_name="deepvid")
    try:
        page.goto(f"{server.url}/deepvid/?view=overview")  # the timeline first, then compare
        experiment = page.locator("[data-testid=experiment-select]")
        experiment.wait_for()
        demo = next(o for o in experiment.locator("option").all() if "deepvid-demo"
                    in o.inner_text())
        experiment.select_option(demo.get_attribute("value"))
        _check_every_view(page, page, os.path.join(artifacts_dir, "demo_mlflow.png"))
        assert not [e for e in page.dv_errors if "pageerror" in e], page.dv_errors
    finally:
        server.stop()


def test_metric_strip_shows_the_demos_test_accuracy(demo_out, tensorboard_server, page):
    # the demo logs its test accuracy with the callback: TensorBoard scalars, read back into
    # the strip above the grid (the first clue: the shortcut run's accuracy is low)
    import json

    from tests.e2e.fixtures_tensorboard import wait_for_json

    summary = json.loads((demo_out / "shortcut-summary.json").read_text())
    accuracy = {r["run"]: r["test_accuracy"] for r in summary["runs"]}
    base_url = tensorboard_server(demo_out / "runs", load_fast="true")
    runs = wait_for_json(base_url + "/data/plugin/deepvid/runs",
                         lambda b: len(b.get("runs", [])) == 3)["runs"]
    for which in ("clean", "shortcut"):
        run = next(r["run"] for r in runs if f"-{which}-" in r["run"])
        page.goto(f"{base_url}/?deepvid_run={run}#deepvid")
        frame = page.frame_locator("iframe[src*='plugin_entry.html?name=deepvid']")
        frame.locator("[data-testid=metric-strip][data-metric=test_accuracy]").wait_for()
        readout = frame.locator("[data-testid=metric-readout]").inner_text()
        assert readout.startswith(f"{accuracy[which]:.4g} at step "), (which, readout)
    assert not page.dv_errors, page.dv_errors


def test_mlflow_runs_log_a_handful_of_deepvid_metrics_and_link_to_the_app(demo_out):
    from mlflow import MlflowClient

    from deepvid_plugin.mlflow import links

    client = MlflowClient(f"sqlite:///{demo_out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("deepvid-demo")
    found = client.search_runs([exp.experiment_id])
    assert len(found) == 3
    for run in found:
        ours = sorted(k for k in run.data.metrics if k.startswith("deepvid/"))
        assert 3 <= len(ours) <= 15, (run.info.run_name, ours)
        assert "deepvid/trusted_share" in ours and "deepvid/gradcam/deletion_auc_mean" in ours
        assert {"test_accuracy", "train_loss"} <= set(run.data.metrics)
        link = links.app_link(exp.experiment_id, run.info.run_id)
        assert run.data.tags[links.APP_TAG] == link and link in run.data.tags[links.NOTE_TAG]


def test_mlflow_run_page_links_to_the_app_and_back(demo_out, page):
    # MLflow's own run page: its description links to the run in the DeepVID app, whose
    # toolbar links back to MLflow's page of the run
    from mlflow import MlflowClient

    from tests.e2e.fixtures_mlflow import start_mlflow_server

    client = MlflowClient(f"sqlite:///{demo_out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("deepvid-demo").experiment_id
    run = next(r for r in client.search_runs([exp]) if "-shortcut-" in r.info.run_name)
    server = start_mlflow_server(demo_out, app_name="deepvid")
    try:
        page.goto(f"{server.url}/#/experiments/{exp}/runs/{run.info.run_id}")
        link = page.get_by_role("link", name="open them in the DeepVID app")
        link.wait_for(timeout=60_000)
        with page.context.expect_page() as opened:  # MLflow opens description links in a tab
            link.click()
        app = opened.value
        app.locator("[data-testid=overview-cell] canvas").first.wait_for(timeout=60_000)
        assert app.url.startswith(f"{server.url}/deepvid/?")
        assert app.locator("[data-testid=run-select]").input_value() == run.info.run_id
        back = app.locator("[data-testid=run-page-link]")
        assert back.get_attribute("href") == f"/#/experiments/{exp}/runs/{run.info.run_id}"
        back.click()
        app.wait_for_url(f"{server.url}/#/experiments/{exp}/runs/{run.info.run_id}*")
    finally:
        server.stop()
