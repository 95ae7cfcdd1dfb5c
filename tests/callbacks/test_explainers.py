"""Several explanation kinds in one callback: each at its own cadence, to a real TensorBoard logdir
and an in-memory sink; resume covers every kind; Grad-CAM's hooks never outlive a call, even when
the model raises; one failing kind does not stop the others."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from deepvid_plugin.callbacks import (
    DeepVIDCallback,
    DeepVIDExplainer,
    DeepVIDWarning,
    GradCAMExplainer,
)
from deepvid_plugin.explain import GradCAM, PixelGenerator
from tests.callbacks.helpers import (
    N_NEIGHBOURS,
    ListSink,
    kind_steps,
    records,
    small_cnn,
    tracked,
)

GEN = PixelGenerator((1, 8, 8))
EPOCHS = 3


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def _two_kinds(logdir=None, sink=None, model=None, **kw):
    xi, yi = tracked()
    return DeepVIDCallback(model if model is not None else small_cnn(), xi, labels=yi,
                           generator=GEN, n_neighbours=N_NEIGHBOURS, every_n_epochs=2,
                           explainers=[GradCAMExplainer(GradCAM(evidence_steps=4),
                                                        every_n_epochs=1)],
                           logdir=logdir, sinks=[sink] if sink is not None else None,
                           progress=False, **kw)


def test_two_kinds_each_at_its_own_cadence(tmp_path):
    sink = ListSink()
    with _two_kinds(tmp_path, sink) as cb:
        per_epoch = [cb.on_epoch_end(epoch) for epoch in range(EPOCHS)]
    assert cb.failures == {}
    kinds_per_epoch = [sorted({r.kind for r in recs}) for recs in per_epoch]
    assert kinds_per_epoch == [["deepvid", "gradcam"], ["gradcam"], ["deepvid", "gradcam"]]
    ids = [str(i) for i in range(4)]
    # the in-memory sink got every record of both kinds, flushed once per explained epoch
    assert sink.steps("deepvid") == {i: [0, 2] for i in ids}
    assert sink.steps("gradcam") == {i: [0, 1, 2] for i in ids}
    assert sink.flushes == EPOCHS and sink.closed
    # TensorBoard's own data provider sees the same timelines, by kind
    assert kind_steps(tmp_path, "deepvid") == {".": {i: [0, 2] for i in ids}}
    assert kind_steps(tmp_path, "gradcam") == {".": {i: [0, 1, 2] for i in ids}}
    # and a gradcam record reads back with its maps at the input size and its evidence
    got = records(tmp_path, ".", "2", 1, kind="gradcam")
    assert got.kind == "gradcam" and got.step == 1
    assert got.arrays["cam_pred"].shape == (8, 8) and got.arrays["cam_true"].shape == (8, 8)
    assert got.meta["label"] == int(tracked()[1][2])
    assert got.meta["evidence"] is not None and "deletion_auc" in got.meta["evidence"]


def test_resume_covers_every_kind(tmp_path):
    with _two_kinds(tmp_path / "a") as cb:
        cb.on_epoch_end(0)
        cb.on_epoch_end(1)
        state = cb.state_dict()
    assert state["explainers"]["deepvid"]["last_step"] == 0
    assert state["explainers"]["gradcam"]["last_step"] == 1
    # the state survives a checkpoint file that refuses pickled code
    path = tmp_path / "state.pt"
    torch.save(state, path)
    state = torch.load(path, weights_only=True)
    sink = ListSink()
    with _two_kinds(sink=sink) as again:
        again.load_state_dict(state)
        assert again.on_epoch_end(0) == [] and again.on_epoch_end(1) == []  # logged before
        assert {r.kind for r in again.on_epoch_end(2)} == {"deepvid", "gradcam"}
        assert {r.kind for r in again.on_epoch_end(3)} == {"gradcam"}
    assert [(k, s) for k, _, s in sink.written] == (
        [("deepvid", 2)] * 4 + [("gradcam", 2)] * 4 + [("gradcam", 3)] * 4)


def test_resume_from_a_deepvid_only_state_of_version_1(tmp_path):
    """Checkpoints written before kinds existed still resume: their last step is DeepVID's."""
    x, _ = tracked()
    vae_state = {"version": 1, "last_step": 2, "ids": ["0", "1", "2", "3"], "failures": {}}
    sink = ListSink()
    with _two_kinds(sink=sink) as cb:
        cb.load_state_dict(vae_state)
        assert {r.kind for r in cb.on_epoch_end(2)} == {"gradcam"}  # deepvid logged step 2
        assert {r.kind for r in cb.on_epoch_end(4)} == {"deepvid", "gradcam"}
    assert x.shape[0] == 4


class _RaisesOnCall(torch.nn.Module):
    """A classifier whose ``fail_at``-th forward call raises (counted from when it is armed)."""

    def __init__(self, fail_at: int):
        super().__init__()
        self.net = small_cnn()
        self.fail_at = fail_at
        self.calls = 0
        self.armed = False

    def forward(self, x):
        if self.armed:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError(f"boom at call {self.calls}")
        return self.net(x)


@pytest.mark.parametrize("layer, fail_at", [(None, 1), (None, 2),
                                            ("net.features.3", 1), ("net.features.3", 2)])
def test_no_hook_left_after_an_exception(layer, fail_at):
    """Call 1 is the hooked forward, 2 the evidence (the default layer was found by the
    callback's early check, in its constructor). Wherever Grad-CAM is interrupted, no hook
    remains and the model, grad mode and RNGs are as they were."""
    model = _RaisesOnCall(fail_at)
    model.train()
    model.net.features[1].eval()  # a user's deliberately frozen BatchNorm
    xi, yi = tracked()
    cb = DeepVIDCallback(model, xi, labels=yi, explainers=[GradCAM(layer, evidence_steps=4)],
                         sinks=[ListSink()], on_error="raise")
    hooks = _hooks(model)
    flags = [m.training for m in model.modules()]
    rng = (torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    model.armed = True
    with pytest.raises(RuntimeError, match=f"boom at call {fail_at}"):
        cb.on_epoch_end(0)
    assert model.calls == fail_at  # it failed where this case says, inside Grad-CAM
    assert _hooks(model) == hooks == 0
    assert [m.training for m in model.modules()] == flags
    assert torch.is_grad_enabled()
    assert torch.equal(torch.random.get_rng_state(), rng[0])
    assert np.array_equal(np.random.get_state()[1], rng[1]) and random.getstate() == rng[2]
    # the same callback works once the model does
    model.armed = False
    assert {r.kind for r in cb.on_epoch_end(1)} == {"gradcam"}
    assert _hooks(model) == 0


def test_a_failing_kind_does_not_stop_the_others(monkeypatch):
    monkeypatch.delenv("DEEPVID_TESTING", raising=False)

    class BrokenExplainer:
        """A third-party explainer of a kind that fails at every call."""

        kind = "broken"
        every_n_epochs = 1

        def prepare(self, context):
            self.n = len(context.ids)

        def explain(self, model, step):
            raise ValueError("no maps today")

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    sink = ListSink()
    xi, yi = tracked()
    cb = DeepVIDCallback(small_cnn(), xi, labels=yi, generator=GEN, n_neighbours=N_NEIGHBOURS,
                         explainers=[BrokenExplainer()], sinks=[sink], progress=False)
    with pytest.warns(DeepVIDWarning) as caught:
        for epoch in range(4):
            assert {r.kind for r in cb.on_epoch_end(epoch)} == {"deepvid"}
    # warned once, switched off after 3 in a row; DeepVID went on at every epoch
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert "broken.explain failed (ValueError: no maps today)" in messages[0]
    assert "broken failed 3 times in a row and is switched off" in messages[1]
    assert cb.failures == {"broken.explain": 3}
    assert sink.steps("deepvid") == {str(i): [0, 1, 2, 3] for i in range(4)}


@pytest.mark.parametrize("kw, exc, message", [
    (dict(explainers=[GradCAM(), GradCAMExplainer()]), ValueError,
     r"explainers: expected one explainer per kind .*'gradcam', 'gradcam'"),
    (dict(explainers=[object()]), TypeError, r"explainers: expected explainers \(kind"),
    (dict(explainers="gradcam"), TypeError, "explainers: expected a list"),
    (dict(explainers=[GradCAM()], n_neighbours=64), ValueError,
     r"n_neighbours: a DeepVID setting of the shortcut, expected with generator="),
    (dict(explainers=[DeepVIDExplainer(generator=GEN)], generator=GEN), ValueError,
     "one explainer per kind"),
    (dict(explainers=[GradCAM()], every_n_epochs=0), ValueError,
     "every_n_epochs: expected an int >= 1, got 0"),
])
def test_bad_explainers(kw, exc, message):
    with pytest.raises(exc, match=message):
        DeepVIDCallback(small_cnn(), tracked()[0], sinks=[ListSink()], **kw)


def test_bare_engines_take_the_callback_cadence():
    from deepvid_plugin.explain import DeepVID

    cb = DeepVIDCallback(small_cnn(), tracked()[0], every_n_epochs=3,
                         explainers=[DeepVID(GEN, n_neighbours=16), GradCAM()],
                         sinks=[ListSink()])
    assert [(e.kind, e.every_n_epochs) for e in cb.explanations.explainers] == [
        ("deepvid", 3), ("gradcam", 3)]
    assert [e.kind for e in cb.explanations.due(3)] == ["deepvid", "gradcam"]
    assert cb.explanations.due(4) == []


@pytest.mark.e2e
def test_two_kinds_to_a_real_mlflow_server(mlflow_server_factory):
    """Both kinds' step files land under their own kind's folder of the MLflow run."""
    from deepvid_plugin.mlflow import layout

    server = mlflow_server_factory()
    client = server.client()
    run = client.create_run(client.create_experiment("two-kinds"))
    with _two_kinds(mlflow=run.info.run_id, tracking_uri=server.url) as cb:
        for epoch in range(EPOCHS):
            cb.on_epoch_end(epoch)
    assert cb.failures == {}
    listed = {}
    for kind in ("deepvid", "gradcam"):
        steps_dir = layout.paths(kind).steps
        listed[kind] = sorted(f.path for f in client.list_artifacts(run.info.run_id, steps_dir))
    assert listed == {"deepvid": [f"{layout.paths('deepvid').steps}/{s}.json" for s in (0, 2)],
                      "gradcam": [f"{layout.paths('gradcam').steps}/{s}.json"
                                  for s in range(EPOCHS)]}
