"""A sink failure never stops training (warned once per kind, counted), unless on_error='raise'
or the test suite (DEEPVID_TESTING=1) asks for it."""

from __future__ import annotations

import warnings

import pytest
import torch

from deepvid_plugin.callbacks import DeepVIDCallback, DeepVIDWarning
from deepvid_plugin.demo.digits import train_epoch
from deepvid_plugin.mlflow import layout
from tests.callbacks.helpers import (
    N_NEIGHBOURS,
    fitted_vae,
    small_cnn,
    summary_steps,
    tracked,
    train_slice,
)

EPOCHS = 5
KILL_AFTER = 1  # the server dies after this epoch was logged


@pytest.fixture
def production(monkeypatch):
    """Outside the test suite's raise-everything mode, with MLflow's client failing fast (its
    default retry budget is minutes per request)."""
    monkeypatch.delenv("DEEPVID_TESTING", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def _train(cb, server, epochs=EPOCHS):
    x, y = train_slice()
    opt = torch.optim.Adam(cb.model.parameters(), lr=3e-3)
    done = []
    for epoch in range(epochs):
        train_epoch(cb.model, opt, x, y)
        cb.on_epoch_end(epoch)
        done.append(epoch)
        if epoch == KILL_AFTER:
            steps_dir = layout.paths("deepvid").steps
            steps = [f.path for f in server.client().list_artifacts(cb.sinks["mlflow"].run_id,
                                                                      steps_dir)]
            assert steps == [f"{steps_dir}/0.json", f"{steps_dir}/1.json"]
            server.kill()
    return done


def _callback(server, tmp_path, vae, on_error):
    client = server.client()
    exp = client.create_experiment("fault")
    run = client.create_run(exp)
    xi, yi = tracked()
    return DeepVIDCallback(small_cnn(), xi, labels=yi, generator=vae, n_neighbours=N_NEIGHBOURS,
                           logdir=tmp_path / "tb", mlflow=run.info.run_id,
                           tracking_uri=server.url, on_error=on_error, progress=False)


@pytest.mark.e2e
def test_mlflow_server_killed_mid_training(mlflow_server_factory, tmp_path, production, caplog):
    server = mlflow_server_factory()
    cb = _callback(server, tmp_path, fitted_vae(), "warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cb:
            done = _train(cb, server)
    assert done == list(range(EPOCHS))  # training finished
    # TensorBoard still got every epoch of every instance
    assert summary_steps(tmp_path / "tb") == {".": {str(i): list(range(EPOCHS)) for i in range(4)}}
    # the failure is visible: one warning for the first failure of its kind, then a switch-off
    ours = [str(w.message) for w in caught if issubclass(w.category, DeepVIDWarning)]
    assert ours, [str(w.message) for w in caught]
    assert "mlflow" in ours[0] and "training continues" in ours[0]
    assert any("switched off" in m for m in ours), ours
    assert len(ours) <= 3, ours  # once per kind (+ the switch-off), not once per record
    assert sum(n for kind, n in cb.failures.items() if kind.startswith("mlflow")) >= 1
    assert not any(kind.startswith("tensorboard") for kind in cb.failures)
    assert any("training continues" in r.getMessage() for r in caplog.records)


@pytest.mark.e2e
def test_mlflow_server_killed_with_on_error_raise(mlflow_server_factory, tmp_path, production):
    server = mlflow_server_factory()
    cb = _callback(server, tmp_path, fitted_vae(), "raise")
    done: list[int] = []
    with pytest.raises(Exception) as info:  # noqa: B017 - whatever the MLflow client raises
        done = _train(cb, server)
    assert not isinstance(info.value, AssertionError), info.value
    assert done == []  # the exception escaped the loop at the first epoch after the kill
    assert summary_steps(tmp_path / "tb")["."]["0"] == [0, 1, 2]  # TB was written before MLflow


class _BrokenDisk:
    """A real Sink whose storage is full."""

    def __init__(self):
        self.calls = 0

    def write(self, record, step):
        self.calls += 1
        raise OSError(28, "No space left on device")

    def flush(self):
        pass

    def close(self):
        pass


def test_the_test_suite_raises_even_under_warn(tmp_path):
    from deepvid_plugin.explain import PixelGenerator

    xi, _ = tracked()
    cb = DeepVIDCallback(small_cnn(), xi, generator=PixelGenerator((1, 8, 8)), n_neighbours=16,
                         sinks=[_BrokenDisk()], on_error="warn")
    with pytest.raises(OSError, match="No space left"):
        cb.on_epoch_end(0)


def test_warn_once_per_kind_then_switch_off(tmp_path, monkeypatch):
    from deepvid_plugin.explain import PixelGenerator

    monkeypatch.delenv("DEEPVID_TESTING", raising=False)
    xi, _ = tracked()
    disk = _BrokenDisk()
    cb = DeepVIDCallback(small_cnn(), xi, generator=PixelGenerator((1, 8, 8)), n_neighbours=16,
                         sinks=[disk], logdir=tmp_path, on_error="warn")
    with pytest.warns(DeepVIDWarning) as record:
        for epoch in range(5):
            assert len(cb.on_epoch_end(epoch)) == 4  # explanations still come back
    cb.close()
    messages = [str(w.message) for w in record]
    assert len(messages) == 2, messages
    assert "_BrokenDisk[0].write failed (OSError" in messages[0]
    assert "switched off" in messages[1]
    assert cb.failures == {"_BrokenDisk[0].write": 3}
    assert disk.calls == 3  # one write per epoch was tried (not one per record), then none
    assert summary_steps(tmp_path) == {".": {str(i): list(range(5)) for i in range(4)}}


class _BrokenMetrics(_BrokenDisk):
    """A sink that also takes metrics, and fails at it as its disk is full."""

    def __init__(self):
        super().__init__()
        self.metric_calls = 0

    def log_metrics(self, values, step):
        self.metric_calls += 1
        raise OSError(28, "No space left on device")


def test_log_metrics_reaches_tensorboard_and_a_failing_sink_never_stops_training(
        tmp_path, monkeypatch):
    from deepvid_plugin.explain import PixelGenerator
    from tests.tensorboard.test_metrics import _store

    monkeypatch.delenv("DEEPVID_TESTING", raising=False)
    xi, _ = tracked()
    broken = _BrokenMetrics()
    cb = DeepVIDCallback(small_cnn(), xi, generator=PixelGenerator((1, 8, 8)), n_neighbours=16,
                         sinks=[broken], logdir=tmp_path / "run", on_error="warn")
    with pytest.warns(DeepVIDWarning, match="log_metrics failed"):
        for epoch in range(2):
            cb.log_metrics({"test_accuracy": 0.5 + epoch / 4}, epoch)
    assert broken.metric_calls == 2 and cb.failures == {"_BrokenMetrics[0].log_metrics": 2}
    with pytest.raises(TypeError, match=r"values\['acc'\]"):  # bad input: a clear error
        cb.log_metrics({"acc": "high"}, 2)
    cb.close()
    with pytest.raises(RuntimeError, match="closed"):
        cb.log_metrics({"test_accuracy": 1.0}, 3)
    [series] = _store(tmp_path).metrics("run")
    assert (series.name, series.steps, series.values) == ("test_accuracy", [0, 1], [0.5, 0.75])
