"""Compare's class picker in headless Chromium, on the self-contained viewer (the same bundle the
TensorBoard tab and the MLflow app load): by default each run shows its map of its OWN
prediction, the labels say which class each side shows, B - A is left out (and why) where the
runs predict different classes, and a class the snapshot does not carry says so."""

from __future__ import annotations

import os

import pytest

from deepvid_plugin import api
from deepvid_plugin.api import MemoryStore
from deepvid_plugin.api.viewer import standalone_html
from tests.api.test_compare_class import LABEL, _predicting
from tests.e2e.test_viewer_browser import _show_in_sandbox
from tests.factories import make_record

pytestmark = pytest.mark.timeout(180)
NAMES = [f"digit {k}" for k in range(10)]


@pytest.fixture
def snap():
    # run A predicts the label (6) throughout; run B predicts 6 at step 0, then 8 (a shortcut)
    a = [_predicting(make_record("x", s, label=LABEL, class_names=NAMES), LABEL) for s in range(3)]
    b = [_predicting(make_record("x", s, label=LABEL, seed=1, class_names=NAMES),
                     LABEL if s == 0 else 8) for s in range(3)]
    return api.snapshot(MemoryStore({"A": a, "B": b}), pairs=[("A", "B")])


def test_picker_defaults_to_each_runs_own_prediction(page, snap, artifacts_dir):
    frame = _show_in_sandbox(page, standalone_html(snap, view="compare"))
    picker = frame.locator("[data-testid=compare-class]")
    frame.locator("[data-testid=compare-map-b] canvas").wait_for()
    assert picker.input_value() == "own"
    # the last step: A maps 6, B maps 8, and no difference of two classes' maps
    classes = frame.locator("[data-testid=compare-classes]")
    assert classes.inner_text().startswith(
        "A: map of digit 6 (its prediction, the true label) · B: map of digit 8 (its prediction)")
    assert frame.locator("[data-testid=diff-map]").count() == 0
    assert "a difference of two classes' maps means nothing" in frame.locator(
        "[data-testid=diff-none]").inner_text()
    strip = frame.locator("[data-testid=compare-strip]")
    assert strip.locator(".strip-nodiff").count() == 2  # steps 1 and 2; step 0 agrees
    page.screenshot(path=os.path.join(artifacts_dir, "compare_class_own.png"), full_page=True)

    # step 0: both predict 6, so B - A is drawn
    strip.locator(".strip-col[data-step='0']").click()
    frame.locator("[data-testid=diff-map] canvas").wait_for()
    assert "B: map of digit 6 (its prediction" in classes.inner_text()

    # A's prediction (the API default, in the snapshot): B's map of 6 at every step
    picker.select_option("a")
    frame.locator("[data-testid=compare-strip] .strip-col[data-step='2']").click()
    frame.locator("[data-testid=diff-map] canvas").wait_for()
    assert "B: map of digit 6 (A's prediction, the true label)" in classes.inner_text()

    # every class is offered by name; one the snapshot lacks is said to be missing, gracefully
    assert picker.locator("option[value='8']").inner_text() == "8: digit 8"
    picker.select_option("label")
    missing = frame.locator("[data-testid=compare-not-in-snapshot]")
    missing.wait_for()
    assert "Not in this saved viewer" in missing.inner_text() and "True label" in missing.inner_text()
    assert frame.locator("[data-testid=error-state]").count() == 0
    assert not page.dv_errors, page.dv_errors
