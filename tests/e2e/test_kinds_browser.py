"""Explanation kinds in the browser: the kind switch of the instance grid, the detail's tab per
kind (DeepVID and Grad-CAM of the same instance at the same step, each with its evidence) and the
top-level views of kinds that are not instance grids.

Every host is checked: the self-contained viewer over a MemoryStore snapshot (in MLflow's
sandboxed blob: iframe), the TensorBoard tab under both loaders, and the MLflow app's /deepvid/
page; they serve the same routes from one route table.
"""

from __future__ import annotations

import os
import time

import pytest

from deepvid_plugin import api
from deepvid_plugin.api import MemoryStore
from deepvid_plugin.api.viewer import standalone_html
from tests.e2e.test_viewer_browser import _show_in_sandbox
from tests.factories import make_gradcam_record, make_run

pytestmark = pytest.mark.timeout(180)

IDS = ("a", "b")
DEEPVID_STEPS = range(4)
GRADCAM_STEPS = (0, 2)  # Grad-CAM at its own cadence: every other step


def _both():
    """DeepVID at every step, Grad-CAM every other step, of the same instances."""
    return (make_run(IDS, DEEPVID_STEPS, n_classes=3, evidence=True)
            + [make_gradcam_record(i, s, n_classes=3) for s in GRADCAM_STEPS for i in IDS])


@pytest.fixture(scope="module")
def html():
    store = MemoryStore({
        "both": _both(),
        "cam-only": [make_gradcam_record(i, s, n_classes=3) for s in GRADCAM_STEPS
                     for i in IDS],
    })
    return standalone_html(api.snapshot(store), title="kinds test")


def _cells(frame, kind):
    cells = frame.locator(f"[data-testid=overview-cell][data-kind={kind}]")
    cells.first.wait_for()
    return cells


def _switch_and_open_side_by_side(frame, page, screenshot):
    """Switch the grid to Grad-CAM and open the detail of b at step 2: both kinds side by side."""
    assert _cells(frame, "deepvid").count() == len(IDS) * len(DEEPVID_STEPS)
    switch = frame.locator("[data-testid=kind-switch]")
    assert switch.locator("button").all_inner_texts() == ["DeepVID", "Grad-CAM"]
    assert switch.locator("[data-testid=kind-deepvid]").get_attribute("aria-checked") == "true"

    switch.locator("[data-testid=kind-gradcam]").click()
    cells = _cells(frame, "gradcam")
    assert cells.count() == len(IDS) * len(GRADCAM_STEPS)
    assert frame.locator("[data-testid=overview-cell][data-kind=deepvid]").count() == 0
    assert switch.locator("[data-testid=kind-gradcam]").get_attribute("aria-checked") == "true"
    frame.locator("[data-testid=overview-cell][data-kind=gradcam] canvas").first.wait_for()

    # Step 2 has both kinds: the detail has a tab for each, the grid's kind first and open.
    frame.locator("[data-testid=overview-cell][data-instance=b][data-step='2']").click()
    panel = frame.locator("[data-testid=detail-panel][data-loaded=true][data-step='2']")
    panel.wait_for()
    assert panel.get_attribute("data-kinds") == "gradcam,deepvid"
    tabs = panel.locator(".detail-tab")
    assert tabs.all_inner_texts() == ["Grad-CAM", "DeepVID"]
    assert panel.locator("[data-testid=detail-tab-gradcam]").get_attribute("aria-selected") == "true"
    cam = panel.locator("[data-testid=detail-kind][data-kind=gradcam][data-loaded=true]")
    # each with its own faithfulness evidence
    cam.locator("[data-testid=evidence-deletion]").wait_for()
    assert cam.locator("[data-testid=evidence-insertion]").count() == 1
    assert cam.locator("[data-testid=cam-pred] canvas").count() == 1
    assert cam.locator("[data-testid=cam-true] canvas").count() == 1
    page.screenshot(path=screenshot)
    panel.locator("[data-testid=detail-tab-deepvid]").click()
    deep = panel.locator("[data-testid=detail-kind][data-kind=deepvid][data-loaded=true]")
    deep.locator("[data-testid=evidence-deletion]").wait_for()
    assert deep.locator("[data-testid=class-map]").count() == 3
    assert panel.get_attribute("data-kind") == "deepvid"


def test_kind_switch_and_side_by_side_detail(page, html, artifacts_dir):
    frame = _show_in_sandbox(page, html)
    _switch_and_open_side_by_side(frame, page, os.path.join(artifacts_dir, "kinds_side_by_side.png"))

    # Comparing runs compares the grid's kind: the Grad-CAM-only run is a partner now.
    frame.locator("[data-testid=tab-compare]").click()
    frame.locator("[data-testid=compare-run-a]").select_option("both")
    frame.locator("[data-testid=compare-run-b]").select_option("cam-only")
    frame.locator("[data-testid=compare-strip]").wait_for()
    assert frame.locator("[data-testid=empty-state]").count() == 0
    assert not page.dv_errors, page.dv_errors


def test_detail_at_a_step_without_the_other_kind(page, html):
    frame = _show_in_sandbox(page, html)
    frame.locator("[data-testid=overview-cell][data-instance=a][data-step='1']").click()
    panel = frame.locator("[data-testid=detail-panel][data-loaded=true][data-step='1']")
    panel.wait_for()
    assert panel.get_attribute("data-kinds") == "deepvid,gradcam"
    assert panel.locator("[data-kind=deepvid] [data-testid=evidence]").count() == 1
    panel.locator("[data-testid=detail-tab-gradcam]").click()
    missing = panel.locator("[data-testid=detail-kind-missing]")
    assert "No Grad-CAM explanation of this instance at step 1" in missing.inner_text()
    assert not page.dv_errors, page.dv_errors


def test_run_with_one_kind_and_page_views(page, html):
    frame = _show_in_sandbox(page, html)
    _cells(frame, "deepvid")
    frame.locator("[data-testid=run-select]").select_option("cam-only")
    assert _cells(frame, "gradcam").count() == len(IDS) * len(GRADCAM_STEPS)
    switch = frame.locator("[data-testid=kind-switch]")
    assert switch.locator("button").all_inner_texts() == ["Grad-CAM"]
    frame.locator("[data-testid=overview-cell][data-instance=a][data-step='0']").click()
    panel = frame.locator("[data-testid=detail-panel][data-loaded=true]")
    panel.wait_for()
    assert panel.get_attribute("data-kinds") == "gradcam"

    for kind in ("netdissect", "summit"):
        frame.locator(f"[data-testid=tab-{kind}]").click()
        view = frame.locator(f"[data-testid=page-view][data-kind={kind}]")
        view.wait_for()
        assert view.get_attribute("data-has-data") == "false"
        assert f"No {kind} data in this run" in view.inner_text()
    frame.locator("[data-testid=tab-overview]").click()
    _cells(frame, "gradcam")
    assert not page.dv_errors, page.dv_errors


# ---- the same in TensorBoard (both loaders) and in the MLflow app -------------------------------
@pytest.fixture(scope="module")
def kinds_logdir(tmp_path_factory):
    from deepvid_plugin.tensorboard.summary import TensorBoardSink

    root = tmp_path_factory.mktemp("tb-kinds")
    with TensorBoardSink(str(root / "both")) as sink:
        for rec in _both():
            sink.write(rec, rec.step)
    return root


@pytest.mark.parametrize("load_fast", ["false", "true"])
def test_kinds_in_tensorboard(tensorboard_server, kinds_logdir, page, artifacts_dir, load_fast):
    from tests.e2e.fixtures_tensorboard import wait_for_json

    base_url = tensorboard_server(kinds_logdir, load_fast=load_fast)
    wait_for_json(base_url + "/data/plugin/deepvid/kinds?run=both",
                  lambda b: [(k["kind"], k["steps"]) for k in b["kinds"]]
                  == [("deepvid", len(DEEPVID_STEPS)), ("gradcam", len(GRADCAM_STEPS))])
    page.goto(base_url + "/#deepvid")
    frame = page.frame_locator("iframe[src*='plugin_entry.html?name=deepvid']")
    _switch_and_open_side_by_side(
        frame, page, os.path.join(artifacts_dir, f"kinds_tensorboard_fast_{load_fast}.png"))
    assert not page.dv_errors, page.dv_errors


def test_kinds_in_the_mlflow_app(page, mlflow_app_server, artifacts_dir):
    from deepvid_plugin.mlflow.sink import MLflowSink

    client = mlflow_app_server.client()
    exp = client.create_experiment(f"deepvid-kinds-{time.time_ns()}")
    run = client.create_run(exp, run_name="both").info.run_id
    with MLflowSink(run, client=client, viewer_every=0, log_images=False) as sink:
        for rec in _both():
            sink.write(rec, rec.step)
    client.set_terminated(run)

    page.goto(f"{mlflow_app_server.url}/deepvid/")
    experiment = page.locator("[data-testid=experiment-select]")
    experiment.wait_for()
    if experiment.input_value() != exp:
        experiment.select_option(exp)
    _switch_and_open_side_by_side(page, page, os.path.join(artifacts_dir, "kinds_mlflow.png"))
    assert not [e for e in page.dv_errors if "pageerror" in e], page.dv_errors
