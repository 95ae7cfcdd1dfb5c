"""Defects found in review, each shown in headless Chromium on the
self-contained viewer, whose frontend is the same bundle the TensorBoard tab and the MLflow app
load."""

from __future__ import annotations

import pytest

from deepvid_plugin import api
from deepvid_plugin.api import MemoryStore
from deepvid_plugin.api.viewer import standalone_html
from deepvid_plugin.core.record import RecordDecodeError
from tests.e2e.test_viewer_browser import _show_in_sandbox
from tests.factories import make_record, make_run

pytestmark = [
    pytest.mark.timeout(180),
    # compare_impl reports these on purpose; the tests check how the page words them
    pytest.mark.filterwarnings("ignore:.*(corrupt and was skipped|different class names)"
                               ":UserWarning"),
]

STEPS = range(4)
LOW_TRUST_STEP = 2  # the only low-trust step of run A
UNREADABLE_STEP = 1  # run B's record of instance "a" at this step cannot be read


class _OneUnreadable(MemoryStore):
    """A store whose record of ("r2", "a", UNREADABLE_STEP) is corrupt, as a damaged file is."""

    def record(self, run, instance, step, *, kind):
        if (run, instance, step) == ("r2", "a", UNREADABLE_STEP):
            raise RecordDecodeError("CRC mismatch")
        return super().record(run, instance, step, kind=kind)


def test_compare_strip_places_marks_and_clicks_by_step_after_a_skipped_step(page):
    store = _OneUnreadable({
        "r1": [make_record("a", s, trustworthy=s != LOW_TRUST_STEP) for s in STEPS],
        "r2": [make_record("a", s, seed=1, trustworthy=True) for s in STEPS],
    })
    snap = api.snapshot(store)
    cmp = snap["compare?instance=a&kind=deepvid&runs=r1%2Cr2"]
    # The premise: the compare answer has every step, but no maps for the unreadable one.
    assert cmp["steps"] == list(STEPS)
    assert [m["step"] for m in cmp["maps"]] == [s for s in STEPS if s != UNREADABLE_STEP]

    frame = _show_in_sandbox(page, standalone_html(snap, view="compare"))
    strip = frame.locator("[data-testid=compare-strip]")
    strip.locator(".strip-col[data-step]").first.wait_for()
    cols = strip.locator(".strip-col[data-step]")
    assert cols.count() == len(cmp["maps"])
    # Run A's low-trust mark sits on the low-trust step's column, and on no other.
    low = strip.locator(".strip-col[data-step]:has(.strip-cell.lowfi)")
    assert low.count() == 1
    assert low.first.get_attribute("data-step") == str(LOW_TRUST_STEP)

    # A click on a column shows that column's step.
    strip.locator(f".strip-col[data-step='{LOW_TRUST_STEP}']").click()
    out = frame.locator(".slider-row .step-out")
    assert out.inner_text().split()[0] == str(LOW_TRUST_STEP)
    assert frame.locator("[data-testid=compare-step-slider]").input_value() == str(
        list(STEPS).index(LOW_TRUST_STEP))
    assert strip.locator(".strip-col.selected").get_attribute("data-step") == str(LOW_TRUST_STEP)
    assert "low trust" in frame.locator("[data-testid=compare-map-a]").inner_text()
    frame.locator("[data-testid=compare-map-b] canvas").wait_for()

    # The step without maps says so instead of showing nothing.
    frame.locator("[data-testid=compare-step-slider]").fill(str(list(STEPS).index(UNREADABLE_STEP)))
    assert "could not be read" in frame.locator("[data-testid=compare-no-maps]").inner_text()
    assert frame.locator("[data-testid=diff-map]").count() == 0
    # The skipped record is counted as one that could not be shown.
    assert "1 record could not be shown" in frame.locator("[data-testid=warnings] summary").inner_text()
    assert not page.dv_errors, page.dv_errors


def test_two_viewers_on_one_page_do_not_cancel_each_others_detail(page):
    snap = api.snapshot(MemoryStore({"r1": make_run(("a", "b"), range(3))}))
    page.set_content(standalone_html(snap))
    page.evaluate("""() => {
        const second = document.createElement('div');
        second.id = 'second';
        document.body.appendChild(second);
        for (const el of [document.getElementById('deepvid'), second]) {
            el.style.cssText = 'height:440px;overflow:auto';
        }
        DeepVID.mount(second, {snapshot: window.__DEEPVID_SNAPSHOT__});
    }""")
    apps = page.locator("[data-testid=deepvid-app]")
    for i in range(2):
        apps.nth(i).locator("[data-testid=overview-cell]").first.wait_for()
    # Open a detail panel in both viewers before either answer arrives.
    page.evaluate("""() => {
        for (const app of document.querySelectorAll('[data-testid=deepvid-app]')) {
            app.querySelector('[data-testid=overview-cell]').click();
        }
    }""")
    for i in range(2):
        apps.nth(i).locator("[data-testid=detail-panel][data-loaded=true]").wait_for(timeout=10_000)
    assert apps.nth(0).locator("[data-testid=detail-panel] .loading").count() == 0
    assert not page.dv_errors, page.dv_errors


def test_warnings_banner_words_a_class_name_mismatch_as_a_warning(page):
    store = MemoryStore({
        "r1": make_run(("a",), range(2), n_classes=3, class_names=["cat", "dog", "fox"]),
        "r2": make_run(("a",), range(2), n_classes=3, class_names=["x", "y", "z"], seed=1),
    })
    frame = _show_in_sandbox(page, standalone_html(api.snapshot(store), view="compare"))
    frame.locator("[data-testid=compare-map-b] canvas").wait_for()
    banner = frame.locator("[data-testid=warnings]")
    assert "different class names" in banner.inner_text()
    summary = banner.locator("summary").inner_text()
    assert summary.strip() == "⚠ 1 warning"
    assert "could not be shown" not in summary


def test_compare_view_with_one_run_opens_the_timeline(page):
    snap = api.snapshot(MemoryStore({"only": make_run(("a", "b"), range(3))}))
    frame = _show_in_sandbox(page, standalone_html(snap, view="compare"))
    frame.locator("[data-testid=overview-cell]").first.wait_for(timeout=10_000)
    assert frame.locator("[data-testid=overview-cell]").count() == 2 * 3
    assert frame.locator("[data-testid=tab-overview]").get_attribute("aria-selected") == "true"
    assert frame.locator("[data-testid=empty-state]").count() == 0
    # Asking for the comparison explicitly still explains why there is none.
    frame.locator("[data-testid=tab-compare]").click()
    assert "Comparing needs two runs" in frame.locator("[data-testid=empty-state]").inner_text()
    assert not page.dv_errors, page.dv_errors
