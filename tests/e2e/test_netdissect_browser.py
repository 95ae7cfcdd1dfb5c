"""The Network Dissection page in the browser (self-contained viewer over a MemoryStore snapshot,
in MLflow's sandboxed blob: iframe): unique detectors against epoch per layer with the random
baseline band, the concept x epoch heat map, and the unit table with IoU sparklines, label
switches and top probe images with the unit's mask; and the same page in TensorBoard. The
screenshot is docs/img/netdissect.png (written when ``DEEPVID_DOCS_SCREENSHOTS=1``; always
written to test-artifacts/)."""

from __future__ import annotations

import os

import pytest

from deepvid_plugin import api
from deepvid_plugin.api import MemoryStore
from deepvid_plugin.api.viewer import standalone_html
from deepvid_plugin.methods.netdissect import ConceptSet
from tests.e2e.test_viewer_browser import _show_in_sandbox
from tests.factories import make_run
from tests.methods.netdissect.test_explainer import LAYERS, dissected_run

pytestmark = pytest.mark.timeout(180)

EPOCHS = (0, 1, 2, 3, 4)
DOCS_IMG = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "img", "netdissect.png")


@pytest.fixture(scope="module")
def records():
    return dissected_run(ConceptSet.synthetic(n=200, size=24, seed=0), epochs=EPOCHS)


@pytest.fixture(scope="module")
def html(records):
    store = MemoryStore({"with-deepvid": make_run(("a", "b"), range(2), n_classes=3) + records,
                         "dissection-only": records})
    return standalone_html(api.snapshot(store), title="netdissect test")


def _open(frame, run=None):
    if run is not None:
        frame.locator("[data-testid=run-select]").select_option(run)
    frame.locator("[data-testid=tab-netdissect]").click()
    view = frame.locator("[data-testid=page-view][data-kind=netdissect]")
    view.wait_for()
    assert view.get_attribute("data-has-data") == "true"
    detail = frame.locator("[data-testid=nd-detail][data-loaded=true]")
    detail.wait_for()
    return view, detail


def test_netdissect_page(page, html, records, artifacts_dir):
    page.set_viewport_size({"width": 1280, "height": 2200})
    frame = _show_in_sandbox(page, html)
    frame.locator("[data-testid=overview-cell]").first.wait_for()
    view, detail = _open(frame)

    # one chart per layer, each with uPlot's canvas and the baseline note
    charts = view.locator("[data-testid=nd-detectors-chart]")
    assert charts.count() == len(LAYERS)
    assert [charts.nth(i).get_attribute("data-layer") for i in range(len(LAYERS))] == LAYERS
    assert charts.first.locator("canvas").count() >= 1
    assert "random init" in charts.first.inner_text()

    # the first layer at the last epoch is selected
    assert (detail.get_attribute("data-layer"), detail.get_attribute("data-step")) == ("0", "4")
    mine = [r for r in records if r.subject == "0"]
    last = mine[-1]
    # heat map: one row per concept some unit detects at some epoch, one cell per epoch
    detected = {last.meta["labels"][int(lab)] for r in mine
                for lab, det in zip(r.arrays["label"], r.arrays["detector"], strict=True) if det}
    assert detected, "the tiny CNN should have some detectors"
    heat = detail.locator("[data-testid=nd-heatmap]")
    assert int(heat.get_attribute("data-rows")) == len(detected)
    cells = heat.locator("[data-testid=nd-heat-cell]")
    assert cells.count() == len(detected) * len(EPOCHS)
    # unit table: every unit of the layer, labels as recorded, each with its top probe images
    rows = detail.locator("[data-testid=nd-unit-row]")
    units = last.arrays["label"].shape[0]
    assert rows.count() == units
    got = {int(rows.nth(i).get_attribute("data-unit")): rows.nth(i).get_attribute("data-label")
           for i in range(units)}
    assert got == {u: last.meta["labels"][int(lab)] for u, lab in enumerate(last.arrays["label"])}
    switches = {int(rows.nth(i).get_attribute("data-unit")):
                int(rows.nth(i).get_attribute("data-switches")) for i in range(units)}
    labels = [[int(v) for v in r.arrays["label"]] for r in mine]
    assert switches == {u: sum(a[u] != b[u] for a, b in zip(labels, labels[1:], strict=False))
                        for u in range(units)}
    assert rows.first.locator("[data-testid=nd-top-images] canvas").count() == 3
    page.wait_for_timeout(300)  # let uPlot finish its first paint
    view.screenshot(path=os.path.join(artifacts_dir, "netdissect.png"))
    if os.environ.get("DEEPVID_DOCS_SCREENSHOTS") == "1":
        view.screenshot(path=DOCS_IMG)

    # another layer and epoch: a click on its chart
    charts.nth(1).click()
    frame.locator("[data-testid=nd-detail][data-loaded=true][data-layer='2']").wait_for()
    assert detail.locator("[data-testid=nd-unit-row]").count() == 12
    assert not page.dv_errors, page.dv_errors


def test_a_run_with_only_dissection(page, html):
    frame = _show_in_sandbox(page, html)
    frame.locator("[data-testid=run-select]").wait_for()
    _view, detail = _open(frame, "dissection-only")
    assert detail.locator("[data-testid=nd-unit-row]").count() == 8
    assert not page.dv_errors, page.dv_errors


def test_netdissect_page_in_tensorboard(tensorboard_server, records, tmp_path, page):
    """The same page in TensorBoard, over a real logdir read by TensorBoard's data provider."""
    from deepvid_plugin.tensorboard.summary import TensorBoardSink
    from tests.e2e.fixtures_tensorboard import wait_for_json

    with TensorBoardSink(str(tmp_path / "dissected")) as sink:
        for rec in records:
            sink.write(rec, rec.step)
    base_url = tensorboard_server(tmp_path, load_fast="false")
    wait_for_json(base_url + "/data/plugin/deepvid/kinds?run=dissected",
                  lambda b: [(k["kind"], k["steps"]) for k in b["kinds"]]
                  == [("netdissect", len(EPOCHS))])
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto(base_url + "/#deepvid")
    frame = page.frame_locator("iframe[src*='plugin_entry.html?name=deepvid']")
    view, detail = _open(frame)
    assert view.locator("[data-testid=nd-detectors-chart]").count() == len(LAYERS)
    assert detail.locator("[data-testid=nd-heatmap]").count() == 1
    assert detail.locator("[data-testid=nd-unit-row]").count() == 8
    # The shell starts on a kind the run holds, so nothing it or the page asks for is missing.
    assert not page.dv_errors, page.dv_errors
    assert not missing, missing
