"""Network Dissection in the training callback: ``explainers=[NetDissectExplainer(...)]`` on a
tiny CNN writes one ``netdissect`` record per layer per explained epoch to a real TensorBoard
logdir, the JSON API serves the layers as rows, and the model is left as it was."""

from __future__ import annotations

import copy

import torch

from deepvid_plugin import api
from deepvid_plugin.callbacks import DeepVIDCallback
from deepvid_plugin.methods.netdissect import ConceptSet, NetDissect, NetDissectExplainer
from tests.callbacks.helpers import data_provider, kind_steps
from tests.methods.netdissect.test_explainer import LAYERS, tiny_cnn, train_some

EPOCHS = 5


def test_callback_writes_layers_every_n_epochs(tmp_path):
    from deepvid_plugin.tensorboard.plugin import DataProviderStore

    probe = ConceptSet.synthetic(n=200, size=16, seed=1)
    model = tiny_cnn(len(probe.target_names))
    explainer = NetDissectExplainer(NetDissect(probe, LAYERS), every_n_epochs=2, n_thumbnails=8)
    with DeepVIDCallback(model, probe.images[:4], labels=probe.targets[:4].tolist(),
                         class_names=list(probe.target_names), explainers=[explainer],
                         logdir=tmp_path, progress=False) as cb:
        per_epoch = []
        for epoch in range(EPOCHS):
            train_some(model, probe, steps=5, seed=epoch)
            before = copy.deepcopy(model.state_dict())
            per_epoch.append(cb.on_epoch_end(epoch))
            assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
            assert model.training  # train_some left it in training mode; so must the callback
    assert cb.failures == {}
    assert [sorted({(r.kind, r.subject) for r in recs}) for recs in per_epoch] == [
        [("netdissect", layer) for layer in LAYERS] if e % 2 == 0 else [] for e in range(EPOCHS)]
    assert kind_steps(tmp_path, "netdissect") == {".": {layer: [0, 2, 4] for layer in LAYERS}}

    store = DataProviderStore(data_provider(tmp_path))
    body, status = api.respond(store, "instances", {"run": ".", "kind": "netdissect"})
    assert status == 200
    assert [row["id"] for row in body["instances"]] == LAYERS
    assert body["class_names"] == list(probe.target_names)
    for row in body["instances"]:
        assert [s["step"] for s in row["steps"]] == [0, 2, 4]
        assert all(s["headline"] == float(sum(s["unique"].values())) for s in row["steps"])
        assert row["steps"][-1]["baseline"] is not None
    body, status = api.respond(store, "record", {"run": ".", "instance": LAYERS[1], "step": "4",
                                                 "kind": "netdissect"})
    assert status == 200 and body["meta"]["layer"] == LAYERS[1]
    assert body["arrays"]["top_masks"]["shape"][0] == 12  # one row per unit of layer "2"
