"""The DeepVID tab end to end: a real ``tensorboard`` subprocess and headless Chromium.

The logdir holds two short runs (3 instances x 4 steps, 5 classes), written with the public
``write_record``. One run name, one instance id and one class name are hostile markup: the page
must show them as text and never execute them (each would set ``window.__pwned``). Instance
``test-1`` carries faithfulness evidence (its map is no better than random at step 2), the others
are records of an older version without it.

Screenshots land in test-artifacts/ (``artifacts_dir``).
"""

from __future__ import annotations

import os
import re

import pytest

from deepvid_plugin.tensorboard.summary import close_logdir, write_record
from tests.e2e.fixtures_tensorboard import wait_for_json
from tests.factories import make_record

pytestmark = pytest.mark.timeout(300)

HOSTILE_RUN = "<img src=x onerror=window.__pwned='run'>"  # no "/": it is a directory name
HOSTILE_ID = "<script>window.__pwned='instance'</script>"
HOSTILE_CLASS = "<script>window.__pwned='class'</script>"
CLASSES = ["zero", "one", "two", "three", HOSTILE_CLASS]
IDS = ["test-1", "test-2", HOSTILE_ID]
STEPS = range(4)
WITH_EVIDENCE = "test-1"
NOT_BETTER_STEP = 2  # test-1's map is no better than a random map at this step
RUNS = {"cnn-a": 0, HOSTILE_RUN: 1}  # run name -> factory seed

# TensorBoard shows every dynamic plugin in an iframe it creates for it.
FRAME = "iframe[src*='plugin_entry.html?name=deepvid']"


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb-browser")
    for run, seed in RUNS.items():
        path = root / run
        for step in STEPS:
            for iid in IDS:
                evidence = iid == WITH_EVIDENCE
                write_record(path, make_record(
                    iid, step, n_classes=len(CLASSES), seed=seed, class_names=CLASSES,
                    evidence=evidence, trustworthy=True if evidence else None,
                    better_than_random=step != NOT_BETTER_STEP if evidence else None), step)
        close_logdir(path)
    return root


def _open(page, base_url):
    # TensorBoard loads the logdir in the background: wait until the API has every run and step,
    # so the page shows the whole logdir on its first load.
    wait_for_json(base_url + "/data/plugin/deepvid/runs",
                  lambda b: sorted((r["run"], r["steps"]) for r in b["runs"])
                  == sorted((run, len(STEPS)) for run in RUNS))
    page.goto(base_url + "/#deepvid")
    frame = page.frame_locator(FRAME)
    frame.locator("[data-testid=run-select]").wait_for()
    return frame


def _not_pwned(page):
    for fr in page.frames:
        assert fr.evaluate("window.__pwned === undefined"), f"markup was executed in {fr.url}"


def test_deepvid_tab_overview_detail_and_compare(tensorboard_server, logdir, page, artifacts_dir):
    base_url = tensorboard_server(logdir, load_fast="false")
    frame = _open(page, base_url)

    # The tab is listed in TensorBoard's own header, with the plugin's tab name.
    tab = page.locator("[data-plugin-id=deepvid]")
    assert tab.count() >= 1 and tab.first.inner_text().strip().lower() == "deepvid"

    # Overview of the selected run: instances x steps cells, one row per instance.
    select = frame.locator("[data-testid=run-select]")
    select.select_option("cnn-a")
    cells = frame.locator("[data-testid=overview-cell]")
    cells.first.wait_for()
    assert frame.locator("[data-testid=instance-row]").count() == len(IDS)
    assert cells.count() == len(IDS) * len(STEPS)
    assert frame.locator("[data-testid=overview-grid] .step-head").all_inner_texts() == [
        str(s) for s in STEPS]
    # Cells are painted lazily; the visible ones carry their weight map canvas.
    frame.locator("[data-testid=overview-cell] canvas").first.wait_for()
    # Every low-fidelity summary is flagged in its cell, and only those.
    flags = cells.evaluate_all("cs => cs.map(c => [c.dataset.trustworthy, c.classList.contains('lowfi')])")
    assert flags and all((t == "false") == low for t, low in flags)
    # A map no better than random is marked too, and its tooltip says why.
    bad = frame.locator(f"[data-testid=overview-cell][data-instance='{WITH_EVIDENCE}']"
                        f"[data-step='{NOT_BETTER_STEP}']")
    assert bad.get_attribute("data-low-trust") == "true" and "lowfi" in bad.get_attribute("class")
    assert "random map" in bad.locator(".mark-lowfi").get_attribute("aria-label")
    bad.hover()
    assert "no better than a random map" in bad.get_attribute("title")
    good = frame.locator(f"[data-testid=overview-cell][data-instance='{WITH_EVIDENCE}'][data-step='1']")
    good.hover()
    assert good.get_attribute("data-low-trust") == "false" and "deletion AUC" in good.get_attribute("title")
    # The legend explains the low-fidelity mark.
    assert "don't trust this explanation" in frame.locator("[data-testid=legend]").inner_text()
    # Per-instance charts and the step slider.
    assert frame.locator("[data-testid=fidelity-chart] canvas").count() >= 1
    assert frame.locator("[data-testid=prob-chart] canvas").count() >= 1
    # test-1's deletion AUC over steps, next to a random map's (dashed)
    frame.locator(f"[data-testid=instance-row][data-instance='{WITH_EVIDENCE}'] "
                  "[data-testid=instance-row-head]").click()
    faith = frame.locator("[data-testid=faithfulness-chart]")
    assert faith.locator("canvas").count() >= 1
    assert "random map" in faith.inner_text() and "this map" in faith.inner_text()
    page.screenshot(path=os.path.join(artifacts_dir, "tensorboard_overview.png"))

    # Hostile names appear as text, verbatim.
    row_ids = frame.locator("[data-testid=instance-row] .inst-id").all_inner_texts()
    assert HOSTILE_ID in row_ids
    assert HOSTILE_RUN in " ".join(select.locator("option").all_inner_texts())

    # Keyboard: the slider steps with the arrow keys and the overview follows.
    slider = frame.locator("[data-testid=step-slider]")
    slider.focus()
    before = frame.locator("[data-testid=overview-cell].selected").get_attribute("data-step")
    slider.press("ArrowLeft")
    after = frame.locator("[data-testid=overview-cell].selected").get_attribute("data-step")
    assert int(after) == int(before) - 1

    # Clicking a cell opens the detail panel with every class's map.
    target = frame.locator(f"[data-testid=overview-cell][data-instance='{WITH_EVIDENCE}'][data-step='1']")
    instance = target.get_attribute("data-instance")
    target.click()
    panel = frame.locator("[data-testid=detail-panel][data-loaded=true]")
    panel.wait_for()
    assert panel.get_attribute("data-instance") == instance
    assert panel.get_attribute("data-step") == "1"
    maps = panel.locator("[data-testid=class-map]")
    assert maps.count() == len(CLASSES)
    assert maps.locator("canvas").count() == len(CLASSES)
    # (the per-class grids are folded: their text is there, escaped, if not on screen)
    assert HOSTILE_CLASS in panel.locator("[data-testid=class-map] .cm-name").all_text_contents()
    assert panel.locator("[data-testid=neighbour]").count() > 0
    assert panel.locator("[data-testid=settings] th").count() > 0
    # Where the model looks: weight and contribution (weight x input), with a key saying which
    # is which, and a contribution map per class.
    assert instance == WITH_EVIDENCE
    focus = panel.locator("[data-testid=focus-maps]")
    assert focus.locator("[data-testid=focus-weight] canvas").count() == 1
    assert focus.locator("[data-testid=focus-contribution] canvas").count() == 1
    key = focus.locator("[data-testid=map-legend]").inner_text()
    assert "weight" in key and "contribution = weight × input" in key
    assert panel.locator("[data-testid=contribution-map] canvas").count() == len(CLASSES)
    # Faithfulness evidence: both AUCs next to the random map's, the verdict and the curves.
    evidence = panel.locator("[data-testid=evidence]")
    rec = make_record(WITH_EVIDENCE, 1, n_classes=len(CLASSES), seed=RUNS["cnn-a"],
                      class_names=CLASSES, evidence=True, trustworthy=True, better_than_random=True)
    row = evidence.locator("[data-testid=evidence-deletion]").inner_text()
    assert f"{rec.fidelity['deletion_auc']:.3f}" in row
    assert f"{rec.fidelity['random_deletion_auc']:.3f}" in row
    assert "Better than a random map" in evidence.locator("[data-testid=evidence-verdict]").inner_text()
    assert evidence.locator("[data-testid=evidence-curves] canvas").count() >= 1
    page.screenshot(path=os.path.join(artifacts_dir, "tensorboard_detail_page.png"))
    page.set_viewport_size({"width": 1440, "height": 1700})  # the side panel scrolls on its own
    panel.screenshot(path=os.path.join(artifacts_dir, "tensorboard_detail.png"))
    page.set_viewport_size({"width": 1440, "height": 900})

    # The step whose map is no better than random says why, in words.
    bad.click()
    panel = frame.locator(f"[data-testid=detail-panel][data-loaded=true][data-step='{NOT_BETTER_STEP}']")
    panel.wait_for()
    assert "no better than a random map" in panel.locator("[data-testid=trust-reason]").inner_text()
    assert "No better than a random map" in panel.locator("[data-testid=evidence-verdict]").inner_text()
    # A record of an older version: no evidence, said plainly, and nothing breaks.
    frame.locator("[data-testid=overview-cell][data-instance='test-2'][data-step='1']").click()
    panel = frame.locator("[data-testid=detail-panel][data-loaded=true][data-instance='test-2']")
    panel.wait_for()
    assert "recorded by an older version" in panel.locator("[data-testid=no-evidence]").inner_text()
    assert panel.locator("[data-testid=focus-contribution] canvas").count() == 1
    assert "recorded by an older version" in frame.locator("[data-testid=no-evidence-chart]").inner_text()

    # Compare the two runs: side by side maps and a difference map.
    frame.locator("[data-testid=tab-compare]").click()
    view = frame.locator("[data-testid=compare-view]")
    view.wait_for()
    frame.locator("[data-testid=compare-run-a]").select_option("cnn-a")
    frame.locator("[data-testid=compare-run-b]").select_option(HOSTILE_RUN)
    frame.locator("[data-testid=compare-instance]").select_option(HOSTILE_ID)
    # The picker's default is each run's own prediction (no difference map where the runs
    # predict different classes); A's prediction gives both runs' maps of one class, and B - A.
    assert frame.locator("[data-testid=compare-class]").input_value() == "own"
    view.locator("[data-testid=compare-map-b] canvas").wait_for()
    frame.locator("[data-testid=compare-class]").select_option("a")
    diff = view.locator("[data-testid=diff-map] canvas")
    diff.wait_for()
    # the label names the class each side shows: A's is its own prediction in this mode
    assert re.match(r"A: map of \S+ \(its prediction", view.locator("[data-testid=compare-classes]").inner_text())
    assert view.locator("[data-testid=compare-map-a] canvas").count() == 1
    assert view.locator("[data-testid=compare-map-b] canvas").count() == 1
    # one strip column per common step, plus the header column
    assert view.locator("[data-testid=compare-strip] .strip-col").count() == len(STEPS) + 1
    # The diff map is drawn: its pixels are not all one colour.
    colours = diff.evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " const s = new Set(); for (let i = 0; i < d.length; i += 4) s.add(d[i] + ',' + d[i+1] + ',' + d[i+2]);"
        " return s.size; }")
    assert colours > 10
    page.screenshot(path=os.path.join(artifacts_dir, "tensorboard_compare.png"), full_page=True)

    _not_pwned(page)
    assert not [e for e in page.dv_errors if "deepvid" in e.lower() or "pageerror" in e], page.dv_errors


def test_empty_logdir_says_no_data_yet(tensorboard_server, tmp_path, page, artifacts_dir):
    base_url = tensorboard_server(tmp_path, load_fast="false")
    page.goto(base_url + "/#deepvid")
    # With no data TensorBoard may list the plugin as inactive; the tab's page still explains it.
    frame = page.frame_locator(FRAME)
    empty = frame.locator("[data-testid=empty-state]")
    empty.wait_for()
    assert re.search(r"no deepvid data yet", empty.inner_text(), re.I)
    page.screenshot(path=os.path.join(artifacts_dir, "tensorboard_empty.png"))
