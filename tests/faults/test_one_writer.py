"""Row 7 (writers): two callbacks on one logdir (a notebook cell re-run; two processes), two
processes on one MLflow run. Before: silently merged (the default loader showed only the newest
writer, --load_fast=false mixed the two, MLflow counted every metric twice per step). Now the
second writer is refused with a message naming the first, and a writer that is gone (closed,
garbage collected, its process ended) no longer holds the run."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from deepvid_plugin.core.writers import WriterConflictError
from tests.faults.helpers import quick_callback

#: a second process that takes a run and holds it until told to stop (a line on its stdin)
HOLDER = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from tests.faults.helpers import quick_callback
    kind, target, uri = sys.argv[1], sys.argv[2], sys.argv[3]
    kwargs = {"logdir": target} if kind == "logdir" else {"mlflow": target, "tracking_uri": uri}
    cb = quick_callback(**kwargs)
    cb.on_epoch_end(0)
    print("holding", flush=True)
    sys.stdin.readline()
    cb.close()
    print("closed", flush=True)
""")


def _holder(kind: str, target: str, uri: str = "-") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, kind, target, uri], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "holding", (line, proc.poll())
    return proc


def _release(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate("stop\n", timeout=120)
    assert "closed" in out and proc.returncode == 0


def test_two_callbacks_on_one_logdir_in_one_process(tmp_path):
    first = quick_callback(logdir=tmp_path / "run")
    first.on_epoch_end(0)
    with pytest.raises(WriterConflictError, match=r"logdir: .*run' is being written by another "
                                                  r"live DeepVID writer .*\(this process\).*"
                                                  r"refuses to start.*close\(\)"):
        quick_callback(logdir=tmp_path / "run")
    first.close()
    second = quick_callback(logdir=tmp_path / "run")  # closed: the run is free
    second.close()


def test_a_dropped_callback_lets_go_of_its_run(tmp_path):
    # A notebook cell re-run: the old callback was never closed, only dropped.
    old = quick_callback(logdir=tmp_path / "run")
    old.on_epoch_end(0)
    del old
    gc.collect()
    new = quick_callback(logdir=tmp_path / "run")
    new.close()


@pytest.mark.e2e
def test_a_logdir_held_by_another_process_is_refused(tmp_path):
    run = str(tmp_path / "run")
    proc = _holder("logdir", run)
    try:
        with pytest.raises(WriterConflictError, match=rf"pid {proc.pid} on host"):
            quick_callback(logdir=run)
    finally:
        _release(proc)
    quick_callback(logdir=run).close()  # its process closed it: free again


@pytest.mark.e2e
def test_an_mlflow_run_held_by_another_process_is_refused(mlflow_server, tmp_path):
    client = mlflow_server.client()
    run_id = client.create_run(client.create_experiment("one-writer")).info.run_id
    proc = _holder("mlflow", run_id, mlflow_server.url)
    try:
        with pytest.raises(WriterConflictError, match=rf"MLflow run {run_id} is being written "
                                                      rf"by another live DeepVID writer .*pid "
                                                      rf"{proc.pid}"):
            quick_callback(mlflow=run_id, tracking_uri=mlflow_server.url)
    finally:
        _release(proc)
    tags = client.get_run(run_id).data.tags
    assert json.loads(tags["deepvid.writer"])["closed"] is True
    cb = quick_callback(mlflow=run_id, tracking_uri=mlflow_server.url)
    cb.on_epoch_end(1)
    cb.close()
    # one writer at a time: one metric point per step, never two
    history = client.get_metric_history(run_id, "deepvid/fidelity_mean")
    assert sorted(m.step for m in history) == [0, 1]


@pytest.mark.e2e
def test_a_dropped_mlflow_sink_lets_go_of_its_run_and_sends_what_it_owed(mlflow_server):
    from deepvid_plugin.mlflow.sink import MLflowSink
    from tests.factories import make_record

    client = mlflow_server.client()
    run_id = client.create_run(client.create_experiment("dropped")).info.run_id
    old = MLflowSink(run_id, client=client, viewer_every=0, log_images=False)
    old.write(make_record("a", 0), 0)
    old.flush()
    old.write(make_record("a", 1), 1)
    old._seal()  # step 1 handed to the upload thread, never flushed nor closed
    del old
    gc.collect()
    new = MLflowSink(run_id, client=client, viewer_every=0, log_images=False)
    new.claim()  # free: the dropped sink let go when it was collected
    new.write(make_record("a", 2), 2)
    new.close()
    deadline = time.monotonic() + 60  # the dropped sink's thread sends on its own
    while True:
        steps = sorted(m.step for m in client.get_metric_history(run_id, "deepvid/fidelity_mean"))
        if steps == [0, 1, 2] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert steps == [0, 1, 2]  # what the dropped one owed was sent, once
