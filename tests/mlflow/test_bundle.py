"""Per-instance bundles: the format, and MLflowStore reading finished runs from them."""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse

import pytest

from deepvid_plugin import api
from deepvid_plugin.mlflow import bundle, layout
from deepvid_plugin.mlflow.sink import MLflowSink
from deepvid_plugin.mlflow.store import MLflowStore
from tests.factories import step_part
from tests.mlflow.runs import record

STEPS = (0, 1, 2)
IDS = ("a", "b/<x>")


def _blobs(iid: str, seed: int = 3):
    return [(s, record(iid, s, seed).without_neighbour_images().encode()) for s in STEPS]


def test_round_trip_and_damage_detection():
    blobs = _blobs("a")
    data = bundle.encode_bundle("a", "a", blobs, subject=b"arrays-bytes", kind="deepvid")
    b = bundle.decode_bundle(data)
    assert b.instance == "a" and b.subject == b"arrays-bytes" and b.problems == []
    assert b.kind == "deepvid" and b.neighbours is None
    assert b.records == dict(blobs)
    # one flipped byte inside step 1's record: only that step is dropped, and named
    start = data.index(blobs[1][1]) + 100
    damaged = data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1:]
    b = bundle.decode_bundle(damaged)
    assert sorted(b.records) == [0, 2] and "step 1" in b.problems[0] and "CRC" in b.problems[0]
    # a truncated bundle loses the steps past the cut, not the others
    b = bundle.decode_bundle(data[:data.index(blobs[2][1]) + 10])
    assert sorted(b.records) == [0, 1] and any("step 2" in p for p in b.problems)


@pytest.mark.parametrize("data, message", [
    (b"DVI", "truncated"),
    (b"NOPE\x00\x00\x00\x00", "not a DeepVID bundle"),
    (b"DVIB\x05\x00\x00\x00{bad}", "corrupt bundle header"),
])
def test_unreadable_bundles_raise(data, message):
    with pytest.raises(bundle.BundleDecodeError, match=message):
        bundle.decode_bundle(data)


def test_layout_1_bundles_still_decode():
    blobs = _blobs("a")
    data = bundle.encode_bundle("a", "a", blobs, subject=b"npy-bytes", kind="deepvid")
    hlen = int.from_bytes(data[4:8], "little")
    header = json.loads(data[8:8 + hlen])
    header["layout"] = 1  # what layout 1 wrote: no kind, the extra blob named "neighbours"
    header["neighbours"] = header.pop("subject")
    del header["kind"]
    raw = json.dumps(header).encode()
    b = bundle.decode_bundle(b"DVIB" + len(raw).to_bytes(4, "little") + raw + data[8 + hlen:])
    assert b.neighbours == b"npy-bytes" and b.subject is None and b.kind == "deepvid"
    assert b.records == dict(blobs)


def test_newer_layout_is_named():
    data = bundle.encode_bundle("a", "a", _blobs("a"), kind="deepvid")
    hlen = int.from_bytes(data[4:8], "little")
    header = json.loads(data[8:8 + hlen])
    header["layout"] = 99
    raw = json.dumps(header).encode()
    newer = b"DVIB" + len(raw).to_bytes(4, "little") + raw + data[8 + hlen:]
    with pytest.raises(bundle.BundleDecodeError, match="layout 99"):
        bundle.decode_bundle(newer)


def _run_dir(server, client, run: str) -> str:
    """Where the server keeps ``run``'s artifacts (``mlflow-artifacts:/<exp>/<run>/artifacts``)."""
    uri = client.get_run(run).info.artifact_uri
    return os.path.join(server.artifacts_destination, urllib.parse.urlparse(uri).path.lstrip("/"))


def _log(client, run: str, seed: int, steps=STEPS, close: bool = True, viewer_every: int = 0):
    sink = MLflowSink(run, client=client, viewer_every=viewer_every, log_images=False)
    for s in steps:
        for i in IDS:
            sink.write(record(i, s, seed), s)
    if close:
        sink.close()
    else:
        sink.flush()


def test_finished_run_is_read_from_its_bundles(mlflow_server):
    client = mlflow_server.client()
    run = client.create_run("0", run_name="bundled").info.run_id
    _log(client, run, seed=3)
    client.set_terminated(run)
    root = _run_dir(mlflow_server, client, run)
    assert sorted(os.listdir(os.path.join(root, layout.BUNDLES_DIR))) == sorted(
        layout.bundle_file(layout.instance_key(i)) for i in IDS)
    # Without the per-step record and neighbour files, everything must come from the bundles.
    shutil.rmtree(os.path.join(root, layout.RECORDS_DIR))
    shutil.rmtree(os.path.join(root, layout.SUBJECTS_DIR))
    store = MLflowStore(client)
    store.prefetch(run, "deepvid")
    for i in IDS:
        for s in STEPS:
            assert store.record(run, i, s, kind="deepvid") == record(i, s, 3)  # neighbour images included
    assert store.overview(run, kind="deepvid").warnings == []


def test_running_run_and_stale_bundle_use_the_step_files(mlflow_server):
    client = mlflow_server.client()
    run = client.create_run("0", run_name="resumed").info.run_id
    _log(client, run, seed=3)
    # A resumed writer rewrites step 2 and dies before close(): the run has a bundle from the
    # first writer, stale at step 2, and only the per-step files know the new record.
    _log(client, run, seed=4, steps=(2,), close=False, viewer_every=1)
    store = MLflowStore(client)
    assert store.record(run, "a", 2, kind="deepvid") == record("a", 2, 4)  # running: per-step files only
    client.set_terminated(run, status="FAILED")
    store = MLflowStore(client)
    store.prefetch(run, "deepvid")
    # The bundle's CRC no longer matches. (Neighbour images are compared apart: a real resume
    # draws the same fixed neighbours and image, this synthetic one draws new ones with the new
    # seed.)
    got = store.record(run, "a", 2, kind="deepvid")
    assert step_part(got) == step_part(record("a", 2, 4))
    assert store.record(run, "a", 0, kind="deepvid") == record("a", 0, 3)


def test_corrupt_bundle_is_reported_and_the_step_files_serve(mlflow_server, tmp_path):
    client = mlflow_server.client()
    run = client.create_run("0", run_name="bad bundle").info.run_id
    _log(client, run, seed=3)
    (tmp_path / layout.bundle_file("a")).write_bytes(b"DVIB\x05\x00\x00\x00{bad}")
    client.log_artifact(run, str(tmp_path / layout.bundle_file("a")), layout.BUNDLES_DIR)
    client.set_terminated(run)
    store = MLflowStore(client)
    with pytest.warns(UserWarning, match="bundles/a.dvib"):
        store.prefetch(run, "deepvid")
    assert store.record(run, "a", 1, kind="deepvid") == record("a", 1, 3)
    body = api.instances_impl(store, run)
    assert any("bundles/a.dvib" in w and "corrupt bundle header" in w for w in body["warnings"])
