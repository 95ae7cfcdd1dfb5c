"""Rows 5, 6, 7 (readers) and 8: what readers find on disk is not always what a writer meant.

Row 5 (before): a stored summary with ``"predicted": "zz"`` or a label ``"seven"``, then
``compare``: HTTP 500 (TensorBoard: an HTML 500; the MLflow app: "internal error").
Row 6 (before): a run directory named ``lr="0.1"`` or holding a backslash, default TensorBoard:
``record`` and ``compare`` answered 400 text/plain "failed to parse blob key: BadJson(...)".
Row 7 (before): two writers at once on one logdir; ``--load_fast=false`` served one writer's
records under the other's summaries (24 of 24 mismatched).
Row 8 (before): 64 bytes flipped in an event file; the fast loader 404ed one record with no
warning in the overview, the Python loader silently lost 15 of 24 records.

One logdir holds a run per fault; a real TensorBoard serves it under each loader. The bad data
is written through the real sink with one field tampered with, or by moving and damaging real
event files: what a hand-edited or damaged log looks like on disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import time
import urllib.parse

import pytest

from deepvid_plugin.core import kinds
from deepvid_plugin.tensorboard import summary as tb_summary
from tests.e2e.fixtures_tensorboard import _Server, get_json
from tests.factories import make_record

STEPS = (0, 1, 2)
QUOTED, BACKSLASH = 'lr="0.1"', "back\\slash"


@contextlib.contextmanager
def tampered(summary_change=None, label=None):
    """Make the sink store a summary field (``{(subject, step): {field: value}}``) or a label
    of its choosing: the bytes a hand-edited log would hold."""
    real_summarize, real_header = kinds.summarize, kinds.subject_header

    def summarize(record, previous=None):
        if previous is not None:  # the sink keeps what it stored: give the writer the truth
            previous = {**previous, "predicted": None}
        out = real_summarize(record, previous)
        out.update((summary_change or {}).get((record.subject, record.step), {}))
        return out

    def header(record):
        out = real_header(record)
        return {**out, "label": label} if label is not None else out

    kinds.summarize, kinds.subject_header = summarize, header
    try:
        yield
    finally:
        kinds.summarize, kinds.subject_header = real_summarize, real_header


def write_run(directory, ids=("0", "1"), steps=STEPS, seed=0):
    with tb_summary.TensorBoardSink(str(directory)) as sink:
        for step in steps:
            for iid in ids:
                sink.write(make_record(iid, step, seed=seed), step)
            sink.flush()


def two_writers_at_once(directory):
    """Old logs: two writers wrote one run at the same time (before runs were locked)."""
    a, b = directory.parent / "writer-a", directory.parent / "writer-b"
    sa, sb = tb_summary.TensorBoardSink(str(a)), tb_summary.TensorBoardSink(str(b))
    for step in range(4):
        for sink, seed in ((sa, 1), (sb, 2)):
            sink.write(make_record("x", step, seed=seed), step)
            sink.flush()
            time.sleep(0.02)
    sa.close()
    sb.close()
    directory.mkdir()
    for f in glob.glob(str(a / "events*")) + glob.glob(str(b / "events*")):
        shutil.move(f, directory)
    shutil.rmtree(a)
    shutil.rmtree(b)


def damage(directory, n_bytes=64):
    (path,) = glob.glob(os.path.join(directory, "events*"))
    data = bytearray(open(path, "rb").read())
    start = len(data) // 3
    for k in range(n_bytes):
        data[start + k] ^= 0xFF
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("stored")
    write_run(root / "good")
    with tampered(summary_change={("0", 1): {"predicted": "zz"}}):
        write_run(root / "bad-summary")
    with tampered(label="seven"):
        write_run(root / "bad-label")
    write_run(root / "quoted")  # renamed below: the sink refuses such names (see the last test)
    os.rename(root / "quoted", root / QUOTED)
    write_run(root / "slashed")
    os.rename(root / "slashed", root / BACKSLASH)
    write_run(root / "damaged", ids=("0", "1", "2", "3"), steps=range(6))
    damage(root / "damaged")
    two_writers_at_once(root / "two-writers")
    return root


@pytest.fixture(scope="module", params=["true", "false"])
def tensorboard(request, logdir):
    server = _Server(logdir, request.param, ())
    try:
        url = server.wait_ready() + "/data/plugin/deepvid/"
        # wait until every run is loaded
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status, body = get_json(url + "runs")
            if status == 200 and len(body["runs"]) == 7:
                break
            time.sleep(0.5)
        yield request.param, url
    finally:
        server.stop()


def ask(url, route, **params):
    return get_json(url + route + "?" + urllib.parse.urlencode(params))


@pytest.mark.e2e
def test_bad_summary_and_label_are_skipped_with_a_warning(tensorboard):
    loader, url = tensorboard
    status, body = ask(url, "instances", run="bad-summary", kind="deepvid")
    assert status == 200
    assert [s["step"] for s in body["instances"][0]["steps"]] == [0, 2]  # step 1 skipped
    assert any("'predicted'" in w and "'zz'" in w for w in body["warnings"]), body["warnings"]
    status, body = ask(url, "compare", runs="good,bad-summary", instance="0", kind="deepvid")
    assert status == 200, body
    assert body["steps"] == [0, 2] and len(body["maps"]) == 2
    status, body = ask(url, "compare", runs="good,bad-label", instance="0", kind="deepvid",
                       **{"class": "label"})
    assert status == 200, body  # A's label decides; B's bad one is shown as unknown
    status, body = ask(url, "compare", runs="bad-label,good", instance="0", kind="deepvid",
                       **{"class": "label"})
    assert status == 200, body
    assert body["label"] is None and body["maps"] == []
    assert {m["reason"] for m in body["missing"]} == {"the instance has no true label"}
    assert any("label" in w and "'seven'" in w for w in body["warnings"]), body["warnings"]


@pytest.mark.e2e
def test_no_route_answers_5xx_for_any_stored_run(tensorboard):
    _, url = tensorboard
    status, runs = ask(url, "runs")
    names = [r["run"] for r in runs["runs"]]
    assert len(names) == 7
    seen = []
    for run in names:
        for route, params in (("kinds", {}), ("instances", {"kind": "deepvid"})):
            status, body = ask(url, route, run=run, **params)
            seen.append((run, route, status))
        _, inst = ask(url, "instances", run=run, kind="deepvid")
        for i in inst.get("instances", []):
            for s in i["steps"]:
                status, body = ask(url, "record", run=run, instance=i["id"], step=s["step"],
                                   kind="deepvid")
                assert isinstance(body, dict), (run, body)  # JSON, never an HTML error page
                seen.append((run, "record", status))
            for other in ("good", "bad-summary"):
                if other != run:
                    status, body = ask(url, "compare", runs=f"{other},{run}", instance=i["id"],
                                       kind="deepvid")
                    assert isinstance(body, dict), (run, body)
                    seen.append((run, "compare", status))
    assert len(seen) > 60
    assert all(status < 500 for _, _, status in seen), [s for s in seen if s[2] >= 500]


@pytest.mark.e2e
@pytest.mark.parametrize("run", [QUOTED, BACKSLASH])
def test_run_names_rustboard_cannot_key_get_a_json_hint(tensorboard, run):
    loader, url = tensorboard
    status, body = ask(url, "record", run=run, instance="0", step=1, kind="deepvid")
    if loader == "true":
        assert status == 400 and "--load_fast=false" in body["error"], body
        status, body = ask(url, "compare", runs=f"good,{run}", instance="0", kind="deepvid")
        assert status == 200 and any("--load_fast=false" in w for w in body["warnings"]), body
    else:
        assert status == 200 and body["step"] == 1  # the Python loader reads them


@pytest.mark.e2e
def test_a_damaged_event_file_is_named_not_silent(tensorboard):
    loader, url = tensorboard
    status, body = ask(url, "instances", run="damaged", kind="deepvid")
    assert status == 200
    lost = [w for w in body["warnings"] if "cannot be read" in w and "damaged" in w]
    served = refused = 0
    for i in body["instances"]:
        for s in i["steps"]:
            status, rec = ask(url, "record", run="damaged", instance=i["id"], step=s["step"],
                              kind="deepvid")
            assert status in (200, 404), (status, rec)
            served += status == 200
            if status == 404:  # the fast loader lists the damaged record but cannot read it
                assert "damaged" in rec["error"], rec
                refused += 1
    if loader == "false":
        # the Python loader stops at the damage and hides the rest: the overview says how much
        assert len(lost) == 1, body["warnings"]
        n_lost = int(lost[0].split(": ", 1)[1].split(" of the 24")[0])
        assert n_lost >= 10 and served + n_lost == 24, (served, lost[0])
    else:
        # the fast loader drops only the damaged event's record, named when it is asked for
        assert refused >= 1 and served + refused == 24, (served, refused)


@pytest.mark.e2e
def test_two_writers_in_old_logs_are_not_mixed(tensorboard):
    loader, url = tensorboard
    status, body = ask(url, "instances", run="two-writers", kind="deepvid")
    assert status == 200
    assert body["instances"][0]["steps"]
    # the grid's summaries carry no probabilities: the row's timeline has the whole summaries
    status, timeline = ask(url, "timeline", run="two-writers", instance="x", kind="deepvid")
    assert status == 200
    steps = timeline["steps"]
    assert [s["step"] for s in steps] == [s["step"] for s in body["instances"][0]["steps"]]
    for s in steps:  # every summary shown belongs with the record served at its step
        status, rec = ask(url, "record", run="two-writers", instance="x", step=s["step"],
                          kind="deepvid")
        assert status == 200
        assert rec["predicted"] == s["predicted"]
        assert rec["teacher_probs"][:3] == s["probs"][:3], (loader, s["step"])
    if loader == "false":  # the loader that mixes them: the user is told
        assert any("several writers at the same time" in w for w in body["warnings"])


def test_the_sink_refuses_run_names_tensorboard_cannot_read_back(tmp_path):
    from tests.faults.helpers import quick_callback

    for name in (QUOTED, BACKSLASH):
        with pytest.raises(ValueError, match=r"logdir: expected a directory path without .*"
                                             r"TensorBoard's default \(fast\) loader"):
            quick_callback(logdir=tmp_path / name)
        assert not (tmp_path / name).exists()  # refused before anything was written


@pytest.mark.e2e
def test_mlflow_app_skips_a_bad_summary_and_label(mlflow_app_server, tmp_path):
    import json

    from deepvid_plugin.mlflow import layout
    from deepvid_plugin.mlflow.sink import MLflowSink

    client = mlflow_app_server.client()
    exp = client.create_experiment("stored-data")
    runs = {}
    for name in ("good", "bad"):
        run_id = client.create_run(exp, run_name=name).info.run_id
        sink = MLflowSink(run_id, client=client, viewer_every=0, log_images=False)
        for step in STEPS:
            for iid in ("0", "1"):
                sink.write(make_record(iid, step), step)
            sink.flush()
        runs[name] = (run_id, sink)
    bad = runs["bad"][0]
    for step, change in ((1, {"predicted": "zz"}), (0, {"label": "seven"})):
        local = client.download_artifacts(bad, f"{layout.STEPS_DIR}/{step}.json", str(tmp_path))
        with open(local) as f:
            body = json.load(f)
        entry = body["instances"][0]
        if "predicted" in change:
            entry["summary"] = {**entry["summary"], **change}
        else:
            entry.update(change)
        with open(local, "w") as f:
            json.dump(body, f)
        client.log_artifact(bad, local, artifact_path=layout.STEPS_DIR)
    app = mlflow_app_server.url + "/deepvid/api/"
    status, body = ask(app, "compare", runs=f"{runs['good'][0]},{bad}", instance="0",
                       kind="deepvid")
    assert status == 200, body
    assert body["steps"] == [0, 2]
    assert any("'zz'" in w for w in body["warnings"]) and \
        any("'seven'" in w for w in body["warnings"]), body["warnings"]
    status, body = ask(app, "compare", runs=f"{bad},{runs['good'][0]}", instance="0",
                       kind="deepvid", **{"class": "label"})
    assert status == 200 and body["label"] is None, body
    for _, sink in runs.values():
        sink.close()


def test_a_record_breaking_its_kinds_rules_is_a_named_404(tmp_path, monkeypatch):
    from deepvid_plugin import api
    from deepvid_plugin.core.record import Record
    from deepvid_plugin.tensorboard.store import DataProviderStore
    from tests.callbacks.helpers import data_provider

    real_encode = Record.encode
    # The stored record says label "seven" (its summary is fine): bytes that decode, but break
    # the kind's rules, as a hand-made record would.
    monkeypatch.setattr(Record, "encode", lambda self: real_encode(
        dataclasses.replace(self, meta={**self.meta, "label": "seven"})))
    write_run(tmp_path / "run", ids=("0",), steps=(0,))
    monkeypatch.setattr(Record, "encode", real_encode)
    store = DataProviderStore(data_provider(tmp_path), logdir=str(tmp_path))
    body, status = api.respond(store, "record", {"run": "run", "instance": "0", "step": "0",
                                                 "kind": "deepvid"})
    assert status == 404 and "breaks its kind's rules" in body["error"], body
