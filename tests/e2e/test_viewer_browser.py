"""The self-contained viewer.html in headless Chromium, the way MLflow shows it.

MLflow renders an .html artifact in ``<iframe sandbox="allow-scripts">`` from a ``blob:`` URL: an
opaque origin where relative URLs and network calls fail. The page is loaded exactly like that, so
everything it shows must come from the inline snapshot.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from deepvid_plugin import api
from deepvid_plugin.api import MemoryStore
from deepvid_plugin.api.viewer import standalone_html
from tests.factories import make_record, make_run

pytestmark = pytest.mark.timeout(180)

HOSTILE_RUN = "run <script>window.__pwned='run'</script>"
HOSTILE_ID = "<img src=x onerror=window.__pwned='instance'>"
CLASSES = ["zero", "one", "<script>window.__pwned='class'</script>"]
IDS = ("a", HOSTILE_ID)
STEPS = range(3)


@pytest.fixture(scope="module")
def snapshot():
    store = MemoryStore({
        "r1": make_run(IDS, STEPS, n_classes=3, class_names=CLASSES),
        HOSTILE_RUN: make_run(IDS, STEPS, n_classes=3, class_names=CLASSES, seed=1),
    })
    return api.snapshot(store)


def _show_in_sandbox(page, html: str):
    """Put ``html`` in a sandboxed iframe from a blob: URL (MLflow's artifact viewer does this)."""
    page.set_content("<!doctype html><body style='margin:0'></body>")
    page.evaluate("""html => {
        const url = URL.createObjectURL(new Blob([html], {type: 'text/html'}));
        const f = document.createElement('iframe');
        f.setAttribute('sandbox', 'allow-scripts');
        f.style.cssText = 'border:0;width:100vw;height:100vh';
        f.src = url;
        document.body.appendChild(f);
    }""", html)
    return page.frame_locator("iframe")


def _no_markup_ran(page):
    for fr in page.frames:
        assert fr.evaluate("window.__pwned === undefined"), f"markup was executed in {fr.url}"


def test_viewer_in_sandboxed_blob_iframe(page, snapshot, artifacts_dir):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    frame = _show_in_sandbox(page, standalone_html(snapshot, title="viewer test"))

    cells = frame.locator("[data-testid=overview-cell]")
    cells.first.wait_for()
    assert cells.count() == len(IDS) * len(STEPS)
    assert HOSTILE_ID in frame.locator("[data-testid=instance-row] .inst-id").all_inner_texts()
    frame.locator("[data-testid=overview-cell] canvas").first.wait_for()
    page.screenshot(path=os.path.join(artifacts_dir, "viewer_overview.png"))

    cells.last.click()
    panel = frame.locator("[data-testid=detail-panel][data-loaded=true]")
    panel.wait_for()
    assert panel.locator("[data-testid=class-map]").count() == len(CLASSES)

    frame.locator("[data-testid=tab-compare]").click()
    frame.locator("[data-testid=compare-run-b]").select_option(HOSTILE_RUN)
    frame.locator("[data-testid=compare-map-b] canvas").wait_for()
    page.screenshot(path=os.path.join(artifacts_dir, "viewer_compare.png"))

    _no_markup_ran(page)
    assert not page.dv_errors, page.dv_errors
    # Only the blob itself was loaded: the viewer asked the network for nothing.
    assert requests and all(u.startswith(("blob:", "about:", "data:")) for u in requests), requests


def test_viewer_opens_on_compare_view(page, snapshot):
    frame = _show_in_sandbox(page, standalone_html(snapshot, view="compare"))
    frame.locator("[data-testid=compare-view] [data-testid=compare-map-b] canvas").wait_for()
    assert frame.locator("[data-testid=overview-cell]").count() == 0


def test_missing_snapshot_entry_is_a_clear_error(page, snapshot, artifacts_dir):
    partial = {k: v for k, v in snapshot.items() if not k.startswith("instances?")}
    frame = _show_in_sandbox(page, standalone_html(partial))
    err = frame.locator("[data-testid=error-state]")
    err.wait_for()
    assert "does not include instances?kind=deepvid&run=r1" in err.inner_text()
    page.screenshot(path=os.path.join(artifacts_dir, "viewer_error.png"))


def test_empty_snapshot_says_no_data(page):
    frame = _show_in_sandbox(page, standalone_html({"runs": {"runs": [], "warnings": []}}))
    assert "No DeepVID data yet" in frame.locator("[data-testid=empty-state]").inner_text()


def test_run_without_instances_and_warnings_are_shown(page, snapshot):
    snap = dict(snapshot)
    snap["instances?kind=deepvid&run=r1"] = {"run": "r1", "class_names": [], "instances": [],
                                "warnings": ["skipped a: record has schema_version 99"]}
    frame = _show_in_sandbox(page, standalone_html(snap))
    empty = frame.locator("[data-testid=empty-state]")
    assert "This run has no DeepVID data" in empty.inner_text()
    assert "schema_version 99" in frame.locator("[data-testid=warnings]").inner_text()


def _mean_rgb(canvas) -> list[float]:
    return canvas.evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " const s = [0, 0, 0]; for (let i = 0; i < d.length; i += 4) { s[0] += d[i]; s[1] += d[i+1];"
        " s[2] += d[i+2]; } const n = d.length / 4; return s.map(v => v / n); }")


def test_colour_cue_the_channel_average_hides_is_shown_per_channel(page, artifacts_dir):
    # A class pushed by green and pushed away by red, equally: the channel average is exactly
    # 0 (a neutral map), and only the per-channel maps show the colour cue.
    rec = make_record("colour", 0, n_classes=3, channels=3, size=12, evidence=True)
    weights = np.zeros_like(rec.weights, dtype=np.float32)
    weights[rec.predicted, 0] = -1.0  # R: against
    weights[rec.predicted, 1] = 1.0  # G: for
    rec = dataclasses.replace(rec, weights=weights)
    frame = _show_in_sandbox(page, standalone_html(api.snapshot(MemoryStore({"r": [rec]}))))
    frame.locator("[data-testid=overview-cell]").first.click()
    panel = frame.locator("[data-testid=detail-panel][data-loaded=true]")
    panel.wait_for()
    # colour images get a section of their own, folded under the first two
    channels = panel.locator("[data-testid=detail-section][data-title='Per colour channel']")
    channels.locator("summary").click()
    row = panel.locator("[data-testid=channel-weights] [data-testid=channel-map]")
    assert row.count() == 4  # the mean of R, G, B, then R, G and B
    assert row.locator("figcaption").all_inner_texts() == ["mean of R, G, B", "R", "G", "B"]
    mean, red, green, blue = (_mean_rgb(row.nth(i).locator("canvas")) for i in range(4))
    assert min(mean) > 200 and max(mean) - min(mean) < 10  # neutral: white
    assert red[2] > red[0] + 60  # R pushes against the class: blue
    assert green[0] > green[2] + 60  # G pushes for it: red
    assert min(blue) > 200  # B: no weight
    contributions = panel.locator("[data-testid=channel-contributions] [data-testid=channel-map]")
    assert contributions.count() == 4
    assert panel.locator("[data-testid=focus-contribution] canvas").count() == 1
    page.set_viewport_size({"width": 1440, "height": 1700})
    panel.screenshot(path=os.path.join(artifacts_dir, "viewer_colour_channels.png"))
    assert not page.dv_errors, page.dv_errors
