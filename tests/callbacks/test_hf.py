"""DeepVIDTrainerCallback: a HuggingFace Trainer run explained at epoch or step cadence, written
where ``report_to`` says (its own logdir otherwise), checked early."""

import subprocess
import sys

import pytest
import torch

from tests.callbacks.helpers import kind_steps
from tests.callbacks.hf_helpers import N_CLASSES, SIZE, data, train, vit

pytest.importorskip("transformers")


def _cb(**kwargs):
    from deepvid_plugin.callbacks.hf import DeepVIDTrainerCallback
    from deepvid_plugin.explain import GradCAM

    x, y = data(seed=1)
    kwargs.setdefault("explainers", [GradCAM(evidence_steps=3)])
    return DeepVIDTrainerCallback(x[:3], labels=y[:3], **kwargs)


def test_epochs_into_the_trainers_tensorboard_run(tmp_path):
    model = vit()
    cb = _cb(model=model, class_names=["a", "b", "c"])
    train(model, tmp_path, cb, ["tensorboard"])
    [run] = (tmp_path / "runs").iterdir()  # the Trainer's own run directory, shared
    assert len(list(run.glob("events.out.tfevents.*"))) == 2  # its writer and ours
    assert kind_steps(tmp_path / "runs", "gradcam") == {run.name: {"0": [0, 1], "1": [0, 1],
                                                                   "2": [0, 1]}}
    assert all(r.meta["layer"].endswith("layernorm_before") for r in cb.last_records)
    assert cb.failures == {}


def test_steps_into_its_own_logdir_without_a_reporter(tmp_path, caplog):
    cb = _cb(every="step", every_n_steps=2)
    with caplog.at_level("WARNING", logger="deepvid_plugin.callbacks"):
        train(vit(), tmp_path, cb, "none", epochs=1)  # 3 steps of 8 images
    assert any("deepvid" in r.getMessage() and str(tmp_path / "deepvid") in r.getMessage()
               for r in caplog.records)
    # explained at global step 2 (every 2 steps), under the Trainer's step number
    assert kind_steps(tmp_path, "gradcam") == {"deepvid": {"0": [2], "1": [2], "2": [2]}}


def test_mistakes_fail_in_the_constructor():
    from deepvid_plugin.explain import GradCAM

    with pytest.raises(ValueError, match=rf"labels: expected class indices in \[0, {N_CLASSES}\)"):
        from deepvid_plugin.callbacks.hf import DeepVIDTrainerCallback

        DeepVIDTrainerCallback(torch.rand(2, 3, SIZE, SIZE), labels=[0, 5], model=vit(),
                               explainers=[GradCAM()])
    with pytest.raises(ValueError, match=r"layer: expected a module name .*'vit.nope'"):
        _cb(model=vit(), explainers=[GradCAM("vit.nope")])
    with pytest.raises(ValueError, match=r"every: expected one of \['epoch', 'step'\]"):
        _cb(every="batch")


def test_importing_the_callbacks_does_not_import_transformers():
    code = ("import sys, deepvid_plugin.callbacks as c; c.DeepVIDCallback; "
            "assert 'transformers' not in sys.modules, 'transformers imported'; "
            "c.DeepVIDTrainerCallback; assert 'transformers' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
