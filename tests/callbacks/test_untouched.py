"""Training is untouched: a run with the callback at every epoch ends bitwise-identical (params,
buffers incl. BatchNorm statistics, optimizer state) to the same run without it, with DeepVID
alone and with DeepVID and Grad-CAM (which hooks the model and takes gradients) together."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.nn import functional as F

from deepvid_plugin.callbacks import DeepVIDCallback
from deepvid_plugin.explain import GradCAM
from tests.callbacks.helpers import (
    N_NEIGHBOURS,
    assert_same_state,
    fitted_vae,
    kind_steps,
    optimizer_state,
    small_cnn,
    summary_steps,
    tracked,
    train_slice,
)

EPOCHS = 3


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def _plain_run(logdir=None, disturb=False, gradcam=False):
    """Plain loop; the user keeps the first BatchNorm frozen in eval mode on purpose."""
    x, y = train_slice()
    model = small_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    cb = None
    if logdir is not None:
        xi, yi = tracked()
        # train_data: the VAE is fitted inside the run, which must not disturb it either
        cb = DeepVIDCallback(model, xi, labels=yi, train_data=x, vae_epochs=1,
                             n_neighbours=N_NEIGHBOURS, logdir=logdir, progress=False,
                             explainers=[GradCAM(evidence_steps=4)] if gradcam else None)
    for epoch in range(EPOCHS):
        model.train()
        model.features[1].eval()
        for idx in torch.randperm(len(y)).split(64):  # global RNG: the callback must restore it
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if disturb:
            torch.rand(1)  # what a callback that forgot to restore the RNG would do
        if cb is not None:
            hooks = _hooks(model)
            records = cb.on_epoch_end(epoch)
            assert len(records) == (8 if gradcam else 4)
            assert model.training and not model.features[1].training
            assert all(m.training for m in model.modules() if m is not model.features[1])
            assert _hooks(model) == hooks
            assert torch.is_grad_enabled()
    if cb is not None:
        cb.close()
        assert cb.failures == {}
    return model, opt, torch.random.get_rng_state()


@pytest.mark.parametrize("gradcam", [False, True], ids=["deepvid", "deepvid+gradcam"])
def test_plain_loop_training_is_bitwise_untouched(tmp_path, gradcam):
    torch.manual_seed(123)
    ref_model, ref_opt, ref_rng = _plain_run()
    torch.manual_seed(123)
    model, opt, rng = _plain_run(tmp_path, gradcam=gradcam)
    assert_same_state(ref_model.state_dict(), model.state_dict(), "model")
    assert_same_state(optimizer_state(ref_opt), optimizer_state(opt), "optimizer")
    assert torch.equal(ref_rng, rng)
    # ...and the callback did its job: every epoch of every instance is in TensorBoard
    steps = summary_steps(tmp_path)
    assert steps == {".": {str(i): list(range(EPOCHS)) for i in range(4)}}
    if gradcam:
        assert kind_steps(tmp_path, "gradcam") == {
            ".": {str(i): list(range(EPOCHS)) for i in range(4)}}


def _lightning_run(tmp_path, with_callback: bool):
    from lightning.pytorch.loggers import TensorBoardLogger

    from deepvid_plugin.callbacks.lightning import DeepVIDLightningCallback
    from tests.callbacks.lit import LitDigits, loader, trainer

    vae = fitted_vae()  # seeds the global RNG itself: before the run's seed
    pl.seed_everything(7, workers=True)
    module = LitDigits()
    callbacks = []
    if with_callback:
        xi, yi = tracked()
        callbacks.append(DeepVIDLightningCallback(xi, labels=yi, generator=vae,
                                                  n_neighbours=N_NEIGHBOURS, progress=False,
                                                  explainers=[GradCAM(evidence_steps=4)]))
    t = trainer(max_epochs=EPOCHS, callbacks=callbacks,
                logger=TensorBoardLogger(tmp_path, name="lit", version=0))
    t.fit(module, loader())
    if with_callback:
        assert callbacks[0].failures == {}
    return module, t.optimizers[0]


def test_lightning_training_is_bitwise_untouched(tmp_path):
    ref_module, ref_opt = _lightning_run(tmp_path / "ref", with_callback=False)
    module, opt = _lightning_run(tmp_path / "cb", with_callback=True)
    assert_same_state(ref_module.state_dict(), module.state_dict(), "module")
    assert_same_state(optimizer_state(ref_opt), optimizer_state(opt), "optimizer")
    steps = summary_steps(tmp_path / "cb" / "lit")
    assert steps == {"version_0": {str(i): list(range(EPOCHS)) for i in range(4)}}
    assert kind_steps(tmp_path / "cb" / "lit", "gradcam") == steps


def test_the_comparison_can_fail(tmp_path):
    """Control: one stray draw from the global RNG during training is caught by these checks."""
    torch.manual_seed(123)
    ref_model, _, _ = _plain_run()
    torch.manual_seed(123)
    model, _, _ = _plain_run(disturb=True)
    try:
        assert_same_state(ref_model.state_dict(), model.state_dict(), "model")
    except AssertionError:
        return
    raise AssertionError("a disturbed run compared equal: the check is blind")
