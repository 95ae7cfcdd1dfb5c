"""The backend-agnostic JSON API (deepvid_plugin/api.py) over an in-memory store."""

import base64
import dataclasses
import json
import urllib.parse

import numpy as np
import pytest

from deepvid_plugin import api
from deepvid_plugin.api import ApiError, MemoryStore
from deepvid_plugin.record import NewerSchemaError, RecordDecodeError
from tests.factories import make_record, make_run


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
    s = api.step_summary(rec, None)
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
    assert api.step_summary(rec, rec.predicted)["changed"] is False
    assert api.step_summary(rec, (rec.predicted + 1) % 10)["changed"] is True
    json.dumps(s, allow_nan=False)  # JSON-able as is


EVIDENCE_AUCS = ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc")


def test_step_summary_without_evidence_says_nothing_about_it():
    s = api.step_summary(make_record(step=2), None)
    assert not set(s["fidelity"]) & {*EVIDENCE_AUCS, "better_than_random", "trust_reason",
                                     "deletion_curve", "insertion_curve"}


@pytest.mark.parametrize("better", [True, False])
def test_step_summary_carries_the_evidence_compactly(better):
    rec = make_record(step=2, evidence=True, better_than_random=better, trustworthy=True)
    s = api.step_summary(rec, None)
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
    before = api.step_summary(old, None)
    before["fidelity"] = dict(old.fidelity)  # what the previous version stored
    size = lambda s: len(json.dumps(s, separators=(",", ":")))  # noqa: E731
    assert size(before) > 500
    assert size(api.step_summary(new, None)) - size(before) <= 65


def test_summary_fidelity_drops_non_finite_and_lists():
    out = api.summary_fidelity({"a": float("nan"), "b": [1.0], "c": 0.123456, "d": None,
                                "e": "why", "f": 3})
    assert out == {"c": 0.123, "e": "why", "f": 3}


def test_step_summary_thumb_uneven_size():
    s = api.step_summary(make_record(size=35, channels=3), None)
    assert s["thumb"]["shape"] == [12, 12]  # ceil(35/16)=3 -> 12 blocks, the last one short


def test_step_summary_rejects_bad_arguments():
    with pytest.raises(TypeError, match="record: expected an ExplanationRecord"):
        api.step_summary({"step": 1}, None)
    with pytest.raises(TypeError, match="previous_predicted"):
        api.step_summary(make_record(), "3")


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
    assert out == {"runs": [{"run": "r1", "name": "first run", "instances": 2, "steps": 4},
                            {"run": "r2", "name": "r2", "instances": 2, "steps": 4}],
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
    with pytest.raises(ApiError, match="no record for instance 'b' at step 9") as e:
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
    out = api.instances_impl(MemoryStore({"r": [old, new]}), "r")
    by_id = {i["id"]: i["steps"][0]["fidelity"] for i in out["instances"]}
    assert "deletion_auc" not in by_id["old"] and "deletion_auc" in by_id["new"]
    assert api.has_evidence(new.fidelity) and not api.has_evidence(old.fidelity)
    rec = api.record_impl(MemoryStore({"r": [old]}), "r", "old", 0)
    assert "deletion_curve" not in rec["fidelity"] and "input" in rec


class _Failing(MemoryStore):
    """A store whose stored bytes for one step are unreadable, as a real backend can find them."""

    def __init__(self, error, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.error = error

    def record(self, run, instance, step):
        if step == 1:
            raise self.error
        return super().record(run, instance, step)


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
        with pytest.raises(ApiError, match="run 'bare' has no DeepVID data") as e:
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
    assert snap["instances?run=r1"] == api.instances_impl(store, "r1")
    assert snap["timeline?instance=a&run=r1"] == api.timeline_impl(store, "r1", "a")
    assert snap["record?instance=b&run=r1&step=3"] == api.record_impl(store, "r1", "b", 3)
    assert snap["compare?instance=a&runs=r1%2Cr2"] == api.compare_impl(store, "a", ["r1", "r2"])
    assert "compare?instance=a&runs=r2%2Cr1" in snap
    assert "compare?instance=b&runs=r1%2Cr2" not in snap  # b is not tracked in r2
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
