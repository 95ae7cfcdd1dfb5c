"""Resume: a Lightning run stopped after epoch 3 and resumed from its checkpoint to epoch 6 logs
steps 0-5 exactly once, of every kind (DeepVID every epoch, Grad-CAM every 2nd), with the records
an uninterrupted run logs (same VAE, same neighbours)."""

from __future__ import annotations

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from deepvid_plugin.callbacks import GradCAMExplainer
from deepvid_plugin.callbacks.lightning import DeepVIDLightningCallback
from deepvid_plugin.explain import GradCAM
from tests.callbacks.helpers import (
    N_NEIGHBOURS,
    kind_steps,
    records,
    small_cnn,
    summary_steps,
    tracked,
    train_slice,
)
from tests.callbacks.lit import LitDigits, loader, trainer

IDS = ["a", "b", "c"]


def _module():
    net = small_cnn()
    net.head[1] = nn.Identity()  # no Dropout: Lightning checkpoints don't carry the global RNG
    return LitDigits(model=net)


def _callback():
    xi, yi = tracked(3)
    return DeepVIDLightningCallback(
        xi, ids=IDS, labels=yi, train_data=train_slice()[0], vae_epochs=1,
        n_neighbours=N_NEIGHBOURS, progress=False,
        explainers=[GradCAMExplainer(GradCAM(evidence_steps=4), every_n_epochs=2)])


def _fit(logdir, max_epochs, ckpt_dir=None, ckpt_path=None):
    cb = _callback()
    callbacks = [cb]
    if ckpt_dir is not None:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_last=True))
    t = trainer(max_epochs=max_epochs, callbacks=callbacks,
                logger=TensorBoardLogger(logdir, name="run", version=0),
                enable_checkpointing=ckpt_dir is not None)
    t.fit(_module(), loader(shuffle=False), ckpt_path=ckpt_path)
    assert cb.failures == {}
    return cb


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    full = _fit(root / "full", 6)
    first = _fit(root / "resumed", 3, ckpt_dir=root / "ckpt")
    second = _fit(root / "resumed", 6, ckpt_path=str(root / "ckpt" / "last.ckpt"))
    return root, full, first, second


def test_every_step_exactly_once(runs):
    root, _, _, _ = runs
    assert summary_steps(root / "resumed" / "run") == {
        "version_0": {iid: [0, 1, 2, 3, 4, 5] for iid in IDS}}
    assert kind_steps(root / "resumed" / "run", "gradcam") == {
        "version_0": {iid: [0, 2, 4] for iid in IDS}}


def test_resumed_run_reuses_the_vae_from_the_checkpoint(runs):
    _, full, first, second = runs
    assert full.explanations.generator_source == "fitted"
    assert first.explanations.generator_source == "fitted"
    assert second.explanations.generator_source == "checkpoint"
    assert second.explanations.last_step == 5
    assert second.explanations.last_steps == {"deepvid": 5, "gradcam": 4}


def test_resumed_records_equal_the_uninterrupted_run(runs):
    root, _, _, _ = runs
    for step in (3, 4, 5):
        for iid in IDS:
            got = records(root / "resumed" / "run", "version_0", iid, step)
            want = records(root / "full" / "run", "version_0", iid, step)
            assert got.has_neighbour_images and got.neighbours.shape[0] > 0
            assert got == want, (iid, step)
    for iid in IDS:  # Grad-CAM's resumed step too
        got = records(root / "resumed" / "run", "version_0", iid, 4, kind="gradcam")
        want = records(root / "full" / "run", "version_0", iid, 4, kind="gradcam")
        assert got.arrays["cam_pred"].size > 0 and got == want, iid
    # the check can tell epochs apart (the model did train between them)
    a = records(root / "full" / "run", "version_0", "a", 3)
    b = records(root / "full" / "run", "version_0", "a", 5)
    assert a != b


def test_plain_callback_state_round_trip(tmp_path):
    from deepvid_plugin.callbacks import DeepVIDCallback

    xi, yi = tracked(3)
    kw = dict(ids=IDS, labels=yi, train_data=train_slice()[0], vae_epochs=1,
              n_neighbours=N_NEIGHBOURS, progress=False)
    with DeepVIDCallback(small_cnn(), xi, logdir=tmp_path / "a", **kw) as cb:
        cb.on_epoch_end(0)
        cb.on_epoch_end(1)
        state = cb.state_dict()
    assert (tmp_path / "a" / "deepvid-vae.pt").exists()
    with DeepVIDCallback(small_cnn(), xi, logdir=tmp_path / "a", **kw) as again:
        again.load_state_dict(state)
        assert again.on_epoch_end(1) == []  # already logged before the interruption
        assert len(again.on_epoch_end(2)) == 3
        assert again.explanations.generator_source == "checkpoint"
    # without the state, the VAE saved next to the logs is reused rather than refitted
    with DeepVIDCallback(small_cnn(), xi, logdir=tmp_path / "a", **kw) as third:
        third.prepare()
        assert third.explanations.generator_source == "logdir"
    with pytest.raises(ValueError, match="state: it tracks instances"):
        DeepVIDCallback(small_cnn(), xi[:2], ids=["x", "y"], generator=third.explanations.generator,
                        logdir=tmp_path / "b").load_state_dict(state)
