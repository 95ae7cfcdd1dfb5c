"""NetDissectExplainer and the ``netdissect`` kind: records that agree with the engine, a baseline
computed once on a copy (the user's model untouched), a round trip through a real TensorBoard
logdir and the JSON API (layers are the rows), MLflow metric names, and validation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from deepvid_plugin import api
from deepvid_plugin.core import kinds
from deepvid_plugin.core.record import Record
from deepvid_plugin.methods.netdissect import ConceptSet, NetDissect, NetDissectExplainer
from deepvid_plugin.methods.netdissect import kind as nd_kind
from deepvid_plugin.mlflow import hooks as mlflow_hooks

LAYERS = ["0", "2"]


@pytest.fixture(scope="module")
def probe():
    return ConceptSet.synthetic(n=200, size=16, seed=0)


def tiny_cnn(n_classes: int, seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 12, 3, padding=1, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, n_classes))


def train_some(model: nn.Module, probe: ConceptSet, steps: int = 30, seed: int = 0) -> None:
    """A few Adam steps on the probe set's own targets (its foreground shapes): enough for
    labels to switch and detectors to come and go between epochs."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    y = torch.as_tensor(probe.targets)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(probe), (32,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(probe.images[idx]), y[idx]).backward()
        opt.step()


def dissected_run(probe: ConceptSet, epochs=(0, 1, 2), every: int = 1) -> list[Record]:
    """Records of a tiny CNN dissected while it trains (what a callback would log)."""
    model = tiny_cnn(len(probe.target_names))
    ex = NetDissectExplainer(NetDissect(probe, LAYERS), every_n_epochs=every, n_thumbnails=16,
                             top_k=3)
    out = []
    for epoch in epochs:
        out += ex.explain(model, epoch)
        train_some(model, probe, seed=epoch)
    return out


def test_records_agree_with_the_engine_and_leave_the_model_alone(probe):
    model = tiny_cnn(len(probe.target_names))
    train_some(model, probe)
    model.train()
    before = copy.deepcopy(model.state_dict())
    ex = NetDissectExplainer(NetDissect(probe, LAYERS), n_thumbnails=16, top_k=3)
    records = ex.explain(model, 5)

    assert [r.subject for r in records] == LAYERS and {r.step for r in records} == {5}
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0

    truth = NetDissect(probe, LAYERS).dissect(model)
    chance = NetDissect(probe, LAYERS).baseline(model)
    for rec, res, base in zip(records, truth, chance, strict=True):
        kinds.prepare(rec)  # valid as written
        a, meta = rec.arrays, rec.meta
        assert meta["labels"] == list(res.labels) and meta["layer"] == res.layer
        assert [meta["labels"][i] for i in a["label"]] == [u["label"] for u in res.units]
        np.testing.assert_allclose(a["iou"], [u["iou"] for u in res.units], rtol=1e-6)
        assert a["detector"].tolist() == [int(u["detector"]) for u in res.units]
        assert meta["unique_detectors"] == res.unique_detectors
        np.testing.assert_array_equal(a["top_probe"], res.top_images)
        assert a["baseline_unique"].tolist() == list(base.unique_detectors.values())
        u = res.shape[0]
        assert a["top_thumbs"].shape == (u, 3) and a["top_masks"].shape == (u, 3, 16, 16)
        assert a["probe_images"].shape == (16, 3, 16, 16) and a["probe_images"].dtype == np.uint8
        summary = kinds.summarize(rec)
        assert summary["headline"] == sum(res.unique_detectors.values())
        assert summary["baseline"] == base.unique_detectors


def test_masks_are_the_units_thresholded_maps(probe):
    """The stored mask of a unit on a thumbnail = its upsampled map above its threshold."""
    model = tiny_cnn(len(probe.target_names))
    nd = NetDissect(probe, ["0"])
    rec = NetDissectExplainer(nd, n_thumbnails=16, top_k=2, baseline=False).explain(model, 0)[0]
    thr = nd.dissect(model)[0].thresholds
    p = rec.arrays["probe_index"]
    with torch.no_grad():
        acts = model[0](probe.images[torch.from_numpy(p).long()])  # (P, U, 16, 16)
    peak = acts.amax((2, 3))
    checked = 0
    for unit in range(acts.shape[1]):
        order = torch.argsort(peak[:, unit], descending=True)[:2].numpy()
        assert set(rec.arrays["top_thumbs"][unit]) == set(order)
        for t, thumb in enumerate(rec.arrays["top_thumbs"][unit]):
            want = (acts[thumb, unit] > thr[unit]).numpy()
            np.testing.assert_array_equal(rec.arrays["top_masks"][unit, t].astype(bool), want)
            checked += 1
    assert checked == 2 * acts.shape[1]
    assert "baseline_unique" not in rec.arrays  # baseline=False stores none


def test_baseline_is_computed_once_and_survives_a_resume(probe, monkeypatch):
    calls = []
    original = NetDissect.baseline

    def spy(self, *args, **kw):
        calls.append(1)
        return original(self, *args, **kw)

    monkeypatch.setattr(NetDissect, "baseline", spy)
    model = tiny_cnn(len(probe.target_names))
    ex = NetDissectExplainer(NetDissect(probe, LAYERS), n_thumbnails=8)
    first = ex.explain(model, 0)
    train_some(model, probe)
    second = ex.explain(model, 5)
    assert len(calls) == 1
    for a, b in zip(first, second, strict=True):
        for name in nd_kind.PER_SUBJECT:
            np.testing.assert_array_equal(a.arrays[name], b.arrays[name])

    state = torch.load(_saved(ex.state_dict()), weights_only=True)
    resumed = NetDissectExplainer(NetDissect(probe, LAYERS), n_thumbnails=8)
    resumed.load_state_dict(state)
    third = resumed.explain(model, 10)
    assert len(calls) == 1  # not recomputed after the resume
    for a, b in zip(first, third, strict=True):
        np.testing.assert_array_equal(a.arrays["baseline_iou"], b.arrays["baseline_iou"])


def _saved(state):
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


def test_round_trip_through_tensorboard_and_the_api(probe, tmp_path):
    from deepvid_plugin.tensorboard.plugin import DataProviderStore
    from deepvid_plugin.tensorboard.summary import TensorBoardSink
    from tests.callbacks.helpers import data_provider

    records = dissected_run(probe)
    assert records
    with TensorBoardSink(str(tmp_path / "run")) as sink:
        for r in records:
            sink.write(r, r.step)
    store = DataProviderStore(data_provider(tmp_path))
    for r in records:
        assert store.record("run", r.subject, r.step, kind="netdissect") == r

    body, status = api.respond(store, "kinds", {"run": "run"})
    assert status == 200
    assert [(k["kind"], k["subject"], k["subjects"], k["steps"]) for k in body["kinds"]] == [
        ("netdissect", "layer", len(LAYERS), 3)]
    body, status = api.respond(store, "instances", {"run": "run", "kind": "netdissect"})
    assert status == 200 and [row["id"] for row in body["instances"]] == LAYERS
    for row in body["instances"]:
        mine = [r for r in records if r.subject == row["id"]]
        assert [s["step"] for s in row["steps"]] == [0, 1, 2]
        assert [s["headline"] for s in row["steps"]] == [
            sum(r.meta["unique_detectors"].values()) for r in mine]
        assert [s["unit_label"] for s in row["steps"]] == [r.arrays["label"].tolist()
                                                            for r in mine]
        assert row["steps"][0]["baseline"] is not None
    body, status = api.respond(store, "record", {"run": "run", "instance": "2", "step": "1",
                                                 "kind": "netdissect"})
    assert status == 200
    masks = body["arrays"]["top_masks"]
    assert masks["shape"] == [12, 3, 16, 16]
    assert body["arrays"]["probe_images"]["shape"] == [16, 3, 16, 16]
    assert body["meta"]["labels"] == list(probe.labels)


def test_mlflow_metrics_name_the_layer():
    from deepvid_plugin.mlflow import layout
    from tests.factories import make_netdissect_record

    rec = make_netdissect_record("layer4.1", 7)
    summary = kinds.summarize(rec)
    got = mlflow_hooks.metrics(nd_kind.KIND, rec, summary)
    assert got["unique_detectors"] == summary["headline"] == sum(rec.meta["unique_detectors"]
                                                                  .values())
    assert got["unique_detectors_color"] == rec.meta["unique_detectors"]["color"]
    assert mlflow_hooks.of(nd_kind.KIND).headline_metric == "unique_detectors"
    # a layer kind's metrics name the layer first (MLflowHooks.subject_first_metrics)
    assert mlflow_hooks.of(nd_kind.KIND).subject_first_metrics is True
    assert layout.metric("netdissect", "unique_detectors", layout.instance_key("layer4.1"),
                         mlflow_hooks.of(nd_kind.KIND).subject_first_metrics) \
        == "deepvid/netdissect/layer4.1/unique_detectors"


def test_bad_input_names_the_argument(probe):
    nd = NetDissect(probe, ["0"])
    with pytest.raises(TypeError, match="netdissect: expected"):
        NetDissectExplainer("not an engine")
    with pytest.raises(ValueError, match="n_thumbnails: expected at most 127, got 200"):
        NetDissectExplainer(nd, n_thumbnails=200)
    with pytest.raises(ValueError, match="every_n_epochs"):
        NetDissectExplainer(nd, every_n_epochs=0)
    rec = NetDissectExplainer(nd, n_thumbnails=4, baseline=False).explain(
        tiny_cnn(len(probe.target_names)), 0)[0]
    bad = Record(kind="netdissect", subject="0", step=0,
                 arrays={**rec.arrays, "label": np.full(8, 999)}, meta=rec.meta)
    with pytest.raises(ValueError, match=r"label: expected label indices in \[0, 60\)"):
        kinds.prepare(bad)
    meta = {**rec.meta, "unique_detectors": {"color": 1}}
    with pytest.raises(ValueError, match="meta\\['unique_detectors'\\]"):
        kinds.prepare(Record(kind="netdissect", subject="0", step=0, arrays=rec.arrays,
                             meta=meta))


def test_mlflow_sink_logs_unique_detectors_per_layer(mlflow_server, probe):
    import uuid

    from deepvid_plugin.mlflow.sink import MLflowSink

    client = mlflow_server.client()
    exp = client.create_experiment(f"netdissect-{uuid.uuid4().hex}")
    run = client.create_run(exp).info.run_id
    records = dissected_run(probe, epochs=(0, 1))
    # per-layer numbers are opt-in (subject_metrics=True): by default MLflow gets the run-level
    # summaries only (mlflow/selection.py)
    with MLflowSink(run, client=client, viewer_every=0, log_images=False,
                    subject_metrics=True) as sink:
        for r in records:
            sink.write(r, r.step)
    for layer in LAYERS:
        history = client.get_metric_history(run, f"deepvid/netdissect/{layer}/unique_detectors")
        want = [(r.step, sum(r.meta["unique_detectors"].values())) for r in records
                if r.subject == layer]
        assert sorted((m.step, m.value) for m in history) == want
