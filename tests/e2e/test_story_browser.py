"""The UI tells the story at a glance (issue 21), in headless Chromium against real servers:

- the detail panel opens beside the grid and the clicked cell stays visible, in TensorBoard's tab
  at 1500x1000 and in MLflow's 946-px artifact frame (the saved viewer in a sandboxed iframe);
- a link with ``step`` and ``panel`` reopens both; a step the instance lacks is named;
- the run's metric is drawn above the grid on the grid's steps;
- compare switches kind, names what it shows, and draws Grad-CAM on a one-sided scale;
- small maps are pixel-crisp, and the grid's marks sit outside the maps.

Runs are built from the test factories (no training), long enough (14 steps) that the clicked
cell of the last step would be under the panel if nothing moved it.
"""

from __future__ import annotations

import os
import urllib.parse

import pytest

from deepvid_plugin import api
from deepvid_plugin.api import MemoryStore, MetricSeries
from deepvid_plugin.api.viewer import standalone_html
from deepvid_plugin.tensorboard import TensorBoardSink
from tests.factories import make_gradcam_record, make_record

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

IDS = tuple(f"i{k}" for k in range(6))
STEPS = range(14)
ACCURACY = {"clean": [0.5 + 0.035 * s for s in STEPS], "shortcut": [0.3 + 0.01 * s for s in STEPS]}
FRAME = "iframe[src*='plugin_entry.html?name=deepvid']"


def _records(seed: int):
    out = []
    for step in STEPS:
        for i in IDS:
            out.append(make_record(i, step, n_classes=4, seed=seed, evidence=True))
            out.append(make_gradcam_record(i, step, n_classes=4, seed=seed))
    return out


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("story")
    for seed, run in enumerate(("clean", "shortcut")):
        with TensorBoardSink(root / run) as sink:
            for rec in _records(seed):
                sink.write(rec, rec.step)
            for step in STEPS:
                sink.log_metrics({"test_accuracy": ACCURACY[run][step], "train_loss": 1.0 / (step + 1)},
                                 step)
    return root


@pytest.fixture(scope="module")
def viewer_html():
    store = MemoryStore({"clean": _records(0)}, metrics={"clean": [
        MetricSeries("test_accuracy", list(STEPS), ACCURACY["clean"])]})
    return standalone_html(api.snapshot(store), title="DeepVID: clean")


@pytest.fixture
def big_page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.dv_errors = errors
    pg.set_default_timeout(30_000)
    try:
        yield pg
    finally:
        context.close()


def _visible_beside_drawer(frame_el, cell_selector: str) -> dict:
    """Whether the cell is inside its frame's window, and is what is drawn at its centre (not the
    drawer, not the frame's edge)."""
    return frame_el.evaluate("""sel => {
        const c = document.querySelector(sel);
        const r = c.getBoundingClientRect();
        const x = (r.left + r.right) / 2, y = (r.top + r.bottom) / 2;
        const hit = document.elementFromPoint(x, y);
        const d = document.querySelector('[data-testid=detail-drawer]').getBoundingClientRect();
        return {inside: r.left >= 0 && r.right <= innerWidth && r.top >= 0 && r.bottom <= innerHeight,
                top: !!hit && c.contains(hit), drawerLeft: d.left, cellRight: r.right, width: innerWidth};
    }""", cell_selector)


def _open_last_cell(frame, iid="i3"):
    cell = f"[data-testid=overview-cell][data-instance={iid}][data-step='{STEPS[-1]}']"
    frame.locator(cell).click()
    frame.locator("[data-testid=detail-panel][data-loaded=true]").wait_for()
    return cell


def test_detail_keeps_the_cell_in_view_in_tensorboard(tensorboard_server, big_page, logdir,
                                                       artifacts_dir):
    base = tensorboard_server(logdir)
    big_page.goto(f"{base}/?deepvid_run=shortcut#deepvid")
    frame = big_page.frame_locator(FRAME)
    frame.locator("[data-testid=overview-cell] canvas").first.wait_for()
    cell = _open_last_cell(frame)
    big_page.wait_for_timeout(400)  # the drawer slides in
    el = big_page.frame(url=lambda u: "plugin_entry.html?name=deepvid" in u)
    got = _visible_beside_drawer(el, cell)
    assert got["inside"] and got["top"], got
    assert got["cellRight"] <= got["drawerLeft"], got
    # the panel fits the window: its sections fold, the drawer scrolls inside itself
    drawer = frame.locator("[data-testid=detail-drawer]")
    box = drawer.bounding_box()
    assert box["height"] <= 1000 and box["x"] > 700
    sections = frame.locator("[data-testid=detail-section]")
    assert sections.count() >= 4
    assert [sections.nth(i).evaluate("d => d.open") for i in range(3)] == [True, True, False]
    big_page.screenshot(path=os.path.join(artifacts_dir, "story_detail_1500.png"))
    # closing it leaves the cell selected; Escape closes too
    frame.locator("[data-testid=detail-close]").click()
    assert frame.locator("[data-testid=detail-drawer]").get_attribute("aria-hidden") == "true"
    assert frame.locator(cell).get_attribute("class").count("selected") == 1
    assert not big_page.dv_errors, big_page.dv_errors


def test_detail_keeps_the_cell_in_view_in_mlflows_artifact_frame(page, viewer_html, artifacts_dir):
    # MLflow shows an .html artifact in a sandboxed iframe 946 px wide
    page.set_viewport_size({"width": 1200, "height": 900})
    page.set_content("<!doctype html><body style='margin:0'></body>")
    page.evaluate("""html => {
        const url = URL.createObjectURL(new Blob([html], {type: 'text/html'}));
        const f = document.createElement('iframe');
        f.setAttribute('sandbox', 'allow-scripts');
        f.style.cssText = 'border:0;width:946px;height:800px';
        f.src = url;
        document.body.appendChild(f);
    }""", viewer_html)
    frame = page.frame_locator("iframe")
    frame.locator("[data-testid=overview-cell] canvas").first.wait_for()
    # the grid runs on under where the drawer will be: without moving, the cell would be hidden
    width = frame.locator("[data-testid=grid-scroll]").evaluate("s => s.scrollWidth")
    assert width > 946
    cell = _open_last_cell(frame)
    page.wait_for_timeout(400)
    inner = next(f for f in page.frames if f != page.main_frame)
    got = _visible_beside_drawer(inner, cell)
    assert got["width"] == 946 and got["inside"] and got["top"], got
    assert got["cellRight"] <= got["drawerLeft"], got
    # the legend stays readable: no line is squeezed to a word per line
    lines = frame.locator("[data-testid=legend] .lg-item").evaluate_all(
        "els => els.map(e => e.getBoundingClientRect().height)")
    assert max(lines) < 60, lines
    page.screenshot(path=os.path.join(artifacts_dir, "story_detail_946.png"))


def test_a_link_with_step_and_panel_restores_both(tensorboard_server, page, logdir):
    base = tensorboard_server(logdir)
    q = urllib.parse.urlencode({"deepvid_run": "clean", "deepvid_instance": "i2", "deepvid_step": 5,
                                "deepvid_panel": "gradcam"})
    page.goto(f"{base}/?{q}#deepvid")
    frame = page.frame_locator(FRAME)
    panel = frame.locator("[data-testid=detail-panel][data-loaded=true]")
    panel.wait_for()
    assert (panel.get_attribute("data-instance"), panel.get_attribute("data-step"),
            panel.get_attribute("data-kind")) == ("i2", "5", "gradcam")
    selected = frame.locator("[data-testid=overview-cell].selected")
    assert (selected.get_attribute("data-instance"), selected.get_attribute("data-step")) == ("i2", "5")
    assert frame.locator("[data-testid=step-value]").inner_text().startswith("5")
    # the address follows the panel's tab and a step move
    frame.locator("[data-testid=detail-tab-deepvid]").click()
    frame.locator("[data-testid=detail-panel][data-kind=deepvid][data-loaded=true]").wait_for()
    frame.locator("[data-testid=grid-scroll]").press("ArrowRight")
    frame.locator("[data-testid=detail-panel][data-step='6']").wait_for()
    got = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    assert got["deepvid_step"] == ["6"] and got["deepvid_panel"] == ["deepvid"]
    assert got["deepvid_instance"] == ["i2"]

    # a step the instance does not have: the last one, and the banner says why
    page.goto(f"{base}/?deepvid_run=clean&deepvid_instance=i2&deepvid_step=999#deepvid")
    frame = page.frame_locator(FRAME)
    warning = frame.locator("[data-testid=warnings]")
    warning.wait_for()
    assert "deepvid_step=“999”" in warning.inner_text() and "no step 999" in warning.inner_text()
    selected = frame.locator("[data-testid=overview-cell].selected")
    selected.wait_for()
    assert selected.get_attribute("data-step") == str(STEPS[-1])


def test_metric_strip_sits_on_the_grids_steps(tensorboard_server, page, logdir):
    base = tensorboard_server(logdir, load_fast="true")
    page.goto(f"{base}/?deepvid_run=shortcut#deepvid")
    frame = page.frame_locator(FRAME)
    strip = frame.locator("[data-testid=metric-strip][data-metric=test_accuracy]")
    strip.wait_for()
    # test accuracy is chosen over the loss; the other metric is one pick away
    assert frame.locator("[data-testid=metric-select] option").all_inner_texts() == [
        "test_accuracy", "train_loss"]
    readout = frame.locator("[data-testid=metric-readout]")
    # the selected step is the last: the head reads the accuracy there
    assert readout.inner_text().startswith(f"{ACCURACY['shortcut'][-1]:.4g}")
    # hovering the strip over a column reads that step out
    plot = frame.locator(".metric-plot .u-over")
    head = frame.locator(f"[data-testid=overview-grid] .step-head[data-step='{STEPS[3]}']").bounding_box()
    over = plot.bounding_box()
    page.mouse.move(head["x"] + head["width"] / 2, over["y"] + over["height"] / 2)
    page.wait_for_timeout(200)
    assert readout.inner_text() == f"{ACCURACY['shortcut'][3]:.4g} at step {STEPS[3]}"
    frame.locator("[data-testid=metric-select]").select_option("train_loss")
    frame.locator("[data-testid=metric-strip][data-metric=train_loss]").wait_for()
    assert "deepvid_metric=train_loss" in page.url


def test_compare_switches_kind_and_draws_gradcam_one_sided(tensorboard_server, page, logdir,
                                                          artifacts_dir):
    base = tensorboard_server(logdir)
    page.goto(f"{base}/?deepvid_view=compare&deepvid_instance=i1#deepvid")
    frame = page.frame_locator(FRAME)
    # no link runs: the two oldest runs, clean (A) against shortcut (B); no global run picker
    frame.locator("[data-testid=compare-map-a]").wait_for()
    assert frame.locator("[data-testid=compare-run-a]").input_value() == "clean"
    assert frame.locator("[data-testid=compare-run-b]").input_value() == "shortcut"
    assert frame.locator("[data-testid=run-select]").count() == 0
    assert frame.locator("[data-testid=compare-title]").inner_text().startswith("DeepVID map")
    assert frame.locator("[data-testid=compare-map-a] [data-testid=colorbar]").get_attribute(
        "data-sign") == "signed"
    frame.locator("[data-testid=compare-kind-gradcam]").click()
    title = frame.locator("[data-testid=compare-title][data-kind=gradcam]")
    title.wait_for()
    assert title.inner_text().startswith("Grad-CAM map") and f"at step {STEPS[-1]}" in title.inner_text()
    for side in ("a", "b"):
        bar = frame.locator(f"[data-testid=compare-map-{side}] [data-testid=colorbar]")
        assert bar.get_attribute("data-sign") == "positive"
        assert bar.locator(".cb-tick").first.inner_text() == "0"  # no "-max" for a map that is never negative
        assert frame.locator(f"[data-testid=compare-map-{side}] canvas").get_attribute("data-sign") == "positive"
    # the charts are the kind's: its headline (deletion AUC), not DeepVID's fidelity
    assert "deletion AUC" in frame.locator("[data-testid=compare-headline]").inner_text()
    assert frame.locator("[data-testid=compare-metric]").inner_text().count("test_accuracy") >= 1
    assert "deepvid_kind=gradcam" in page.url
    page.screenshot(path=os.path.join(artifacts_dir, "story_compare_gradcam.png"))


def test_small_maps_are_crisp_and_marks_sit_outside_them(tensorboard_server, page, logdir):
    base = tensorboard_server(logdir)
    page.goto(f"{base}/?deepvid_run=clean#deepvid")
    frame = page.frame_locator(FRAME)
    frame.locator("[data-testid=overview-cell] canvas").first.wait_for()
    # 28-px inputs: nearest neighbour, every map pixel a square
    assert frame.locator("[data-testid=overview-cell] canvas").first.get_attribute("data-crisp") == "true"
    marks = frame.locator("[data-testid=mark-changed], [data-testid=mark-lowfi]")
    assert marks.count() > 0
    inside_map = marks.evaluate_all("els => els.filter(e => e.closest('.cell-art')).length")
    assert inside_map == 0
    # DeepVID's cells show contributions by default; weights are one pick away
    picker = frame.locator("[data-testid=map-select]")
    assert picker.input_value() == "thumb_contribution"
    assert "contribution" in frame.locator("[data-testid=legend-scale]").inner_text()
    picker.select_option("thumb")
    frame.locator("[data-testid=legend-scale]", has_text="weight of the predicted class").wait_for()
    # Grad-CAM's legend: a one-sided scale, no "against", and no student in its low-trust line
    frame.locator("[data-testid=kind-gradcam]").click()
    legend = frame.locator("[data-testid=legend][data-kind=gradcam]")
    legend.wait_for()
    assert "against" not in legend.inner_text() and "student" not in legend.inner_text()
    assert legend.locator("[data-testid=legend-scale]").get_attribute("data-sign") == "positive"
