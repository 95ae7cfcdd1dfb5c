"""Row 10: the disk fills up mid-run (``ulimit -f`` in a subprocess). Before: a writer-thread
traceback, the warning one epoch late, and ``on_epoch_end`` reported records it had not
written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.callbacks.helpers import data_provider
from tests.faults.helpers import IDS

SCRIPT = textwrap.dedent("""
    import glob, json, os, resource, sys, warnings
    import torch
    torch.set_num_threads(1)
    from tests.faults.helpers import quick_callback
    logdir = sys.argv[1]
    cb = quick_callback(logdir=logdir, on_error="warn")
    returned = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(2):
            returned.append(len(cb.on_epoch_end(epoch)))
        (events,) = glob.glob(os.path.join(logdir, "events*"))
        size = os.path.getsize(events)
        # the file may grow by half an epoch more: epoch 2 does not fit (ulimit -f)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + size // 4, resource.RLIM_INFINITY))
        returned.append(len(cb.on_epoch_end(2)))
        after_failure = os.path.getsize(events)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)  # room again
        returned.append(len(cb.on_epoch_end(3)))
        cb.close()
    print(json.dumps({"returned": returned, "size": size, "after_failure": after_failure,
                      "warnings": [str(w.message) for w in caught], "failures": cb.failures}))
""")


@pytest.mark.skipif(sys.platform == "win32",
                    reason="ulimit -f is POSIX")
def test_a_full_disk_is_reported_at_once_and_loses_only_that_step(tmp_path):
    logdir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DEEPVID_TESTING", None)  # production: warn and go on
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(logdir)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # the epoch that did not fit returns nothing; the others all their records
    assert out["returned"] == [4, 4, 0, 4], out
    assert out["failures"] == {"tensorboard.flush": 1}, out
    (first, *rest) = [w for w in out["warnings"] if "tensorboard" in w]
    assert "tensorboard.flush failed (OSError: [Errno 27] File too large" in first
    assert "cut back to its last complete event" in first and not rest, out["warnings"]
    # no thread dying in the background: the one traceback is the callback's own log line
    assert "Exception in thread" not in proc.stderr
    assert proc.stderr.count("deepvid: tensorboard.flush failed") == 1, proc.stderr[-3000:]
    assert proc.stderr.index("deepvid: tensorboard.flush failed") < \
        proc.stderr.index("Traceback"), proc.stderr[-3000:]
    assert out["after_failure"] == out["size"]  # nothing half-written left behind
    # what was written before and after reads back; the lost step is named by the reader
    from deepvid_plugin.tensorboard.store import DataProviderStore

    store = DataProviderStore(data_provider(tmp_path), logdir=str(tmp_path))
    ov = store.overview("run", kind="deepvid")
    assert {i.id: [s["step"] for s in i.steps] for i in ov.instances} == \
        {i: [0, 1, 3] for i in IDS}
    assert any("4 of the 16 deepvid records" in w and "at steps [2]" in w
               for w in ov.warnings), ov.warnings
    for step in (0, 1, 3):
        assert store.record("run", "0", step, kind="deepvid").step == step
