"""Deep links (docs/ui.md, "Links") in headless Chromium, against real servers.

- MLflow app: ``/deepvid/?experiment=NAME&view=compare&a=RUN&b=RUN&instance=ID`` opens the compare
  view with those runs (by name or id) and that instance, and the address follows the user.
- TensorBoard: the same parameters with a ``deepvid_`` prefix on TensorBoard's own address
  (``/?deepvid_view=compare&...#deepvid``), which TensorBoard leaves alone; the plugin's iframe
  reads and writes them there.
- A link whose values match nothing opens the default view and names each bad parameter in the
  warnings banner.

Every link asks for something other than the default (not the newest runs, not the first common
instance, not the default experiment), so a link that is ignored fails the test.
"""

from __future__ import annotations

import os
import time
import urllib.parse

import pytest

from deepvid_plugin.tensorboard.summary import close_logdir, write_record
from tests.e2e.fixtures_tensorboard import wait_for_json
from tests.factories import make_netdissect_record, make_record
from tests.mlflow.runs import STEPS, record

pytestmark = pytest.mark.timeout(600)

# ---- MLflow app -----------------------------------------------------------------------------
# run name -> instances; created in this order, so "link R" is the newest (compare's default A)
MLFLOW_RUNS = {"link P": ("a", "b", "c"), "link Q": ("a", "b", "c", "only-q"), "link R": ("a", "b", "c")}


@pytest.fixture(scope="module")
def linked(mlflow_app_server):
    """An experiment with runs P, Q, R, then a newer run in another experiment, so that the
    page's default experiment is not the one the links name."""
    from deepvid_plugin.mlflow.sink import MLflowSink

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = mlflow_app_server.client()
    stamp = time.time_ns()
    name = f"deepvid-links-{stamp}"
    exp = client.create_experiment(name)
    other = client.create_experiment(f"deepvid-links-other-{stamp}")
    runs = {}
    for seed, (run_name, instances) in enumerate(MLFLOW_RUNS.items()):
        run = client.create_run(exp, run_name=run_name).info.run_id
        with MLflowSink(run, client=client, viewer_every=0, log_images=False) as sink:
            for step in STEPS[:2]:
                for i in instances:
                    sink.write(record(i, step, seed), step)
        client.set_terminated(run)
        runs[run_name] = run
        time.sleep(0.05)  # distinct start times: the listing is newest first
    newest = client.create_run(other, run_name="elsewhere").info.run_id
    with MLflowSink(newest, client=client, viewer_every=0, log_images=False) as sink:
        sink.write(record("a", 0, 9), 0)
    client.set_terminated(newest)
    return {"name": name, "id": exp, "runs": runs}


def _query(url: str) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _compare_shows(target, a: str, b: str, instance: str) -> None:
    """Wait until compare's selects hold a, b and instance, and run B's map is drawn."""
    target.locator("[data-testid=compare-map-b] canvas").first.wait_for(state="visible", timeout=60_000)
    got = tuple(target.locator(f"[data-testid={t}]").input_value()
                for t in ("compare-run-a", "compare-run-b", "compare-instance"))
    assert got == (a, b, instance)


def test_mlflow_link_opens_compare_by_names_and_follows_the_user(page, mlflow_app_server, linked,
                                                                 artifacts_dir):
    runs = linked["runs"]
    # names for the experiment and run A (what the demo prints), an id for run B
    query = urllib.parse.urlencode({"experiment": linked["name"], "view": "compare", "a": "link P",
                                    "b": runs["link Q"], "instance": "b", "class": "b"})
    page.goto(f"{mlflow_app_server.url}/deepvid/?{query}")
    _compare_shows(page, runs["link P"], runs["link Q"], "b")
    # the class picker follows the link: both maps of B's prediction
    assert page.locator("[data-testid=compare-class]").input_value() == "b"
    page.locator("[data-testid=diff-map] canvas").first.wait_for()
    assert page.locator("[data-testid=experiment-select]").input_value() == linked["id"]
    assert page.locator("[data-testid=tab-compare]").get_attribute("aria-selected") == "true"
    assert page.locator("[data-testid=warnings]").count() == 0  # every parameter matched
    # The address now names what is on screen, by id.
    assert _query(page.url) == {"experiment": linked["id"], "view": "compare", "a": runs["link P"],
                                "b": runs["link Q"], "instance": "b", "class": "b"}

    # The user moves; the address follows, and opening it again shows the same thing.
    page.locator("[data-testid=compare-run-b]").select_option(runs["link R"])
    page.wait_for_function("r => new URLSearchParams(location.search).get('b') === r",
                           arg=runs["link R"])
    page.locator("[data-testid=compare-instance]").select_option("c")
    page.wait_for_function("() => new URLSearchParams(location.search).get('instance') === 'c'")
    # back to the default class (each run's own prediction): the link leaves it out
    page.locator("[data-testid=compare-class]").select_option("own")
    page.wait_for_function("() => !new URLSearchParams(location.search).has('class')")
    shared = page.url
    page.goto("about:blank")
    page.goto(shared)
    _compare_shows(page, runs["link P"], runs["link R"], "c")

    # The timeline tab writes its own link: view, run, instance.
    page.locator("[data-testid=tab-overview]").click()
    page.locator("[data-testid=overview-cell]").first.wait_for()
    page.wait_for_function("() => new URLSearchParams(location.search).get('view') === 'overview'")
    q = _query(page.url)
    assert q["run"] == page.locator("[data-testid=run-select]").input_value()
    assert "a" not in q and "b" not in q and q["instance"]
    assert not [e for e in page.dv_errors if "pageerror" in e], page.dv_errors
    page.screenshot(path=os.path.join(artifacts_dir, "deeplink-mlflow-compare.png"))


def test_mlflow_overview_link_by_run_name(page, mlflow_app_server, linked):
    runs = linked["runs"]
    query = urllib.parse.urlencode({"experiment": linked["id"], "view": "overview", "run": "link Q",
                                    "instance": "only-q"})
    page.goto(f"{mlflow_app_server.url}/deepvid/?{query}")
    page.locator("[data-testid=overview-cell]").first.wait_for()
    assert page.locator("[data-testid=run-select]").input_value() == runs["link Q"]
    assert page.locator("[data-testid=instance-panel]").get_attribute("data-instance") == "only-q"


def test_mlflow_bad_link_warns_and_shows_the_default(page, mlflow_app_server, linked):
    runs = linked["runs"]
    query = urllib.parse.urlencode({"experiment": linked["name"], "view": "nonsense",
                                    "a": "no-such-run", "instance": "zzz", "kind": "nope"})
    page.goto(f"{mlflow_app_server.url}/deepvid/?{query}")
    # The page's default view (compare) with its default runs: the two oldest (as in the demo,
    # clean before shortcut), first instance.
    _compare_shows(page, runs["link P"], runs["link Q"], "a")
    banner = page.locator("[data-testid=warnings]")
    assert "4 warnings" in banner.locator("summary").inner_text()
    text = banner.text_content()  # more than 3 warnings are folded: read the hidden list too
    for param, value in (("view", "nonsense"), ("a", "no-such-run"), ("instance", "zzz"), ("kind", "nope")):
        assert f"{param}=“{value}”" in text, text
    assert not [e for e in page.dv_errors if "pageerror" in e], page.dv_errors


def test_mlflow_page_still_rejects_markup_as_a_view(mlflow_app_server):
    import urllib.error
    import urllib.request

    url = f"{mlflow_app_server.url}/deepvid/?" + urllib.parse.urlencode({"view": "<b>x</b>"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=30)
    assert e.value.code == 400


# ---- TensorBoard ----------------------------------------------------------------------------
TB_RUNS = ("digits-clean-20261126-001500", "digits-marked-20261126-001600", "digits-other-20261126-001700")
TB_IDS = ("test-0", "test-1", "test-2")
FRAME = "iframe[src*='plugin_entry.html?name=deepvid']"


@pytest.fixture(scope="module")
def tb_logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb-links")
    for seed, run in enumerate(TB_RUNS):
        for step in range(2):
            for iid in TB_IDS:
                write_record(root / run, make_record(iid, step, n_classes=4, seed=seed), step)
            # a layer kind too, so a link can open the Dissection page
            write_record(root / run, make_netdissect_record("features.0", step, seed=seed), step)
        close_logdir(root / run)
    return root


def _tb_runs(base_url) -> list[str]:
    body = wait_for_json(base_url + "/data/plugin/deepvid/runs",
                         lambda b: sorted(r["run"] for r in b["runs"]) == sorted(TB_RUNS))
    return [r["run"] for r in body["runs"]]


def test_tensorboard_link_opens_compare_and_follows_the_user(tensorboard_server, tb_logdir, page,
                                                             artifacts_dir):
    base_url = tensorboard_server(tb_logdir, load_fast="false")
    listed = _tb_runs(base_url)
    # not compare's default pair (the first two listed), nor its default instance (the first)
    a, b = listed[2], listed[0]
    page.goto(f"{base_url}/?deepvid_view=compare&deepvid_a={a}&deepvid_b={b}"
              f"&deepvid_instance=test-2#deepvid")
    frame = page.frame_locator(FRAME)
    _compare_shows(frame, a, b, "test-2")
    # TensorBoard kept the link and its own tab; the app writes back to that address.
    assert urllib.parse.urlsplit(page.url).fragment == "deepvid"
    frame.locator("[data-testid=compare-instance]").select_option("test-1")
    page.wait_for_function(
        "() => new URLSearchParams(location.search).get('deepvid_instance') === 'test-1'")
    q = _query(page.url)
    assert (q["deepvid_view"], q["deepvid_a"], q["deepvid_b"]) == ("compare", a, b)
    assert urllib.parse.urlsplit(page.url).fragment == "deepvid"
    # Reloading the address TensorBoard shows reopens the same comparison.
    page.reload()
    _compare_shows(page.frame_locator(FRAME), a, b, "test-1")
    assert not [e for e in page.dv_errors if "pageerror" in e], page.dv_errors
    page.screenshot(path=os.path.join(artifacts_dir, "deeplink-tensorboard-compare.png"))


def test_tensorboard_bad_link_warns_and_shows_the_timeline(tensorboard_server, tb_logdir, page):
    base_url = tensorboard_server(tb_logdir, load_fast="false")
    listed = _tb_runs(base_url)
    page.goto(f"{base_url}/?deepvid_view=nonsense&deepvid_run=no-such-run#deepvid")
    frame = page.frame_locator(FRAME)
    frame.locator("[data-testid=overview-cell]").first.wait_for()
    assert frame.locator("[data-testid=tab-overview]").get_attribute("aria-selected") == "true"
    assert frame.locator("[data-testid=run-select]").input_value() == listed[0]
    text = frame.locator("[data-testid=warnings]").inner_text()
    assert "deepvid_view=“nonsense”" in text and "deepvid_run=“no-such-run”" in text, text


def test_tensorboard_runs_a_and_b_imply_compare(tensorboard_server, tb_logdir, page):
    """The tab's default is the timeline; a link naming runs A and B opens compare without view."""
    base_url = tensorboard_server(tb_logdir, load_fast="false")
    listed = _tb_runs(base_url)
    page.goto(f"{base_url}/?deepvid_a={listed[1]}&deepvid_b={listed[2]}#deepvid")
    _compare_shows(page.frame_locator(FRAME), listed[1], listed[2], TB_IDS[0])
    page.wait_for_function("() => new URLSearchParams(location.search).get('deepvid_view') === 'compare'")


def test_tensorboard_link_opens_a_page_kind(tensorboard_server, tb_logdir, page):
    base_url = tensorboard_server(tb_logdir, load_fast="false")
    run = _tb_runs(base_url)[-1]  # not the default (first) run
    page.goto(f"{base_url}/?deepvid_view=netdissect&deepvid_run={run}#deepvid")
    frame = page.frame_locator(FRAME)
    frame.locator("[data-testid=page-view][data-kind=netdissect]").wait_for()
    assert frame.locator("[data-testid=tab-netdissect]").get_attribute("aria-selected") == "true"
    assert frame.locator("[data-testid=run-select]").input_value() == run
    assert frame.locator("[data-testid=warnings]").count() == 0
