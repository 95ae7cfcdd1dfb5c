"""Bad arguments fail in __init__ with a message naming the argument and the valid choices."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from deepvid_plugin.callbacks import DeepVIDCallback
from deepvid_plugin.explain import PixelGenerator
from tests.callbacks.helpers import small_cnn, tracked

GEN = PixelGenerator((1, 8, 8))


def _cb(tmp_path, **kw):
    x, y = tracked()
    args = dict(model=small_cnn(), instances=x, labels=y, generator=GEN,
                logdir=os.fspath(tmp_path))
    args.update(kw)
    return DeepVIDCallback(args.pop("model"), args.pop("instances"), **args)


@pytest.mark.parametrize("shape, hint", [((4, 8, 8), "(K, C, H, W)"), ((1, 8, 8), "unsqueeze"),
                                         ((2, 1, 1, 8, 8), "(K, C, H, W)")])
def test_instances_of_the_wrong_rank(tmp_path, shape, hint):
    with pytest.raises(ValueError, match=r"instances: .*" + hint.replace("(", r"\(")
                       .replace(")", r"\)")):
        _cb(tmp_path, instances=torch.zeros(shape))


@pytest.mark.parametrize("name, value, message", [
    ("ids", ["a", "b"], "ids: expected 4 ids"),
    ("ids", ["a", "a", "b", "c"], "ids: expected 4 unique"),
    ("labels", [0, 1, 2], "labels: expected 4 labels"),
    ("labels", torch.zeros(5, dtype=torch.long), "labels: expected 4 labels"),
    ("labels", [0, 1, 2, 10], r"labels: expected class indices in \[0, 10\)"),
])
def test_ids_and_labels_of_the_wrong_length(tmp_path, name, value, message):
    kw = {name: value}
    if name == "labels" and message.startswith("labels: expected class"):
        kw["class_names"] = [str(i) for i in range(10)]
    with pytest.raises(ValueError, match=message):
        _cb(tmp_path, **kw)


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_every_n_epochs(tmp_path, value):
    with pytest.raises(ValueError, match=r"every_n_epochs: expected an int >= 1, got"):
        _cb(tmp_path, every_n_epochs=value)


def test_unknown_on_error_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"on_error: expected one of 'warn', 'raise', got 'ignore'"):
        _cb(tmp_path, on_error="ignore")


def test_mlflow_true_without_an_active_run(tmp_path):
    import mlflow

    assert mlflow.active_run() is None
    with pytest.raises(ValueError, match=r"mlflow: expected an active MLflow run .*start_run"):
        _cb(tmp_path, logdir=None, mlflow=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; see the file variant")
def test_logdir_that_cannot_be_written_permissions(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(ValueError, match=r"logdir: expected a directory that can be written"):
        _cb(tmp_path, logdir=os.fspath(ro / "logs"))


def test_logdir_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"logdir: expected a directory that can be written, "
                                         r"got '.*a-file/logs'"):
        _cb(tmp_path, logdir=os.fspath(blocker / "logs"))


@pytest.mark.parametrize("kw, exc, message", [
    (dict(model=lambda x: x), TypeError, "model: expected a torch.nn.Module"),
    (dict(generator=None), ValueError, "generator: expected a fitted generator .* or train_data"),
    (dict(generator=object()), TypeError, r"generator: expected an object with encode\(\)"),
    (dict(train_data=torch.zeros(10, 1, 8, 8)), ValueError, "generator, train_data: expected one"),
    (dict(generator=None, train_data=torch.zeros(10, 3, 8, 8)), ValueError,
     r"train_data: expected images of shape \(N, 1, 8, 8\)"),
    (dict(logdir=None), ValueError, "logdir, mlflow, sinks: expected somewhere to write"),
    (dict(sinks=[object()]), TypeError, r"sinks: expected objects with write"),
    (dict(logdir=42), TypeError, "logdir: expected a directory path or a .*SummaryWriter"),
    (dict(mlflow=3), TypeError, "mlflow: expected True"),
    (dict(n_neighbours=5), ValueError, r"n_neighbours: expected an int >= 10"),
    (dict(temperature=0), ValueError, r"temperature: expected a finite number > 0"),
    (dict(radius=-1), ValueError, r"radius: expected a number >= 0"),
    (dict(class_names=["only-one"]), ValueError, "class_names: expected at least 2"),
    (dict(instances=torch.zeros(4, 1, 8, 8, dtype=torch.long)), TypeError,
     "instances: expected a floating-point tensor"),
    (dict(instances="digits"), TypeError, "instances: expected a .* tensor or a dataset"),
])
def test_other_bad_arguments(tmp_path, kw, exc, message):
    with pytest.raises(exc, match=message):
        _cb(tmp_path, **kw)


def test_a_dataset_subset_gives_labels_and_ids(tmp_path):
    from torch.utils.data import Subset, TensorDataset

    from tests.callbacks.helpers import digits

    d = digits()
    subset = Subset(TensorDataset(d.x_test, d.y_test), [5, 17, 3])
    cb = _cb(tmp_path, instances=subset, labels=None)
    assert cb.explanations.ids == ["5", "17", "3"]
    assert cb.explanations.labels == [int(d.y_test[i]) for i in (5, 17, 3)]


def test_lightning_callback_validates_too():
    from deepvid_plugin.callbacks.lightning import DeepVIDLightningCallback

    with pytest.raises(ValueError, match="every_n_epochs"):
        DeepVIDLightningCallback(tracked()[0], generator=GEN, every_n_epochs=0)
    with pytest.raises(ValueError, match="on_error: expected one of 'warn', 'raise'"):
        DeepVIDLightningCallback(tracked()[0], generator=GEN, on_error="silent")


def test_lightning_without_a_supported_logger_writes_its_own_logdir(tmp_path, caplog):
    from lightning.pytorch.loggers import CSVLogger

    from deepvid_plugin.callbacks.lightning import DeepVIDLightningCallback
    from deepvid_plugin.explain import GradCAM
    from tests.callbacks.helpers import kind_steps
    from tests.callbacks.lit import LitDigits, loader, trainer

    xi, yi = tracked()
    cb = DeepVIDLightningCallback(xi, labels=yi, explainers=[GradCAM(evidence_steps=3)])
    t = trainer(max_epochs=2, callbacks=[cb], logger=CSVLogger(tmp_path / "csv"),
                default_root_dir=tmp_path)
    with caplog.at_level("WARNING", logger="deepvid_plugin.callbacks"):
        t.fit(LitDigits(), loader())
    own = tmp_path / "deepvid"
    assert any(str(own) in r.getMessage() and "CSVLogger" in r.getMessage()
               for r in caplog.records)  # the user is told where the explanations went
    steps = kind_steps(own.parent, "gradcam")
    assert steps == {"deepvid": {str(i): [0, 1] for i in range(len(xi))}}


def test_lightning_module_without_forward_needs_forward_fn(tmp_path):
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger

    from deepvid_plugin.callbacks.lightning import DeepVIDLightningCallback
    from deepvid_plugin.explain import GradCAM
    from tests.callbacks.helpers import kind_steps, small_cnn
    from tests.callbacks.lit import loader, trainer

    class NoForward(pl.LightningModule):  # only training_step, as many LightningModules are
        def __init__(self):
            super().__init__()
            self.net = small_cnn()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    xi, yi = tracked()
    cb = DeepVIDLightningCallback(xi, labels=yi, explainers=[GradCAM(evidence_steps=3)])
    t = trainer(max_epochs=1, callbacks=[cb], logger=TensorBoardLogger(tmp_path, name="tb"))
    with pytest.raises(ValueError, match=r"model: expected a forward\(\).*NoForward has none.*forward_fn=lambda module"):
        t.fit(NoForward(), loader())

    cb = DeepVIDLightningCallback(xi, labels=yi, explainers=[GradCAM("net.features.3",
                                                                     evidence_steps=3)],
                                  forward_fn=lambda module, x: module.net(x))
    t = trainer(max_epochs=2, callbacks=[cb], logger=TensorBoardLogger(tmp_path, name="ok"))
    module = NoForward()
    t.fit(module, loader())
    assert kind_steps(tmp_path / "ok", "gradcam") == {
        "version_0": {str(i): [0, 1] for i in range(len(xi))}}
    assert [r.meta["layer"] for r in cb.last_records] == ["net.features.3"] * len(xi)
    assert module.training  # the view's eval mode did not stick to the module itself


def test_importing_the_package_does_not_import_lightning():
    import subprocess
    import sys

    code = ("import sys, deepvid_plugin.callbacks as c; c.DeepVIDCallback; "
            "assert 'lightning' not in sys.modules, 'lightning imported'; "
            "c.DeepVIDLightningCallback; assert 'lightning' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
