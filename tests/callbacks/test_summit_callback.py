"""Summit in the callback: ``explainers=[SummitExplainer(...)]`` on a small digits CNN writes the
``summit`` kind to a real TensorBoard logdir, which the API serves as class rows with their
stability; and to a real MLflow server, with one stability metric per class."""

from __future__ import annotations

import pytest
import torch

from deepvid_plugin import api
from deepvid_plugin.callbacks import DeepVIDCallback
from deepvid_plugin.demo.digits import train_epoch
from deepvid_plugin.methods.summit import Summit, SummitExplainer
from tests.callbacks.helpers import data_provider, digits, small_cnn, tracked, train_slice

EPOCHS = 5
EVERY = 2  # explained at epochs 0, 2, 4


def _callback(model, **kw):
    d = digits()
    summit = Summit(d.x_test, d.y_test, layers=["features.0", "features.3"], per_class=5,
                    class_names=d.class_names)
    xi, yi = tracked()
    return DeepVIDCallback(model, xi, labels=yi,
                           explainers=[SummitExplainer(summit, every_n_epochs=EVERY)],
                           progress=False, **kw)


def _train(cb, model):
    x, y = train_slice()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with cb:
        for epoch in range(EPOCHS):
            train_epoch(model, opt, x, y, generator=torch.Generator().manual_seed(epoch))
            cb.on_epoch_end(epoch)
    assert cb.failures == {}


def test_summit_in_a_real_tensorboard_logdir(tmp_path):
    from deepvid_plugin.tensorboard.plugin import DataProviderStore

    model = small_cnn()
    _train(_callback(model, logdir=tmp_path), model)
    store = DataProviderStore(data_provider(tmp_path))
    run = store.runs()[0][0]
    assert store.kinds(run) == ["summit"]
    kinds_body = api.kinds_impl(store, run)
    assert [(k["kind"], k["subject"], k["subjects"], k["steps"]) for k in kinds_body["kinds"]] \
        == [("summit", "class", 10, 3)]
    body = api.instances_impl(store, run, kind="summit")
    rows = body["instances"]
    assert [r["id"] for r in rows] == [str(i) for i in range(10)]
    assert [r["label"] for r in rows] == list(range(10))
    for row in rows:
        steps = row["steps"]
        assert [s["step"] for s in steps] == [0, 2, 4]
        assert steps[0]["headline"] is None  # nothing to compare with at the first epoch
        assert all(0.0 <= s["headline"] <= 1.0 for s in steps[1:])
        assert all(s["headline"] == s["stability"] and s["nodes"] > 0 for s in steps[1:])
    # the model changes while it trains: some class's graph changes
    assert any(s["headline"] < 1.0 for r in rows for s in r["steps"][1:])
    rec = api.record_impl(store, run, "7", 4, kind="summit")
    assert rec["meta"]["stability"] == pytest.approx(rows[7]["steps"][2]["headline"], abs=1e-4)
    assert rec["meta"]["previous_step"] == 2
    assert rec["arrays"]["probe"]["shape"][0] == 5  # the class's probe thumbnails, put back
    assert len(rec["arrays"]["node_layer"]) == len(rec["arrays"]["node_channel"]) > 0


@pytest.mark.e2e
def test_summit_stability_is_one_run_level_metric_in_mlflow(mlflow_server_factory):
    from deepvid_plugin.mlflow import layout

    server = mlflow_server_factory()
    client = server.client()
    run = client.create_run(client.create_experiment("summit-metrics")).info.run_id
    model = small_cnn()
    _train(_callback(model, mlflow=run, tracking_uri=server.url), model)
    names = set(client.get_run(run).data.metrics)
    # one run-level number, not one per class (per-class numbers are opt-in: subject_metrics)
    assert names == {layout.mean_metric("summit", "stability")} == {"deepvid/summit/stability_mean"}
    assert layout.metric("summit", "stability", "3", subject_first=True) \
        == "deepvid/summit/3/stability"
    mean = client.get_metric_history(run, layout.mean_metric("summit", "stability"))
    assert sorted(m.step for m in mean) == [2, 4]
