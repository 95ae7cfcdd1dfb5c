"""SummitExplainer and the ``summit`` kind: records that round-trip, graphs equal to the engine's,
stability across epochs and across a resume, probe thumbnails stored once per class, validation,
step summaries and the MLflow metric."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from deepvid_plugin.api import MemoryStore, instances_impl, record_impl
from deepvid_plugin.core import kinds
from deepvid_plugin.core.explainer import ExplainContext, is_explainer
from deepvid_plugin.core.record import Record
from deepvid_plugin.demo.digits import DigitsCNN, load_digits, train_epoch
from deepvid_plugin.methods.summit import Summit, SummitExplainer
from deepvid_plugin.methods.summit.kind import graph_of
from deepvid_plugin.mlflow import hooks as mlflow_hooks
from tests.factories import make_summit_record

LAYERS = ["features.0", "features.3"]


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _summit(digits, **kw):
    return Summit(digits.x_test, digits.y_test, layers=LAYERS, per_class=6, **kw)


def _epochs(digits, explainer, epochs, model=None, start=0):
    """Explain at each epoch, training one epoch (on a slice) in between; the records per epoch."""
    torch.manual_seed(0)
    model = model if model is not None else DigitsCNN(width=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = []
    for epoch in range(start, start + epochs):
        out.append(explainer.explain(model, epoch))
        train_epoch(model, opt, digits.x_train[:300], digits.y_train[:300],
                    generator=torch.Generator().manual_seed(epoch))
    return model, out


def test_records_hold_the_engines_graph(digits):
    summit = _summit(digits)
    explainer = SummitExplainer(summit, every_n_epochs=2)
    assert is_explainer(explainer) and explainer.kind == "summit"
    torch.manual_seed(0)
    model = DigitsCNN(width=8)
    records = explainer.explain(model, 4)
    result = summit.aggregate(model)
    assert [r.subject for r in records] == [str(c) for c in range(10)]
    data_index = {}  # probe reference -> index into data, class-major as the kind documents
    labels = summit.labels[summit.indices]
    for c in range(10):
        for i in summit.indices[labels == c].tolist():
            data_index[len(data_index)] = i
    for ci, rec in enumerate(records):
        assert rec.kind == "summit" and rec.step == 4 and rec.meta["label"] == ci
        assert Record.decode(rec.encode()) == rec
        kinds.prepare(rec)  # valid for its kind
        want, got = result.graph(ci), graph_of(rec)
        assert want["nodes"] and want["edges"]
        assert [e["source"] for e in got["edges"]] == [e["source"] for e in want["edges"]]
        assert [e["count"] for e in got["edges"]] == [e["count"] for e in want["edges"]]
        np.testing.assert_allclose([e["weight"] for e in got["edges"]],
                                   [e["weight"] for e in want["edges"]], rtol=1e-6)
        for g, w in zip(got["nodes"], want["nodes"], strict=True):
            assert (g["id"], g["activation"]) == (w["id"], w["activation"])
            assert g["pagerank"] == pytest.approx(w["pagerank"], rel=1e-6)
            assert [data_index[r] for r in g["examples"]] == w["examples"]
        strip = np.concatenate([result.activation[layer][ci] for layer in result.layers])
        np.testing.assert_array_equal(rec.arrays["activation"], strip)
        assert rec.meta["stability"] is None and rec.meta["previous_step"] is None
        assert rec.meta["layers"] == [*LAYERS, "head.2"]


def test_probe_thumbnails_are_the_class_images(digits):
    summit = _summit(digits)
    rec = SummitExplainer(summit).explain(DigitsCNN(width=8), 0)[3]
    mine = summit.indices[summit.labels[summit.indices] == 3]
    probe = rec.arrays["probe"]
    assert probe.dtype == np.uint8 and probe.shape == (len(mine), 1, 8, 8)
    x = digits.x_test[mine].numpy()
    lo, hi = x.min(axis=(1, 2, 3), keepdims=True), x.max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(probe, np.round((x - lo) / (hi - lo) * 255), atol=1)
    np.testing.assert_allclose(rec.arrays["image"], x[0], atol=1e-3)
    assert rec.meta["probe_counts"][3] == len(mine)


def test_large_images_are_stored_as_small_thumbnails():
    from deepvid_plugin.methods.summit.explainer import _thumbnails

    x = torch.rand(3, 3, 96, 64)
    t = _thumbnails(x, 32)
    assert t.shape == (3, 3, 32, 21) and t.min() == 0 and t.max() == 255


def test_stability_is_the_engines_and_survives_a_resume(digits):
    summit = _summit(digits)
    explainer = SummitExplainer(summit, every_n_epochs=1)
    model, per_epoch = _epochs(digits, explainer, 3)
    results = []
    torch.manual_seed(0)
    replay = DigitsCNN(width=8)
    opt = torch.optim.SGD(replay.parameters(), lr=0.1)
    for epoch in range(3):  # the same training, aggregated by the engine itself
        results.append(summit.aggregate(replay))
        train_epoch(replay, opt, digits.x_train[:300], digits.y_train[:300],
                    generator=torch.Generator().manual_seed(epoch))
    for epoch in (1, 2):
        want = results[epoch].stability(results[epoch - 1])
        got = {r.subject: r.meta["stability"] for r in per_epoch[epoch]}
        assert got and got == pytest.approx(want)
        assert {r.meta["previous_step"] for r in per_epoch[epoch]} == {epoch - 1}
    # not every class keeps its graph while the model learns
    assert any(r.meta["stability"] < 1 for recs in per_epoch[1:] for r in recs)

    # resume: a fresh explainer given the state compares with the graph logged before
    state = explainer.state_dict()
    buf = io.BytesIO()  # a checkpoint that refuses pickled code must still hold the state
    torch.save(state, buf)
    buf.seek(0)
    resumed = SummitExplainer(summit, every_n_epochs=1)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    fresh = SummitExplainer(summit, every_n_epochs=1)
    again = resumed.explain(model, 3)
    continued = explainer.explain(model, 3)
    assert [r.meta["stability"] for r in again] == [r.meta["stability"] for r in continued]
    assert all(r.meta["previous_step"] == 2 for r in again)
    assert all(r.meta["stability"] is None for r in fresh.explain(model, 3))


def test_bad_state_and_arguments_are_named(digits):
    with pytest.raises(TypeError, match="summit: expected"):
        SummitExplainer("not a summit")
    with pytest.raises(ValueError, match="every_n_epochs"):
        SummitExplainer(_summit(digits), every_n_epochs=0)
    with pytest.raises(ValueError, match="state: expected"):
        SummitExplainer(_summit(digits)).load_state_dict({"previous": {"0": ["a"]}})


def test_callback_class_names_are_used_when_the_engine_has_none(digits):
    names = tuple(f"digit {i}" for i in range(10))
    explainer = SummitExplainer(_summit(digits))
    explainer.prepare(ExplainContext(x=digits.x_test[:2], ids=("a", "b"), class_names=names))
    recs = explainer.explain(DigitsCNN(width=8), 0)
    assert [r.subject for r in recs] == list(names)
    assert recs[0].meta["class_names"] == list(names)
    bad = SummitExplainer(_summit(digits))
    bad.prepare(ExplainContext(x=digits.x_test[:2], ids=("a", "b"), class_names=("x", "y")))
    with pytest.raises(ValueError, match="class_names"):
        bad.explain(DigitsCNN(width=8), 0)


# ---- the kind ----------------------------------------------------------------------------------
def test_summary_headline_is_the_stability():
    first, later = make_summit_record("cat", 0), make_summit_record("cat", 3)
    s0, s3 = kinds.summarize(first), kinds.summarize(later)
    assert s0["headline"] is None and s0["stability"] is None
    assert s3["headline"] == pytest.approx(later.meta["stability"], abs=1e-4)
    assert s3["nodes"] == len(later.arrays["node_layer"]) > 0
    spec = kinds.get("summit")
    assert spec.subject == "class" and spec.higher_is_better
    assert set(spec.per_subject) == {"probe", "image"}
    assert mlflow_hooks.metrics(spec, later, s3) == {"stability": later.meta["stability"]}
    assert mlflow_hooks.metrics(spec, first, s0) == {}  # no number at the first epoch


@pytest.mark.parametrize(("change", "match"), [
    (lambda a, m: a.update(node_channel=np.array([99] * len(a["node_channel"]))), "node_channel"),
    (lambda a, m: m.update(stability=1.5), "stability"),
    (lambda a, m: a.update(edge_target=a["edge_target"] + 100), "edge_target"),
    (lambda a, m: a.update(activation=a["activation"][:-1]), "activation"),
    (lambda a, m: m.update(channels=[8, 8, 3]), "channels"),
    (lambda a, m: a.update(probe=a["probe"][:1]), "probe"),
    (lambda a, m: m.update(label=12), "label"),
])
def test_validation_names_the_problem(change, match):
    rec = make_summit_record("cat", 1)
    arrays, meta = dict(rec.arrays), dict(rec.meta)
    change(arrays, meta)
    bad = Record(kind="summit", subject="cat", step=1, arrays=arrays, meta=meta)
    with pytest.raises(ValueError, match=match):
        kinds.prepare(bad)


def test_api_serves_class_rows_and_records():
    recs = [make_summit_record(c, s, n_classes=3, class_names=["cat", "dog", "eel"])
            for s in (0, 5) for c in ("cat", "dog")]
    store = MemoryStore({"r": recs})
    body = instances_impl(store, "r", kind="summit")
    assert [i["id"] for i in body["instances"]] == ["cat", "dog"]
    assert [s["headline"] is None for s in body["instances"][0]["steps"]] == [True, False]
    rec = record_impl(store, "r", "dog", 5, kind="summit")
    assert rec["kind"] == "summit" and rec["meta"]["layers"] == ["features.0", "features.3",
                                                                 "head.2"]
    assert rec["arrays"]["node_channel"] == recs[3].arrays["node_channel"].tolist()
    assert rec["arrays"]["probe"]["shape"] == [3, 1, 28, 28]  # put back though stored once
