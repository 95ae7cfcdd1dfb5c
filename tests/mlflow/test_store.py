"""MLflowStore and the JSON API over real MLflow runs, including damaged artifacts."""

from __future__ import annotations

import json

import pytest

from deepvid_plugin import api
from deepvid_plugin.methods.deepvid.kind import step_summary
from deepvid_plugin.mlflow import bundle, layout
from deepvid_plugin.mlflow.sink import MLflowSink
from deepvid_plugin.mlflow.store import MLflowStore, NoDeepVIDDataError, RunNotFoundError
from tests.mlflow.runs import EVIL, STEPS, record


def test_overview_and_records_round_trip(two_runs):
    store = MLflowStore(tracking_uri=two_runs.url)
    listed = dict(store.runs(experiment_ids=[two_runs.experiment_id]))
    assert listed == {two_runs.a: "run A", two_runs.b: "run B"}
    for run in (two_runs.a, two_runs.b):
        seed, ids = two_runs.seeds[run], two_runs.ids[run]
        ov = store.overview(run, kind="deepvid")
        assert ov.warnings == [] and ov.class_names == [str(k) for k in range(10)]
        assert [i.id for i in ov.instances] == list(ids)
        for inst in ov.instances:
            assert [s["step"] for s in inst.steps] == list(STEPS)
            assert inst.label == record(inst.id, 0, seed).label
            for s in STEPS:
                assert store.record(run, inst.id, s, kind="deepvid") == record(inst.id, s, seed)


def test_compare_through_the_api(two_runs):
    store = MLflowStore(tracking_uri=two_runs.url)
    cmp = api.compare_impl(store, EVIL, [two_runs.a, two_runs.b])
    assert cmp["steps"] == list(STEPS) and [m["step"] for m in cmp["maps"]] == list(STEPS)
    assert cmp["names"] == ["run A", "run B"]
    assert cmp["only_in"] == {two_runs.a: [], two_runs.b: ["only-b"]}
    assert "different instance sets" in cmp["note"]
    with pytest.raises(api.ApiError) as e:
        api.compare_impl(store, "only-b", [two_runs.a, two_runs.b])
    assert e.value.status == 404 and "only-b" in e.value.message


def test_unknown_run_and_run_without_data(mlflow_server):
    client = mlflow_server.client()
    store = MLflowStore(client)
    with pytest.raises(RunNotFoundError, match="feedfacefeedfacefeedfacefeedface"):
        store.overview("feedfacefeedfacefeedfacefeedface", kind="deepvid")
    empty = client.create_run("0", run_name="no deepvid here").info.run_id
    with pytest.raises(NoDeepVIDDataError, match=f"{empty}.*no DeepVID data"):
        store.overview(empty, kind="deepvid")
    with pytest.raises(api.ApiError) as e:
        api.instances_impl(store, empty)
    assert e.value.status == 404


@pytest.fixture(scope="module")
def damaged_run(mlflow_server, tmp_path_factory):
    """Steps 0..3 of instances a and b, then: a's step-1 record overwritten with garbage, b's
    step-2 record replaced by one from a newer schema (in the per-step files and the bundles),
    and a corrupt extra step file."""
    client = mlflow_server.client()
    run = client.create_run("0", run_name="damaged").info.run_id
    with MLflowSink(run, client=client, viewer_every=0, log_images=False) as sink:
        for s in STEPS:
            for i in ("a", "b"):
                sink.write(record(i, s, 5), s)
    tmp = tmp_path_factory.mktemp("damage")
    garbage = b"DVID\x05\x00\x00\x00{bad}garbage"
    (tmp / "1.dvid").write_bytes(garbage)
    client.log_artifact(run, str(tmp / "1.dvid"), f"{layout.RECORDS_DIR}/a")
    newer = record("b", 2, 5).without_neighbour_images().encode().replace(
        b'"schema_version":2', b'"schema_version":7')
    (tmp / "2.dvid").write_bytes(newer)
    client.log_artifact(run, str(tmp / "2.dvid"), f"{layout.RECORDS_DIR}/b")
    # The finished run's bundles carry the same damage, so readers meet it whichever they read.
    for iid, step, blob in (("a", 1, garbage), ("b", 2, newer)):
        blobs = [(s, blob if s == step else record(iid, s, 5).without_neighbour_images().encode())
                 for s in STEPS]
        (tmp / layout.bundle_file(iid)).write_bytes(bundle.encode_bundle(iid, iid, blobs, kind="deepvid"))
        client.log_artifact(run, str(tmp / layout.bundle_file(iid)), layout.BUNDLES_DIR)
    (tmp / "9.json").write_text("{not json")
    client.log_artifact(run, str(tmp / "9.json"), layout.STEPS_DIR)
    (tmp / "10.json").write_text(json.dumps({"layout": 99, "step": 10}))
    client.log_artifact(run, str(tmp / "10.json"), layout.STEPS_DIR)
    client.set_terminated(run)
    return run


def test_damaged_artifacts_are_reported_and_skipped(mlflow_server, damaged_run):
    store = MLflowStore(mlflow_server.client())
    with pytest.warns(UserWarning):
        body = api.instances_impl(store, damaged_run)
    warnings = " | ".join(body["warnings"])
    assert "steps/9.json" in warnings and "corrupt" in warnings
    assert "steps/10.json" in warnings and "layout 99" in warnings
    # the rest still shows: both instances, every step
    assert [[s["step"] for s in i["steps"]] for i in body["instances"]] == [list(STEPS)] * 2

    with pytest.raises(api.ApiError) as e:
        api.record_impl(store, damaged_run, "a", 1)
    assert e.value.status == 404 and "corrupt" in e.value.message
    with pytest.raises(api.ApiError) as e:
        api.record_impl(store, damaged_run, "b", 2)
    assert e.value.status == 404 and "schema_version 7" in e.value.message
    assert api.record_impl(store, damaged_run, "a", 2)["step"] == 2


def test_damaged_record_is_skipped_in_compare_and_snapshot(mlflow_server, damaged_run,
                                                          two_runs):
    store = MLflowStore(mlflow_server.client())
    with pytest.warns(UserWarning):
        cmp = api.compare_impl(store, "a", [damaged_run, two_runs.a])
    assert [m["step"] for m in cmp["maps"]] == [0, 2, 3]  # step 1 unreadable, the rest compared
    assert any("corrupt" in w and "step 1" in w for w in cmp["warnings"])
    snap = api.snapshot(store, [damaged_run], timelines=False)
    assert f"record?instance=a&kind=deepvid&run={damaged_run}&step=1" not in snap
    assert f"record?instance=a&kind=deepvid&run={damaged_run}&step=2" in snap
    assert any("corrupt" in w for w in snap[f"instances?kind=deepvid&run={damaged_run}"]["warnings"])


def test_layout_1_run_still_reads_and_unknown_kinds_are_named(mlflow_server, tmp_path):
    """A run as layout 1 wrote it (``deepvid/steps``, ``records``, ``neighbours/*.npy``, records
    in version-1 bytes: the committed fixture), next to data of a kind this version lacks."""
    import io
    import os

    import numpy as np

    from deepvid_plugin.methods.deepvid.record import ExplanationRecord

    here = os.path.join(os.path.dirname(__file__), "..", "fixtures", "v1")
    client = mlflow_server.client()
    run = client.create_run("0", run_name="layout 1").info.run_id
    v1 = {}
    for s in (0, 1):
        with open(os.path.join(here, f"digit-0-step{s}.dvid"), "rb") as f:
            v1[s] = f.read()
        (tmp_path / f"{s}.dvid").write_bytes(v1[s])
        client.log_artifact(run, str(tmp_path / f"{s}.dvid"), "deepvid/records/digit-0")
        rec = ExplanationRecord.decode(v1[s])
        summary = step_summary(rec, None)
        del summary["headline"]  # layout 1's summaries had none
        summary["schema_version"] = 1
        (tmp_path / f"{s}.json").write_text(json.dumps({
            "layout": 1, "step": s, "class_names": list(rec.class_names),
            "instances": [{"id": "digit-0", "key": "digit-0", "label": rec.label,
                           "summary": summary, "record_crc32": bundle.crc32(v1[s]),
                           "image": api.encode_image(rec.image)}]}))
        client.log_artifact(run, str(tmp_path / f"{s}.json"), "deepvid/steps")
    shown = np.full((4, 1, 8, 8), 0.5, np.float16)
    buf = io.BytesIO()
    np.save(buf, shown, allow_pickle=False)
    (tmp_path / "digit-0.npy").write_bytes(buf.getvalue())
    client.log_artifact(run, str(tmp_path / "digit-0.npy"), "deepvid/neighbours")
    (tmp_path / "0.json").write_text("{}")
    client.log_artifact(run, str(tmp_path / "0.json"), "deepvid/zz_future/steps")
    client.set_terminated(run)

    store = MLflowStore(client)
    assert store.kinds(run) == ["deepvid", "zz_future"]
    with pytest.warns(UserWarning, match="zz_future"):
        ov = store.overview(run, kind="deepvid")
    assert [s["step"] for s in ov.instances[0].steps] == [0, 1]
    assert ov.instances[0].steps[1]["headline"] == pytest.approx(
        ExplanationRecord.decode(v1[1]).fidelity["top1_agreement"], abs=1e-3)
    got = store.record(run, "digit-0", 1, kind="deepvid")
    assert got.without_neighbour_images() == \
        ExplanationRecord.decode(v1[1]).without_neighbour_images()
    assert got.has_neighbour_images and np.array_equal(got.neighbours, shown)
    with pytest.raises(NoDeepVIDDataError, match="no gradcam data"):
        store.overview(run, kind="gradcam")
