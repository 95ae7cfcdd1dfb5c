"""The attribution kind and multi-label Grad-CAM in headless Chromium, on the self-contained viewer
(the bundle the TensorBoard tab and the MLflow app load): the kind switch offers "Attribution",
its detail shows the maps of every explained class with their evidence, compare works on it, and
a multi-label Grad-CAM record shows every true class and the maps of the further targets."""

from __future__ import annotations

import os

import pytest
import torch

from deepvid_plugin import api
from deepvid_plugin.api import MemoryStore
from deepvid_plugin.api.viewer import standalone_html
from tests.e2e.test_viewer_browser import _show_in_sandbox
from tests.factories import make_attribution_record

pytestmark = pytest.mark.timeout(180)
NAMES = ["cat", "dog", "ball", "grass"]


def _multi_label_gradcam():
    from deepvid_plugin.explain import GradCAM
    from deepvid_plugin.methods.gradcam.explainer import records
    from tests.models import zoo

    x = zoo.images(2, 16)
    labels = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 0]])
    result = GradCAM("features.3", outputs="sigmoid", evidence_steps=4).explain(
        zoo.multi_label(), x, labels=labels, ids=["p", "q"])
    return records(result, 0, NAMES, images=x)


@pytest.fixture(scope="module")
def html():
    run = lambda seed: [make_attribution_record(i, s, n_classes=4, seed=seed,  # noqa: E731
                                                class_names=NAMES, targets=1)
                        for s in range(3) for i in ("a", "b")]
    store = MemoryStore({"A": run(0), "B": run(1), "multi": _multi_label_gradcam()})
    return standalone_html(api.snapshot(store, pairs=[("A", "B")]), title="attribution test")


def test_attribution_detail_and_compare(page, html, artifacts_dir):
    frame = _show_in_sandbox(page, html)
    frame.locator("[data-testid=overview-cell]").first.wait_for()
    switch = frame.locator("[data-testid=kind-switch]")
    assert "Attribution" in switch.locator("button").all_inner_texts()
    cells = frame.locator("[data-testid=overview-cell][data-kind=attribution]")
    cells.first.wait_for()
    assert cells.count() == 2 * 3
    frame.locator("[data-testid=overview-cell][data-instance=b][data-step='2']").click()
    panel = frame.locator("[data-testid=detail-panel][data-loaded=true][data-step='2']")
    panel.wait_for()
    col = panel.locator("[data-testid=detail-kind][data-kind=attribution]")
    assert col.locator("[data-testid=map-pred] canvas").count() == 1
    assert col.locator("[data-testid=map-true] canvas").count() == 1
    assert col.locator("[data-testid=map-target] canvas").count() == 1  # targets=1
    assert "method integrated_gradients" in col.locator(
        "[data-testid=attribution-method]").inner_text()
    col.locator("[data-testid=evidence-deletion]").wait_for()
    page.screenshot(path=os.path.join(artifacts_dir, "attribution_detail.png"), full_page=True)

    frame.locator("[data-testid=tab-compare]").click()
    frame.locator("[data-testid=compare-run-a]").select_option("A")
    frame.locator("[data-testid=compare-run-b]").select_option("B")
    frame.locator("[data-testid=compare-strip]").wait_for()
    frame.locator("[data-testid=compare-map-b] canvas").wait_for()
    assert frame.locator("[data-testid=error-state]").count() == 0
    assert not page.dv_errors, page.dv_errors


def test_multi_label_gradcam_detail(page, html, artifacts_dir):
    frame = _show_in_sandbox(page, html)
    frame.locator("[data-testid=run-select]").select_option("multi")
    frame.locator("[data-testid=overview-cell][data-kind=gradcam]").first.wait_for()
    frame.locator("[data-testid=overview-cell][data-instance=p][data-step='0']").click()
    panel = frame.locator("[data-testid=detail-panel][data-loaded=true]")
    panel.wait_for()
    col = panel.locator("[data-testid=detail-kind][data-kind=gradcam]")
    col.locator("[data-testid=cam-pred] canvas").wait_for()
    assert "true ball, grass" in col.inner_text()
    # every predicted and true class other than the top one has its own map
    targets = col.locator("[data-testid=cam-target]")
    assert targets.count() >= 2
    shown = {int(targets.nth(i).get_attribute("data-class")) for i in range(targets.count())}
    assert {2, 3} <= shown | {int(col.locator("[data-testid=cam-pred]").get_attribute(
        "data-class"))}
    page.screenshot(path=os.path.join(artifacts_dir, "gradcam_multi_label.png"), full_page=True)
    assert not page.dv_errors, page.dv_errors
