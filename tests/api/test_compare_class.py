"""compare's ``class`` parameter: whose class the A and B maps show (A's prediction by default,
B's, the true label's, each run's own, or a class index), over an in-memory store."""

import dataclasses
import re

import numpy as np
import pytest

from deepvid_plugin import api
from deepvid_plugin.api import ApiError, MemoryStore
from deepvid_plugin.api.compare import class_map
from deepvid_plugin.core import kinds
from tests.factories import make_gradcam_record, make_record

LABEL = 6


def _predicting(rec, cls: int):
    """``rec`` (DeepVID) with the teacher's top-1 class forced to ``cls``."""
    probs = np.full_like(rec.teacher_probs, 0.01)
    probs[cls] = 1.0 - 0.01 * (len(probs) - 1)
    return dataclasses.replace(rec, teacher_probs=probs.astype(rec.teacher_probs.dtype))


def _mean_map(rec, cls: int) -> np.ndarray:
    return rec.weights[cls].astype(float).mean(0)


@pytest.fixture
def deepvid():
    """Run A predicts the label (6) at every step; run B predicts 6 at step 0, then 8."""
    a = [_predicting(make_record("x", s, label=LABEL), LABEL) for s in range(3)]
    b = [_predicting(make_record("x", s, label=LABEL, seed=1), LABEL if s == 0 else 8)
         for s in range(3)]
    return MemoryStore({"A": a, "B": b}), a, b


def _decode(enc):
    return api.decode_map(enc)


def _close(enc, expect):
    np.testing.assert_allclose(_decode(enc), expect, atol=max(enc["scale"], 1e-12) / 127 + 1e-9)


def test_default_is_a_and_equals_explicit_a(deepvid):
    store, ra, rb = deepvid
    default = api.compare_impl(store, "x", ["A", "B"])
    assert default == api.compare_impl(store, "x", ["A", "B"], cls="a")
    assert default["class"] == "a" and default["missing"] == []
    assert [(m["class_a"], m["class_b"]) for m in default["maps"]] == [(6, 6)] * 3
    # B's map is of A's prediction (6) even where B predicts 8
    _close(default["maps"][2]["b"], _mean_map(rb[2], 6))
    _close(default["maps"][2]["diff"], _mean_map(rb[2], 6) - _mean_map(ra[2], 6))


def test_b_label_and_index(deepvid):
    store, ra, rb = deepvid
    out = api.compare_impl(store, "x", ["A", "B"], cls="b")
    assert [(m["class_a"], m["class_b"]) for m in out["maps"]] == [(6, 6), (8, 8), (8, 8)]
    _close(out["maps"][1]["a"], _mean_map(ra[1], 8))
    out = api.compare_impl(store, "x", ["A", "B"], cls="label")
    assert [(m["class_a"], m["class_b"]) for m in out["maps"]] == [(6, 6)] * 3
    out = api.compare_impl(store, "x", ["A", "B"], cls=3)
    assert out["class"] == 3
    assert [(m["class_a"], m["class_b"]) for m in out["maps"]] == [(3, 3)] * 3
    _close(out["maps"][0]["b"], _mean_map(rb[0], 3))
    assert all(m["diff"] is not None for m in out["maps"])


def test_own_maps_each_prediction_and_drops_the_diff_where_they_differ(deepvid):
    store, ra, rb = deepvid
    out = api.compare_impl(store, "x", ["A", "B"], cls="own")
    assert out["class"] == "own"
    assert [(m["class_a"], m["class_b"]) for m in out["maps"]] == [(6, 6), (6, 8), (6, 8)]
    assert out["maps"][0]["diff"] is not None
    assert out["maps"][1]["diff"] is None and out["maps"][2]["diff"] is None
    _close(out["maps"][2]["a"], _mean_map(ra[2], 6))
    _close(out["maps"][2]["b"], _mean_map(rb[2], 8))


def test_label_without_label_says_why():
    a = [make_record("x", s, label=None) for s in range(2)]
    b = [make_record("x", s, label=None, seed=1) for s in range(2)]
    out = api.compare_impl(MemoryStore({"A": a, "B": b}), "x", ["A", "B"], cls="label")
    assert out["maps"] == []
    assert [m["step"] for m in out["missing"]] == [0, 1]
    assert "no true label" in out["missing"][0]["reason"]


def _gradcam(seed: int, pred: int, step: int):
    rec = make_gradcam_record("x", step, label=LABEL, seed=seed)
    return dataclasses.replace(rec, meta={**rec.meta, "pred": pred})


@pytest.fixture
def gradcam():
    a = [_gradcam(0, LABEL, s) for s in range(2)]
    b = [_gradcam(1, LABEL if s == 0 else 8, s) for s in range(2)]
    return MemoryStore({"A": a, "B": b}), a, b


def test_gradcam_own_and_label_keep_the_step_where_b_predicts_another_class(gradcam):
    store, ra, rb = gradcam
    # A's prediction: B holds no map of 6 at step 1 other than its true-class map, cam_true
    out = api.compare_impl(store, "x", ["A", "B"], "gradcam", "a")
    assert [(m["class_a"], m["class_b"]) for m in out["maps"]] == [(6, 6), (6, 6)]
    _close(out["maps"][1]["b"], rb[1].arrays["cam_true"].astype(float))
    own = api.compare_impl(store, "x", ["A", "B"], "gradcam", "own")
    assert [(m["class_a"], m["class_b"]) for m in own["maps"]] == [(6, 6), (6, 8)]
    _close(own["maps"][1]["b"], rb[1].arrays["cam_pred"].astype(float))
    assert own["maps"][1]["diff"] is None and own["maps"][0]["diff"] is not None
    label = api.compare_impl(store, "x", ["A", "B"], "gradcam", "label")
    _close(label["maps"][1]["b"], rb[1].arrays["cam_true"].astype(float))
    _close(label["maps"][1]["a"], ra[1].arrays["cam_pred"].astype(float))  # A is right: same map


def test_gradcam_class_it_holds_no_map_of_is_missing_with_a_reason(gradcam):
    store, _, _ = gradcam
    out = api.compare_impl(store, "x", ["A", "B"], "gradcam", 8)
    # neither run keeps a map of 8 at step 0; at step 1 B does (its prediction) but A does not
    assert out["maps"] == [] and [m["step"] for m in out["missing"]] == [0, 1]
    assert "run A's gradcam record holds no map of class '8'" in out["missing"][1]["reason"]


def test_gradcam_without_cam_true_falls_back_to_prediction_only():
    rec = make_gradcam_record("x", 0, label=LABEL, cam_true=False)
    rec = dataclasses.replace(rec, meta={**rec.meta, "pred": 2})
    assert class_map(kinds.as_record(rec), LABEL) is None
    assert class_map(kinds.as_record(rec), 2) is not None


@pytest.mark.parametrize("raw, match", [
    ("A", r"query parameter 'class': expected one of a, b, own, label or a class index "
          r"\(an integer\), got 'A'"),
    ("1.5", r"got '1\.5'"),
    ("10", r"query parameter 'class': expected a class index in \[0, 10\) .* got 10"),
    ("-1", r"got -1"),
])
def test_bad_class_is_400_naming_it(deepvid, raw, match):
    store, _, _ = deepvid
    body, status = api.respond(store, "compare", {"instance": "x", "runs": "A,B", "class": raw})
    assert status == 400
    assert re.search(match, body["error"]), body["error"]


def test_route_parses_class(deepvid):
    store, _, _ = deepvid
    body, status = api.respond(store, "compare", {"instance": "x", "runs": "A,B", "class": "own"})
    assert status == 200 and body == api.compare_impl(store, "x", ["A", "B"], cls="own")
    body, status = api.respond(store, "compare", {"instance": "x", "runs": "A,B", "class": "4"})
    assert status == 200 and body["class"] == 4
    with pytest.raises(ApiError, match="query parameter 'class'") as e:
        api.compare_impl(store, "x", ["A", "B"], cls="mine")
    assert e.value.status == 400


def test_snapshot_answers_the_default_and_own(deepvid):
    store, _, _ = deepvid
    snap = api.snapshot(store)
    assert snap["compare?instance=x&kind=deepvid&runs=A%2CB"] == api.compare_impl(store, "x", ["A", "B"])
    assert snap["compare?class=own&instance=x&kind=deepvid&runs=A%2CB"] == api.compare_impl(
        store, "x", ["A", "B"], cls="own")
    assert "compare?class=label&instance=x&runs=A%2CB" not in snap
