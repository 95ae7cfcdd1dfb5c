"""DeepVID inside MLflow, in headless Chromium, against a real ``mlflow server --app-name deepvid``.

1. MLflow's OWN UI, on the run's artifact ``deepvid/viewer.html``: MLflow renders it in a
   sandboxed iframe from a ``blob:`` URL; the timeline must render in there.
2. ``/deepvid/`` (the ``mlflow.app`` entry point): pick the experiment and two runs in the live
   compare view; the difference maps must render.

Screenshots go to the ``artifacts_dir`` folder (test-artifacts/).
"""

from __future__ import annotations

import os
import time

import pytest

from tests.mlflow.runs import EVIL, STEPS, log_two_runs, record

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def runs(mlflow_app_server):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return log_two_runs(mlflow_app_server)


def _blob_frame(page, timeout_s: float = 120):
    """The frame MLflow's artifact viewer created for the .html artifact (a blob: URL)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for frame in page.frames:
            if frame.url.startswith("blob:"):
                return frame
        page.wait_for_timeout(250)
    raise AssertionError(f"MLflow did not show the artifact in a blob: iframe; frames: "
                         f"{[f.url for f in page.frames]}")


def _painted(locator) -> dict:
    """How many pixels of a canvas are painted, and in how many distinct colours."""
    return locator.evaluate("""c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0; const colours = new Set();
        for (let i = 0; i < d.length; i += 4) {
            if (d[i + 3] > 0) { painted++; colours.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]); }
        }
        return {painted, colours: colours.size, size: c.width * c.height};
    }""")


def test_viewer_artifact_renders_inside_mlflow_ui(page, mlflow_app_server, runs, artifacts_dir):
    url = (f"{mlflow_app_server.url}/#/experiments/{runs.experiment_id}/runs/{runs.a}"
           "/artifacts/deepvid/viewer.html")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    frame = _blob_frame(page)
    # the iframe is sandboxed: scripts only, no same-origin access (MLflow's own rendering)
    sandbox = page.locator("iframe").evaluate_all(
        "fs => fs.filter(f => f.src.startsWith('blob:')).map(f => f.getAttribute('sandbox'))")
    assert sandbox and all(s is not None and "allow-same-origin" not in s for s in sandbox)
    cells = frame.locator("[data-testid=overview-cell]")
    cells.first.wait_for(state="visible", timeout=60_000)
    assert cells.count() == len(runs.ids[runs.a]) * len(STEPS)
    rows = frame.locator("[data-testid=instance-row-head]")
    assert any(EVIL in t for t in rows.all_inner_texts())  # shown as text, not run
    thumb = frame.locator("[data-testid=overview-cell] canvas").first
    assert _painted(thumb)["colours"] > 5
    assert dialogs == []
    page.screenshot(path=os.path.join(artifacts_dir, "mlflow-ui-viewer-artifact.png"))


def test_live_compare_view_in_deepvid_app(page, mlflow_app_server, runs, artifacts_dir):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    started = time.perf_counter()
    page.goto(f"{mlflow_app_server.url}/deepvid/?view=compare")
    page.locator("[data-testid=deepvid-app]").wait_for()
    experiment = page.locator("[data-testid=experiment-select]")
    if experiment.input_value() != runs.experiment_id:
        experiment.select_option(runs.experiment_id)
    diff = page.locator("[data-testid=diff-map] canvas").first
    # the default pair: the two newest runs, each showing its own prediction's map
    page.locator("[data-testid=compare-map-b] canvas").first.wait_for(state="visible", timeout=60_000)
    elapsed = time.perf_counter() - started
    select_a = page.locator("[data-testid=compare-run-a]")
    select_b = page.locator("[data-testid=compare-run-b]")
    assert {select_a.input_value(), select_b.input_value()} == {runs.a, runs.b}
    if select_a.input_value() != runs.a:
        select_a.select_option(runs.a)
        page.wait_for_load_state("networkidle")
    if select_b.input_value() != runs.b:
        select_b.select_option(runs.b)
        page.wait_for_load_state("networkidle")
    page.locator("[data-testid=compare-instance]").select_option(EVIL)
    page.wait_for_load_state("networkidle")
    # A's prediction: both maps are of one class at every step, so B - A is drawn
    page.locator("[data-testid=compare-class]").select_option("a")
    diff.wait_for(state="visible", timeout=60_000)
    assert (select_a.input_value(), select_b.input_value()) == (runs.a, runs.b)
    paint = _painted(diff)
    assert paint["painted"] == paint["size"] and paint["colours"] > 5, paint
    for testid in ("compare-map-a", "compare-map-b"):
        assert _painted(page.locator(f"[data-testid={testid}] canvas").first)["colours"] > 5
    note = page.locator("[data-testid=compare-note]")
    assert "different instance sets" in note.inner_text()
    strip = page.locator("[data-testid=compare-strip] .strip-col[data-step]")
    assert strip.count() == len(STEPS)
    # the kind's own headline: DeepVID's fidelity
    assert "fidelity" in page.locator("[data-testid=compare-headline]").inner_text()
    assert page.locator("[data-testid=compare-prob]").count() == 1
    assert dialogs == []  # the <script> instance id never ran
    assert not [e for e in page.dv_errors if "pageerror" in e], page.dv_errors
    page.screenshot(path=os.path.join(artifacts_dir, "mlflow-app-compare.png"), full_page=True)
    print(f"/deepvid/ compare view rendered in {elapsed:.2f}s")


def _options(page, testid: str) -> list[str]:
    return page.locator(f"[data-testid={testid}] option").evaluate_all(
        "os => os.map(o => o.value)")


def _wait_instances(page, expected) -> None:
    """Wait until the compare view offers exactly ``expected`` instances (order aside)."""
    page.wait_for_function(
        """want => {
            const got = [...document.querySelectorAll('[data-testid=compare-instance] option')]
                .map(o => o.value).sort();
            return JSON.stringify(got) === JSON.stringify([...want].sort());
        }""", arg=sorted(expected), timeout=60_000)


@pytest.fixture(scope="module")
def three_runs(mlflow_app_server):
    """Runs P, Q and R in their own experiment: Q tracks one instance more than P, R shares only
    ``a`` with them."""
    from deepvid_plugin.mlflow.sink import MLflowSink

    client = mlflow_app_server.client()
    exp = client.create_experiment(f"deepvid-three-runs-{time.time_ns()}")
    ids = {"P": ("a", "b", EVIL), "Q": ("a", "b", EVIL, "only-q"), "R": ("a", "only-r")}
    runs = {}
    for seed, (name, instances) in enumerate(ids.items()):
        run = client.create_run(exp, run_name=f"run {name}").info.run_id
        with MLflowSink(run, client=client, viewer_every=0, log_images=False) as sink:
            for step in STEPS[:2]:
                for i in instances:
                    sink.write(record(i, step, seed), step)
        client.set_terminated(run)
        runs[name] = run
    return exp, runs, ids


def test_compare_instances_follow_both_runs(page, mlflow_app_server, three_runs, artifacts_dir):
    """Changing run A (or B) re-reads the instance list: it is exactly what both runs track, and
    the selected instance stays one of them."""
    exp, runs, ids = three_runs
    page.goto(f"{mlflow_app_server.url}/deepvid/?view=compare")
    experiment = page.locator("[data-testid=experiment-select]")
    experiment.wait_for()
    if experiment.input_value() != exp:
        experiment.select_option(exp)
    select_a = page.locator("[data-testid=compare-run-a]")
    select_b = page.locator("[data-testid=compare-run-b]")
    instance = page.locator("[data-testid=compare-instance]")
    # drawn: run B's map (B - A only where both runs show one class)
    diff = page.locator("[data-testid=compare-map-b] canvas").first
    diff.wait_for(state="visible", timeout=60_000)
    assert sorted(_options(page, "compare-run-a")) == sorted(runs.values())

    def pick(a: str, b: str) -> None:
        select_a.select_option(runs[a])
        select_b.select_option(runs[b])
        _wait_instances(page, set(ids[a]) & set(ids[b]))
        diff.wait_for(state="visible", timeout=60_000)

    pick("Q", "P")
    instance.select_option(EVIL)
    diff.wait_for(state="visible", timeout=60_000)
    assert "different instance sets" in page.locator("[data-testid=compare-note]").inner_text()

    select_a.select_option(runs["R"])  # only A changes: R and P share just "a"
    _wait_instances(page, {"a"})
    assert instance.input_value() == "a"  # the selection moved to an instance both runs track
    diff.wait_for(state="visible", timeout=60_000)
    assert "different instance sets" in page.locator("[data-testid=compare-note]").inner_text()
    assert _painted(diff)["colours"] > 5

    select_a.select_option(runs["Q"])  # back: Q and P share three again; "a" stays selected
    _wait_instances(page, {"a", "b", EVIL})
    assert instance.input_value() == "a"

    select_b.select_option(runs["R"])  # now only B changes: Q's "only-q" must not be offered
    _wait_instances(page, {"a"})
    pick("P", "Q")
    assert "only-q" not in _options(page, "compare-instance")
    assert not [e for e in page.dv_errors if "pageerror" in e], page.dv_errors
    page.screenshot(path=os.path.join(artifacts_dir, "mlflow-app-compare-run-change.png"),
                    full_page=True)


def test_saved_compare_page_offers_only_its_pairs(page, runs, tmp_path):
    """``deepvid compare A B`` computes A-vs-B only, and its page offers exactly that pair."""
    from deepvid_plugin.mlflow.compare import build_page

    html, _ = build_page([runs.a, runs.b], tracking_uri=runs.url)
    out = tmp_path / "compare.html"
    out.write_text(html, encoding="utf-8")
    page.goto(out.as_uri())
    page.locator("[data-testid=compare-map-b] canvas").first.wait_for(state="visible", timeout=60_000)
    assert _options(page, "compare-run-a") == [runs.a]
    assert _options(page, "compare-run-b") == [runs.b]
    _wait_instances(page, set(runs.ids[runs.a]) & set(runs.ids[runs.b]))
    assert not [e for e in page.dv_errors if "pageerror" in e], page.dv_errors


def test_deepvid_app_with_one_run_opens_the_timeline(page, mlflow_app_server):
    """``/deepvid/`` opens on "Compare runs"; in an experiment with a single run there is nothing
    to compare, so the page shows that run's timeline instead of an empty comparison."""
    from deepvid_plugin.mlflow.sink import MLflowSink

    client = mlflow_app_server.client()
    exp = client.create_experiment(f"deepvid-one-run-{time.time_ns()}")
    run = client.create_run(exp, run_name="the only run").info.run_id
    with MLflowSink(run, client=client, viewer_every=0, log_images=False) as sink:
        for step in STEPS[:2]:
            for i in ("a", "b"):
                sink.write(record(i, step, 0), step)
    client.set_terminated(run)

    page.goto(f"{mlflow_app_server.url}/deepvid/")
    experiment = page.locator("[data-testid=experiment-select]")
    experiment.wait_for()
    if experiment.input_value() != exp:
        experiment.select_option(exp)
    cells = page.locator("[data-testid=overview-cell]")
    cells.first.wait_for(timeout=60_000)
    assert cells.count() == 2 * 2
    assert page.locator("[data-testid=tab-overview]").get_attribute("aria-selected") == "true"
    assert page.locator("[data-testid=compare-view]").count() == 0
    assert not [e for e in page.dv_errors if "pageerror" in e], page.dv_errors
