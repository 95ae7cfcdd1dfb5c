"""The backend-agnostic JSON API (deepvid_plugin/api/) over an in-memory store, and the route
table served the same by the TensorBoard plugin."""

import base64
import dataclasses
import json
import urllib.parse

import numpy as np
import pytest

from deepvid_plugin import api
from deepvid_plugin.api import ApiError, MemoryStore
from deepvid_plugin.core.record import NewerSchemaError, RecordDecodeError
from deepvid_plugin.methods.deepvid.kind import step_summary
from tests.factories import FACTORIES, make_gradcam_record, make_record, make_run


@pytest.fixture
def store():
    return MemoryStore({"r1": make_run(("a", "b"), range(4)),
                        "r2": make_run(("a", "c"), range(1, 5), seed=1)},
                       names={"r1": "first run"})


# ---- encoders ---------------------------------------------------------------------------------
def test_encode_map_is_symmetric_and_keeps_zero():
    arr = np.array([[-2.0, 0.0], [1.0, 0.5]])
    enc = api.encode_map(arr)
    assert enc["shape"] == [2, 2] and enc["scale"] == 2.0
    q = np.frombuffer(base64.b64decode(enc["data"]), np.int8)
    assert q.tolist() == [-127, 0, 64, 32]
    np.testing.assert_allclose(api.decode_map(enc), arr, atol=2.0 / 127)


def test_encode_map_all_zero_and_non_finite():
    enc = api.encode_map(np.array([0.0, np.nan, np.inf]))
    assert enc["scale"] == 0.0
    assert np.frombuffer(base64.b64decode(enc["data"]), np.int8).tolist() == [0, 0, 0]


def test_encode_image_min_max_per_image():
    img = np.stack([np.full((2, 2), 3.0), np.array([[1.0, 2.0], [3.0, 5.0]])])
    enc = api.encode_image(img)
    q = np.frombuffer(base64.b64decode(enc["data"]), np.uint8)
    assert enc["shape"] == [2, 2, 2]
    assert q.min() == 0 and q.max() == 255 and q[0] == 128  # 3.0 in [1, 5]
    with pytest.raises(ValueError, match="arr: expected a \\(C, H, W\\) image"):
        api.encode_image(np.zeros((2, 2)))


# ---- step_summary -----------------------------------------------------------------------------
def test_step_summary_fields_and_changed():
    rec = make_record(step=3)
    s = step_summary(rec, None)
    assert s["step"] == 3 and s["predicted"] == rec.predicted and s["changed"] is False
    assert len(s["probs"]) == 10 and abs(sum(s["probs"]) - 1) < 1e-3
    assert s["trustworthy"] == rec.trustworthy
    # compact fidelity: 3 significant digits, no duplicate of the summary's own "trustworthy"
    assert set(s["fidelity"]) == set(rec.fidelity) - {"trustworthy"}
    for key, value in s["fidelity"].items():
        if isinstance(value, float):
            assert value == pytest.approx(rec.fidelity[key], rel=5e-3) and len(repr(value)) <= 8
        else:
            assert value == rec.fidelity[key]
    assert s["thumb"]["shape"] == [14, 14]  # 28 -> at most 16 per side
    thumb = api.decode_map(s["thumb"])
    expect = rec.weights[rec.predicted].astype(float).mean(0).reshape(14, 2, 14, 2).mean((1, 3))
    np.testing.assert_allclose(thumb, expect, atol=s["thumb"]["scale"] / 127)
    assert step_summary(rec, rec.predicted)["changed"] is False
    assert step_summary(rec, (rec.predicted + 1) % 10)["changed"] is True
    json.dumps(s, allow_nan=False)  # JSON-able as is


EVIDENCE_AUCS = ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc")


def test_step_summary_without_evidence_says_nothing_about_it():
    s = step_summary(make_record(step=2), None)
    assert not set(s["fidelity"]) & {*EVIDENCE_AUCS, "better_than_random", "trust_reason",
                                     "deletion_curve", "insertion_curve"}


@pytest.mark.parametrize("better", [True, False])
def test_step_summary_carries_the_evidence_compactly(better):
    rec = make_record(step=2, evidence=True, better_than_random=better, trustworthy=True)
    s = step_summary(rec, None)
    f = s["fidelity"]
    for key in EVIDENCE_AUCS:
        assert f[key] == pytest.approx(rec.fidelity[key], rel=5e-3) and len(repr(f[key])) <= 6
    assert f["better_than_random"] is better and s["trustworthy"] is better
    # the curves stay in the record route; the summary carries only their areas
    assert "deletion_curve" not in f and "insertion_curve" not in f and "evidence_steps" not in f
    if better:
        assert "trust_reason" not in f  # null for a trustworthy step: left out
    else:
        assert f["trust_reason"] == rec.fidelity["trust_reason"] and "random" in f["trust_reason"]
    json.dumps(s, allow_nan=False)


def test_step_summary_growth_from_the_evidence_is_small():
    # A summary as the previous version wrote it (the whole fidelity mapping, full floats) against
    # the same step with the evidence, as now: the overview grows by well under 100 bytes a step.
    real = {"top1_agreement": 0.96875, "kl": 0.012345678901234, "r2_top": 0.8765432109876,
            "mae_top": 0.0012345678901, "instance_agreement": True, "n_holdout": 128,
            "trustworthy": True}
    base = make_record(step=2, evidence=True, better_than_random=True, trustworthy=True)
    old = dataclasses.replace(base, fidelity=real)
    new = dataclasses.replace(base, fidelity={
        **real, **{k: base.fidelity[k] for k in api.EVIDENCE_KEYS}, "trust_reason": None})
    before = step_summary(old, None)
    before["fidelity"] = dict(old.fidelity)  # what the previous version stored
    size = lambda s: len(json.dumps(s, separators=(",", ":")))  # noqa: E731
    assert size(before) > 500
    assert size(step_summary(new, None)) - size(before) <= 65


def test_summary_fidelity_drops_non_finite_and_lists():
    out = api.summary_fidelity({"a": float("nan"), "b": [1.0], "c": 0.123456, "d": None,
                                "e": "why", "f": 3})
    assert out == {"c": 0.123, "e": "why", "f": 3}


def test_step_summary_thumb_uneven_size():
    s = step_summary(make_record(size=35, channels=3), None)
    assert s["thumb"]["shape"] == [12, 12]  # ceil(35/16)=3 -> 12 blocks, the last one short


def test_step_summary_rejects_bad_arguments():
    with pytest.raises(TypeError, match="record: expected an ExplanationRecord"):
        step_summary({"step": 1}, None)
    with pytest.raises(TypeError, match="previous_predicted"):
        step_summary(make_record(), "3")


# ---- parsing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("args,fn,msg", [
    ({}, api.parse_run, "missing query parameter 'run'"),
    ({"run": ""}, api.parse_run, "missing query parameter 'run'"),
    ({}, api.parse_instance, "'instance'"),
    ({"step": "1.5"}, api.parse_step, "expected an integer, got '1.5'"),
    ({"step": "abc"}, api.parse_step, "expected an integer"),
    ({"step": "9" * 40}, api.parse_step, "expected an integer"),
    ({"runs": "a"}, api.parse_runs, "exactly two distinct"),
    ({"runs": "a,a"}, api.parse_runs, "exactly two distinct"),
    ({"runs": "a,"}, api.parse_runs, "exactly two distinct"),
    # The compare view draws A, B and B - A only: a third run is rejected, not silently dropped.
    ({"runs": "x,y,z"}, api.parse_runs, "exactly two distinct comma-separated runs .A,B., "
                                        "got 'x,y,z'"),
])
def test_parse_errors_are_400(args, fn, msg):
    with pytest.raises(ApiError, match=msg) as e:
        fn(args)
    assert e.value.status == 400 and e.value.to_json() == {"error": e.value.message}


def test_parse_ok():
    assert api.parse_step({"step": "-3"}) == -3
    assert api.parse_runs({"runs": "x,y"}) == ["x", "y"]


# ---- routes -----------------------------------------------------------------------------------
def test_runs(store):
    out = api.runs_impl(store)
    assert out == {"runs": [{"run": "r1", "name": "first run", "instances": 2, "steps": 4,
                             "kinds": ["deepvid"]},
                            {"run": "r2", "name": "r2", "instances": 2, "steps": 4,
                             "kinds": ["deepvid"]}],
                   "warnings": []}


def test_instances(store):
    out = api.instances_impl(store, "r1")
    assert out["class_names"] == [str(k) for k in range(10)]
    assert [i["id"] for i in out["instances"]] == ["a", "b"]
    a = out["instances"][0]
    assert a["label"] == make_record("a").label and a["image"]["shape"] == [1, 28, 28]
    assert [s["step"] for s in a["steps"]] == [0, 1, 2, 3]
    preds = [s["predicted"] for s in a["steps"]]
    assert [s["changed"] for s in a["steps"]] == [False] + [
        p != q for p, q in zip(preds, preds[1:], strict=False)]
    with pytest.raises(ApiError, match="run 'nope' not found") as e:
        api.instances_impl(store, "nope")
    assert e.value.status == 404


def test_timeline(store):
    out = api.timeline_impl(store, "r2", "c")
    assert out["instance"] == "c" and [s["step"] for s in out["steps"]] == [1, 2, 3, 4]
    with pytest.raises(ApiError, match="instance 'b' not found in run 'r2'") as e:
        api.timeline_impl(store, "r2", "b")
    assert e.value.status == 404


def test_record(store):
    out = api.record_impl(store, "r1", "b", 2)
    rec = make_record("b", 2)
    assert out["step"] == 2 and out["predicted"] == rec.predicted and out["label"] == rec.label
    assert len(out["weights"]) == 10 and out["weights"][0]["shape"] == [1, 28, 28]
    assert len(out["neighbours"]) == 8 and out["neighbour_teacher"] == rec.neighbour_teacher.tolist()
    assert out["settings"]["temperature"] == 2.0 and out["warnings"] == []
    np.testing.assert_allclose(api.decode_map(out["weights"][3]), rec.weights[3].astype(float),
                               atol=out["weights"][3]["scale"] / 127)
    with pytest.raises(ApiError, match="no deepvid record for instance 'b' at step 9") as e:
        api.record_impl(store, "r1", "b", 9)
    assert e.value.status == 404


def test_record_carries_curves_and_input_for_contributions():
    rec = make_record("a", 1, evidence=True, better_than_random=False, channels=3, size=8)
    out = api.record_impl(MemoryStore({"r": [rec]}), "r", "a", 1)
    f = out["fidelity"]
    assert len(f["deletion_curve"]) == len(f["insertion_curve"]) == f["evidence_steps"] + 1
    assert f["deletion_curve"] == pytest.approx(rec.fidelity["deletion_curve"])
    assert f["better_than_random"] is False and out["trustworthy"] is False
    assert f["trust_reason"] == "the map is no better than a random map at deletion/insertion"
    # the instance in its own units, signed, so weights x input can be drawn per channel
    assert out["input"]["shape"] == [3, 8, 8]
    np.testing.assert_allclose(api.decode_map(out["input"]), rec.image.astype(float),
                               atol=out["input"]["scale"] / 127)
    json.dumps(out, allow_nan=False)


def test_old_and_new_records_side_by_side():
    old = make_record("old", 0)
    new = make_record("new", 0, evidence=True)
    store = MemoryStore({"r": [old, new]})
    by_id = {i: api.timeline_impl(store, "r", i)["steps"][0]["fidelity"] for i in ("old", "new")}
    assert "deletion_auc" not in by_id["old"] and "deletion_auc" in by_id["new"]
    # the overview keeps the verdict only: the grid marks low trust before its rows are in view
    grid = {i["id"]: i["steps"][0]["fidelity"]
            for i in api.instances_impl(store, "r")["instances"]}
    assert grid == {"old": {}, "new": {"better_than_random": by_id["new"]["better_than_random"]}}
    assert api.has_evidence(new.fidelity) and not api.has_evidence(old.fidelity)
    rec = api.record_impl(MemoryStore({"r": [old]}), "r", "old", 0)
    assert "deletion_curve" not in rec["fidelity"] and "input" in rec


class _Failing(MemoryStore):
    """A store whose stored bytes for one step are unreadable, as a real backend can find them."""

    def __init__(self, error, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.error = error

    def record(self, run, instance, step, *, kind):
        if step == 1:
            raise self.error
        return super().record(run, instance, step, kind=kind)


@pytest.mark.parametrize("error,msg", [(NewerSchemaError(2), "schema_version 2"),
                                       (RecordDecodeError("bad magic"), "corrupt")])
def test_unreadable_record_is_404_and_compare_keeps_the_rest(error, msg):
    store = _Failing(error, {"r1": make_run(("a",), range(3)), "r2": make_run(("a",), range(3))})
    with pytest.raises(ApiError, match=msg) as e:
        api.record_impl(store, "r1", "a", 1)
    assert e.value.status == 404
    with pytest.warns(UserWarning, match=msg):
        out = api.compare_impl(store, "a", ["r1", "r2"])
    assert [m["step"] for m in out["maps"]] == [0, 2]
    assert any(msg in w for w in out["warnings"])


def test_record_without_neighbour_images_warns():
    rec = make_record().without_neighbour_images()
    with pytest.warns(UserWarning, match="neighbour images"):
        out = api.record_impl(MemoryStore({"r": [rec]}), "r", "a", 0)
    assert out["neighbours"] == [] and len(out["neighbour_teacher"]) == 8
    assert "neighbour images" in out["warnings"][0]


def test_compare(store):
    out = api.compare_impl(store, "a", ["r1", "r2"])
    assert out["runs"] == ["r1", "r2"] and out["names"] == ["first run", "r2"]
    assert out["steps"] == [1, 2, 3]
    assert [s["step"] for s in out["per_run"]["r2"]] == [1, 2, 3]
    assert out["common_instances"] == ["a"] and out["only_in"] == {"r1": ["b"], "r2": ["c"]}
    assert out["note"] == "runs track different instance sets; comparing the 1 they share"
    m = out["maps"][0]
    cls = make_record("a", 1).predicted
    assert m["step"] == 1 and m["class"] == cls and m["a"]["shape"] == [28, 28]
    a = make_record("a", 1).weights[cls, 0].astype(float)
    b = make_record("a", 1, seed=1).weights[cls, 0].astype(float)
    np.testing.assert_allclose(api.decode_map(m["diff"]), b - a, atol=m["diff"]["scale"] / 127)
    # the instance the maps are drawn over, encoded as the record route encodes it
    assert out["image"] == api.encode_image(make_record("a", 1).image)
    with pytest.raises(ApiError, match="instance 'b' not found in run 'r2'") as e:
        api.compare_impl(store, "b", ["r1", "r2"])
    assert e.value.status == 404
    with pytest.raises(ApiError, match="run 'r3' not found"):
        api.compare_impl(store, "a", ["r1", "r3"])


@pytest.mark.parametrize("runs", [["r1", "r2", "r1x"], ["r1"], ["r1", "r1"]])
def test_compare_impl_takes_exactly_two_runs(store, runs):
    # Every backend (TensorBoard, MLflow app, snapshot) reaches compare_impl; none may answer
    # for a third run by ignoring it.
    with pytest.raises(ApiError, match=r"expected exactly two distinct runs \(A, B\)") as e:
        api.compare_impl(store, "a", runs)
    assert e.value.status == 400


def test_run_without_data_is_not_reported_as_missing():
    empty = MemoryStore({"r1": make_run(("a",), range(2)), "bare": []})
    for call in (lambda r: api.instances_impl(empty, r), lambda r: api.timeline_impl(empty, r, "a"),
                 lambda r: api.compare_impl(empty, "a", ["r1", r])):
        with pytest.raises(ApiError, match="run 'bare' has no data|runs .*'bare'.* have no data") as e:
            call("bare")
        assert e.value.status == 404 and "not found" not in e.value.message
        with pytest.raises(ApiError, match="run 'nope' not found") as e:
            call("nope")
        assert e.value.status == 404
    # The listing leaves out a run without data rather than failing.
    assert [r["run"] for r in api.runs_impl(empty)["runs"]] == ["r1"]


def test_compare_same_instances_has_no_note():
    store = MemoryStore({"x": make_run(), "y": make_run(seed=2)})
    out = api.compare_impl(store, "b", ["x", "y"])
    assert out["note"] is None and out["only_in"] == {"x": [], "y": []}
    assert out["steps"] == [0, 1, 2] and len(out["maps"]) == 3


def test_snapshot_keys_and_values(store):
    snap = api.snapshot(store)
    assert snap["runs"] == api.runs_impl(store)
    assert snap["instances?kind=deepvid&run=r1"] == api.instances_impl(store, "r1")
    assert snap["timeline?instance=a&kind=deepvid&run=r1"] == api.timeline_impl(store, "r1", "a")
    assert snap["record?instance=b&kind=deepvid&run=r1&step=3"] == api.record_impl(store, "r1", "b", 3)
    assert snap["compare?instance=a&kind=deepvid&runs=r1%2Cr2"] == api.compare_impl(
        store, "a", ["r1", "r2"])
    assert "compare?instance=a&kind=deepvid&runs=r2%2Cr1" in snap
    assert "compare?instance=b&kind=deepvid&runs=r1%2Cr2" not in snap  # b is not in r2
    records = [k for k in snap if k.startswith("record?")]
    assert len(records) == 2 * 4 + 2 * 4
    json.dumps(snap, allow_nan=False)


def test_snapshot_key_escapes_hostile_ids():
    key = api.snapshot_key("timeline", {"run": "r&x=1", "instance": "<script>a b"})
    assert key == "timeline?instance=%3Cscript%3Ea+b&run=r%26x%3D1"
    assert urllib.parse.parse_qs(key.split("?", 1)[1]) == {"instance": ["<script>a b"],
                                                          "run": ["r&x=1"]}


def test_snapshot_restricted_runs(store):
    snap = api.snapshot(store, runs=["r2"])
    assert [r["run"] for r in snap["runs"]["runs"]] == ["r2"]
    assert not any("r1" in k for k in snap)
    with pytest.raises(ValueError, match="runs: 'zz' is not a run"):
        api.snapshot(store, runs=["zz"])


def test_snapshot_key_matches_url_search_params():
    # what `new URLSearchParams([["instance", "a~b*c d,e"]]).toString()` gives in a browser
    assert api.snapshot_key("timeline", {"instance": "a~b*c d,e"}) == (
        "timeline?instance=a%7Eb*c+d%2Ce")


# ---- kinds ------------------------------------------------------------------------------------
def _mixed_runs():
    """r1: DeepVID and Grad-CAM of a and b over 3 steps; r2: Grad-CAM only, of a, over 2."""
    return {"r1": make_run(("a", "b"), range(3))
            + [make_gradcam_record(i, s) for s in range(3) for i in ("a", "b")],
            "r2": [make_gradcam_record("a", s, seed=1) for s in range(2)]}


@pytest.fixture
def mixed():
    return MemoryStore(_mixed_runs())


def test_every_registered_kind_has_a_factory():
    from deepvid_plugin.core import kinds

    assert set(kinds.names()) == set(FACTORIES) and "gradcam" in FACTORIES


def test_kinds_route_lists_what_the_run_holds(mixed):
    out = api.kinds_impl(mixed, "r1")
    assert out["run"] == "r1" and out["warnings"] == []
    assert [k["kind"] for k in out["kinds"]] == ["deepvid", "gradcam"]
    deep, cam = out["kinds"]
    assert deep == {"kind": "deepvid", "subject": "instance", "headline": deep["headline"],
                    "higher_is_better": True, "subjects": 2, "steps": 3}
    assert cam["higher_is_better"] is False and "deletion" in cam["headline"]
    assert (cam["subjects"], cam["steps"]) == (2, 3)
    only = api.kinds_impl(mixed, "r2")["kinds"]
    assert [(k["kind"], k["subjects"], k["steps"]) for k in only] == [("gradcam", 1, 2)]
    with pytest.raises(ApiError, match="run 'nope' not found") as e:
        api.kinds_impl(mixed, "nope")
    assert e.value.status == 404


def test_runs_lists_a_run_without_deepvid_data(mixed):
    out = api.runs_impl(mixed)
    assert [(r["run"], r["instances"], r["steps"]) for r in out["runs"]] == [
        ("r1", 2, 3), ("r2", 1, 2)]


def test_parse_kind():
    assert api.parse_kind({}) is None and api.parse_kind({"kind": ""}) is None
    assert api.parse_kind({"kind": "gradcam"}) == "gradcam"
    with pytest.raises(ApiError, match="query parameter 'kind': expected a kind name") as e:
        api.parse_kind({"kind": "Grad-CAM"})
    assert e.value.status == 400
    with pytest.raises(ApiError, match="'zz_future' is not a kind") as e:
        api.parse_kind({"kind": "zz_future"})
    assert e.value.status == 404


def test_per_instance_routes_take_kind(mixed):
    ov = api.instances_impl(mixed, "r1", "gradcam")
    assert ov["kind"] == "gradcam" and [i["id"] for i in ov["instances"]] == ["a", "b"]
    steps = ov["instances"][0]["steps"]
    assert [s["step"] for s in steps] == [0, 1, 2]
    expect = make_gradcam_record("a", 1)
    assert steps[1]["predicted"] == expect.meta["pred"]
    assert steps[1]["headline"] == pytest.approx(expect.meta["evidence"]["deletion_auc"])
    # the default stays DeepVID's, unchanged
    assert api.instances_impl(mixed, "r1")["instances"][0]["steps"][0]["headline"] == (
        step_summary(make_record("a", 0), None)["headline"])
    tl = api.timeline_impl(mixed, "r2", "a", "gradcam")
    assert tl["kind"] == "gradcam" and [s["step"] for s in tl["steps"]] == [0, 1]
    with pytest.raises(ApiError, match="run 'r2' has no deepvid data"):
        api.instances_impl(mixed, "r2", "deepvid")
    assert api.instances_impl(mixed, "r2")["kind"] == "gradcam"  # without kind: the run's first


def test_gradcam_record_json(mixed):
    out = api.record_impl(mixed, "r1", "b", 2, "gradcam")
    rec = make_gradcam_record("b", 2)
    assert out["kind"] == "gradcam" and out["step"] == 2 and out["instance"] == "b"
    assert out["predicted"] == rec.meta["pred"] and out["label"] == rec.meta["label"]
    assert out["class_names"] == rec.meta["class_names"]
    assert out["image"]["shape"] == [1, 28, 28] and out["input"]["shape"] == [1, 28, 28]
    assert set(out["arrays"]) == {"cam_pred", "cam_true", "probs"}
    for name in ("cam_pred", "cam_true"):
        m = out["arrays"][name]
        assert m["shape"] == [28, 28]
        np.testing.assert_allclose(api.decode_map(m), rec.arrays[name], atol=m["scale"] / 127)
    np.testing.assert_allclose(out["arrays"]["probs"], rec.arrays["probs"], rtol=1e-4)
    ev = rec.meta["evidence"]
    assert out["fidelity"]["deletion_auc"] == ev["deletion_auc"]
    assert out["fidelity"]["deletion_curve"] == ev["deletion_curve"]  # full, curves included
    assert out["trustworthy"] is ev["better_than_random"]
    assert out["meta"] == {"pred": rec.meta["pred"], "layer": "features.3"}
    assert out["warnings"] == []
    json.dumps(out, allow_nan=False)
    with pytest.raises(ApiError, match="no gradcam record for instance 'b' at step 7") as e:
        api.record_impl(mixed, "r1", "b", 7, "gradcam")
    assert e.value.status == 404


def test_gradcam_record_without_cam_true_or_evidence():
    store = MemoryStore({"r": [make_gradcam_record("a", 0, cam_true=False, evidence=False,
                                                   label=None)]})
    out = api.record_impl(store, "r", "a", 0, "gradcam")
    assert set(out["arrays"]) == {"cam_pred", "probs"}
    assert out["fidelity"] == {} and out["trustworthy"] is None and out["label"] is None


def test_compare_takes_kind():
    store = MemoryStore({"x": [make_gradcam_record("a", s) for s in range(3)],
                         "y": [make_gradcam_record("a", s) for s in range(3)]})
    out = api.compare_impl(store, "a", ["x", "y"], "gradcam")
    assert out["kind"] == "gradcam" and out["steps"] == [0, 1, 2]
    assert [m["step"] for m in out["maps"]] == [0, 1, 2]  # same records: same class each step
    diff = api.decode_map(out["maps"][0]["diff"])
    assert out["maps"][0]["a"]["shape"] == [28, 28] and np.abs(diff).max() == 0
    assert out["image"] == api.encode_image(make_gradcam_record("a", 0).arrays["image"])


def test_route_table_serves_every_route(mixed):
    assert list(api.ROUTES) == ["runs", "kinds", "alerts", "instances", "timeline", "record",
                                "metrics", "compare"]
    body, status = api.respond(mixed, "kinds", {"run": "r1"})
    assert status == 200 and body == api.kinds_impl(mixed, "r1")
    body, status = api.respond(mixed, "record", {"run": "r1", "instance": "a", "step": "1",
                                                 "kind": "gradcam"})
    assert status == 200 and body == api.record_impl(mixed, "r1", "a", 1, "gradcam")
    body, status = api.respond(mixed, "record", {"run": "r1", "instance": "a", "step": "x"})
    assert status == 400 and "'step'" in body["error"]
    body, status = api.respond(mixed, "bogus", {})
    assert status == 404 and "unknown route 'bogus'" in body["error"] and "kinds" in body["error"]


def test_snapshot_holds_every_kind(mixed):
    snap = api.snapshot(mixed)
    assert snap["kinds?run=r1"] == api.kinds_impl(mixed, "r1")
    assert snap["instances?kind=deepvid&run=r1"] == api.instances_impl(mixed, "r1")  # r1's first
    assert snap["instances?kind=gradcam&run=r1"] == api.instances_impl(mixed, "r1", "gradcam")
    assert "instances?kind=deepvid&run=r2" not in snap  # r2 has no DeepVID data
    assert snap["record?instance=b&kind=gradcam&run=r1&step=2"] == api.record_impl(
        mixed, "r1", "b", 2, "gradcam")
    assert "timeline?instance=a&kind=gradcam&run=r2" in snap
    assert "compare?instance=a&kind=gradcam&runs=r1%2Cr2" in snap
    assert "compare?instance=a&kind=deepvid&runs=r1%2Cr2" not in snap  # none in r2 to compare
    records = [k for k in snap if k.startswith("record?")]
    assert len(records) == 2 * 3 + 2 * 3 + 2
    json.dumps(snap, allow_nan=False)


# ---- the same table through the TensorBoard plugin ---------------------------------------------
@pytest.fixture(scope="module")
def tb_get(tmp_path_factory):
    from tensorboard.backend import application
    from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins import base_plugin
    from werkzeug.test import Client

    from deepvid_plugin.tensorboard.plugin import DeepVIDPlugin
    from deepvid_plugin.tensorboard.summary import TensorBoardSink

    root = tmp_path_factory.mktemp("kinds")
    for run, records in _mixed_runs().items():
        with TensorBoardSink(str(root / run)) as sink:
            for rec in records:
                sink.write(rec, rec.step)
    mux = EventMultiplexer(tensor_size_guidance={"deepvid": 0})
    mux.AddRunsFromDirectory(str(root))
    mux.Reload()
    dp = MultiplexerDataProvider(mux, str(root))
    plugin = DeepVIDPlugin(base_plugin.TBContext(data_provider=dp, logdir=str(root)))
    client = Client(application.TensorBoardWSGI([plugin], data_provider=dp))

    def get(route, **params):
        r = client.get("/data/plugin/deepvid/" + api.snapshot_key(route, params))
        return r.status_code, json.loads(r.get_data(as_text=True))
    return get


@pytest.mark.parametrize("route,params", [
    ("runs", {}),
    ("kinds", {"run": "r1"}), ("kinds", {"run": "r2"}),
    ("instances", {"run": "r1"}), ("instances", {"run": "r1", "kind": "gradcam"}),
    ("timeline", {"run": "r2", "instance": "a", "kind": "gradcam"}),
    ("record", {"run": "r1", "instance": "b", "step": "2", "kind": "gradcam"}),
    ("record", {"run": "r1", "instance": "a", "step": "0"}),
    ("compare", {"instance": "a", "runs": "r1,r2", "kind": "gradcam"}),
])
def test_tensorboard_plugin_answers_as_the_memory_store(tb_get, mixed, route, params):
    status, body = tb_get(route, **params)
    expect, expect_status = api.respond(mixed, route, params)
    assert (status, expect_status) == (200, 200), body
    if route == "runs":  # TensorBoard names runs by directory; the memory store by key
        assert [(r["run"], r["instances"], r["steps"]) for r in body["runs"]] == [
            (r["run"], r["instances"], r["steps"]) for r in expect["runs"]]
        return
    assert body == expect


@pytest.mark.parametrize("route,params,status,msg", [
    ("instances", {"run": "r2", "kind": "deepvid"}, 404, "has no deepvid data"),
    ("instances", {"run": "r1", "kind": "zz_future"}, 404, "'zz_future' is not a kind"),
    ("timeline", {"run": "r1", "instance": "a", "kind": "BAD"}, 400, "query parameter 'kind'"),
    ("kinds", {"run": "nope"}, 404, "run 'nope' not found"),
])
def test_tensorboard_plugin_kind_errors(tb_get, route, params, status, msg):
    got, body = tb_get(route, **params)
    assert got == status and msg in body["error"]
