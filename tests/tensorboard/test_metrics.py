"""The run's own scalars in TensorBoard: written by the callback (``log_metrics``) or by the
user's own ``SummaryWriter``, read back through the data provider as ordinary scalars."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing import data_ingester
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from torch.utils.tensorboard import SummaryWriter

from deepvid_plugin import api
from deepvid_plugin.tensorboard import TensorBoardSink
from deepvid_plugin.tensorboard.store import DataProviderStore
from tests.factories import make_record


def _store(logdir) -> DataProviderStore:
    mux = EventMultiplexer(size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
                           tensor_size_guidance={"deepvid": 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    return DataProviderStore(MultiplexerDataProvider(mux, str(logdir)))


def test_sink_metrics_and_the_users_own_scalars_read_back(tmp_path):
    with TensorBoardSink(tmp_path / "r1") as sink:
        for step in range(3):
            sink.write(make_record("a", step), step)
            sink.log_metrics({"test_accuracy": 0.5 + step / 10, "train_loss": 1.0 / (step + 1)},
                             step)
    writer = SummaryWriter(str(tmp_path / "r1"))  # the user's own writer, same run
    writer.add_scalar("val/acc", 0.25, 7)
    writer.close()
    store = _store(tmp_path)
    got = {m.name: (m.steps, [round(v, 4) for v in m.values]) for m in store.metrics("r1")}
    assert got == {"test_accuracy": ([0, 1, 2], [0.5, 0.6, 0.7]),
                   "train_loss": ([0, 1, 2], [1.0, 0.5, 0.3333]),
                   "val/acc": ([7], [0.25])}
    body, status = api.metrics_impl(store, "r1"), 200
    assert status == 200 and [m["name"] for m in body["metrics"]] == list(got)
    with pytest.raises(KeyError):  # the API answers 404
        store.metrics("nope")
