"""MLflowStore and the JSON API over real MLflow runs, including damaged artifacts."""

from __future__ import annotations

import json

import pytest

from deepvid_plugin import api
from deepvid_plugin.mlflow import bundle, layout
from deepvid_plugin.mlflow.logging import MLflowSink
from deepvid_plugin.mlflow.store import MLflowStore, NoDeepVIDDataError, RunNotFoundError
from tests.mlflow.runs import EVIL, STEPS, record


def test_overview_and_records_round_trip(two_runs):
    store = MLflowStore(tracking_uri=two_runs.url)
    listed = dict(store.runs(experiment_ids=[two_runs.experiment_id]))
    assert listed == {two_runs.a: "run A", two_runs.b: "run B"}
    for run in (two_runs.a, two_runs.b):
        seed, ids = two_runs.seeds[run], two_runs.ids[run]
        ov = store.overview(run)
        assert ov.warnings == [] and ov.class_names == [str(k) for k in range(10)]
        assert [i.id for i in ov.instances] == list(ids)
        for inst in ov.instances:
            assert [s["step"] for s in inst.steps] == list(STEPS)
            assert inst.label == record(inst.id, 0, seed).label
            for s in STEPS:
                assert store.record(run, inst.id, s) == record(inst.id, s, seed)


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
        store.overview("feedfacefeedfacefeedfacefeedface")
    empty = client.create_run("0", run_name="no deepvid here").info.run_id
    with pytest.raises(NoDeepVIDDataError, match=f"{empty}.*no DeepVID data"):
        store.overview(empty)
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
        (tmp / layout.bundle_file(iid)).write_bytes(bundle.encode_bundle(iid, iid, blobs))
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
    assert f"record?instance=a&run={damaged_run}&step=1" not in snap
    assert f"record?instance=a&run={damaged_run}&step=2" in snap
    assert any("corrupt" in w for w in snap[f"instances?run={damaged_run}"]["warnings"])
