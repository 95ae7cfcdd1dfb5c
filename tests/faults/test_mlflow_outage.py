"""Rows 2 and 4: MLflow away for a while, during the run or from its start.

Row 2 (before): down for epochs 3-4, back before 5; epoch 5 uploaded, then a stale image-upload
error from the outage was re-raised at flush, counted as failure #3 and switched MLflow off:
epochs 6-7 lost while the server was healthy.
Row 4 (before): a run id and a dead tracking URI; every on_epoch_end blocked 246 s (MLflow's own
retries), three epochs in a row, then MLflow was switched off.

Real ``mlflow server`` processes, killed and restarted on the same port and store; MLflow's
client keeps its default retry settings (the ``production`` fixture).
"""

from __future__ import annotations

import json
import pathlib
import socket
import time
import warnings

import pytest

from deepvid_plugin.callbacks import DeepVIDWarning
from tests.callbacks.helpers import summary_steps
from tests.faults.helpers import IDS, check_mlflow_run, quick_callback

#: a generous guard against minutes of MLflow retries (the target is <= 10 s per epoch;
#: the measured seconds are printed and reported in docs/reliability.md)
DEAD_EPOCH_LIMIT_S = 10.0


def _new_run(server) -> str:
    client = server.client()
    return client.create_run(client.create_experiment("outage")).info.run_id


def _epoch(cb, epoch: int, written: dict, seconds: dict) -> None:
    start = time.perf_counter()
    written[epoch] = cb.on_epoch_end(epoch)
    seconds[epoch] = time.perf_counter() - start


def _ours(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, DeepVIDWarning)]


@pytest.mark.e2e
def test_outage_mid_run_loses_nothing_and_mlflow_comes_back(mlflow_server_factory, tmp_path,
                                                            production):
    server = mlflow_server_factory()
    run_id = _new_run(server)
    cb = quick_callback(logdir=tmp_path / "tb", mlflow=run_id,
                        tracking_uri=server.url, on_error="warn")
    written: dict[int, list] = {}
    seconds: dict[int, float] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(9):
            if epoch == 3:
                server.kill()  # down for epochs 3, 4 and 5: long enough to be switched off
            if epoch == 6:
                server.restart()
            _epoch(cb, epoch, written, seconds)
        cb.close()
    print(f"seconds per epoch: {[round(seconds[e], 2) for e in range(9)]}")
    assert max(seconds[e] for e in (3, 4, 5)) < DEAD_EPOCH_LIMIT_S, seconds
    messages = _ours(caught)
    # what the user saw: the first failure, the switch-off, and the comeback, in that order
    assert len(messages) == 3, messages
    assert "mlflow.flush failed (MLflowUnavailableError" in messages[0]
    assert "wait on disk" in messages[0] and "training continues" in messages[0]
    assert "switched off until it answers again" in messages[1]
    assert "answers again and is switched back on" in messages[2]
    assert cb.failures == {"mlflow.flush": 3}  # epochs 3-5 only: no stale error after 6
    # nothing lost: every epoch's records, metrics (once each) and images reached MLflow ...
    check_mlflow_run(server.client(), run_id, written)
    # ... and TensorBoard never noticed
    assert summary_steps(tmp_path / "tb") == {".": {i: list(range(9)) for i in IDS}}


@pytest.mark.e2e
def test_dead_at_start_costs_seconds_not_minutes_then_catches_up(mlflow_server_factory,
                                                                  tmp_path, production):
    server = mlflow_server_factory()
    run_id = _new_run(server)
    server.kill()  # a run id and a tracking URI that does not answer when training starts
    start = time.perf_counter()
    cb = quick_callback(mlflow=run_id, tracking_uri=server.url, on_error="warn")
    built = time.perf_counter() - start
    written: dict[int, list] = {}
    seconds: dict[int, float] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(3):
            _epoch(cb, epoch, written, seconds)
        server.restart()
        for epoch in range(3, 5):
            _epoch(cb, epoch, written, seconds)
        cb.close()
    print(f"constructor {built:.2f} s; seconds per epoch: "
          f"{[round(seconds[e], 2) for e in range(5)]}")
    assert built < DEAD_EPOCH_LIMIT_S
    assert max(seconds[e] for e in range(3)) < DEAD_EPOCH_LIMIT_S, seconds
    assert all(len(written[e]) == len(IDS) for e in range(5))  # explanations went on
    assert any("answers again" in m for m in _ours(caught)), _ours(caught)
    check_mlflow_run(server.client(), run_id, written)  # the dead epochs included


@pytest.mark.e2e
def test_a_server_that_hangs_costs_the_probe_timeout(tmp_path, production):
    # Accepts connections and never answers (a hung proxy, a half-dead host): MLflow's client
    # would wait 120 s per try; the sink's probe gives up after 2 s.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        uri = f"http://127.0.0.1:{hung.getsockname()[1]}"
        cb = quick_callback(mlflow="0" * 32, tracking_uri=uri, on_error="warn")
        seconds: dict[int, float] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for epoch in range(2):
                _epoch(cb, epoch, {}, seconds)
        print(f"seconds per epoch: {[round(s, 2) for s in seconds.values()]}")
        assert max(seconds.values()) < DEAD_EPOCH_LIMIT_S, seconds
        assert any("no answer within" in m for m in _ours(caught)), _ours(caught)
        spool = cb.sinks["mlflow"].spool_dir
        cb.close()  # what is owed stays on disk, named in the warning
    assert cb.failures.get("mlflow.close") == 1
    held = sorted(json.loads((p / "payload.json").read_text())["label"]
                  for p in pathlib.Path(spool, "pending").iterdir() if p.name.isdigit())
    assert held == ["bundles", "index and viewer", "step 0", "step 1"]
    assert len(list(pathlib.Path(spool, "written", "deepvid", "records").rglob("*.dvid"))) == 8
