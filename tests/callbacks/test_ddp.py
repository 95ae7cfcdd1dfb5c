"""DDP: 2 CPU processes (Lightning strategy="ddp", gloo) share the explanations (each rank its
share of the instances), complete, only rank zero writes, and the records equal those of a
1-process run. Every kind under a plain torch.distributed loop: test_sharded.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.callbacks.helpers import records, summary_steps

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_script.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _launch(out, devices: int) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    env.pop("DEEPVID_TESTING", None)  # not needed: failures are asserted from the JSON
    proc = subprocess.run([sys.executable, SCRIPT, os.fspath(out), str(devices)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    one = tmp_path_factory.mktemp("one")
    two = tmp_path_factory.mktemp("two")
    _launch(one, 1)
    _launch(two, 2)
    return one, two


def _report(out, rank):
    with open(os.path.join(out, f"rank{rank}.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_only_rank_zero_writes(runs):
    _, two = runs
    r0, r1 = _report(two, 0), _report(two, 1)
    assert (r0["world_size"], r1["world_size"]) == (2, 2)
    assert r0["written_steps"] == [0, 1, 2] and r0["failures"] == {}
    assert r1["written_steps"] == []
    files = [f for f in os.listdir(os.path.join(two, "tb", "version_0")) if "tfevents" in f]
    assert len(files) == 1, files
    assert summary_steps(os.path.join(two, "tb")) == {
        "version_0": {str(i): [0, 1, 2] for i in range(4)}}


@pytest.mark.slow
def test_records_equal_a_one_process_run(runs):
    one, two = runs
    assert _report(one, 0)["written_steps"] == [0, 1, 2]
    for step in (0, 2):
        for iid in ("0", "3"):
            a = records(os.path.join(one, "tb"), "version_0", iid, step)
            b = records(os.path.join(two, "tb"), "version_0", iid, step)
            assert a == b, (iid, step)
