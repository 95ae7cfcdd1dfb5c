"""Rows 11 and 12: raw torch errors and Python tracebacks, now each a named error.

Row 11 (before): "'tuple' object has no attribute 'dim'" (Summit on a tuple/dict model; now
read through core.outputs, and an output it cannot read is named),
"expected input[40, 3, 16, 16] to have 1 channels" (NetDissect on a one-channel model: the
probes are RGB), "Input type (float) and bias type (c10::Half)" (CAMDistillLoss with an fp16
teacher and fp32 input), "atol must be greater than or equal to zero, but got -nan" (NaN input),
"cannot reshape tensor of 0 elements" (an empty batch).
Row 12 (before): ``deepvid compare -o`` a directory or an unwritable path, or a dead tracking
URI: Python tracebacks (the dead URI after minutes of MLflow's retries).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from deepvid_plugin.explain import CAMDistillLoss, ConceptSet, NetDissect, Summit
from tests.callbacks.helpers import small_cnn, tracked

LAYER = "features.3"


class Wrapped(nn.Module):
    """A model whose forward returns a tuple or a dict (HuggingFace-style)."""

    def __init__(self, how: str):
        super().__init__()
        self.net, self.how = small_cnn(), how

    def forward(self, x):
        out = self.net(x)
        return (out, x.mean()) if self.how == "tuple" else {"logits": out}


@pytest.mark.parametrize("how", ["tuple", "dict"])
def test_summit_on_a_model_that_returns_a_tuple_or_dict(how):
    # core.outputs reads the logits out of a tuple or a dict, as it does for every engine
    x, y = tracked(8)
    graph = Summit(x, y, layers=[f"net.{LAYER}"]).aggregate(Wrapped(how).eval())
    assert graph is not None


def test_summit_on_an_output_it_cannot_read_is_named():
    x, y = tracked(8)
    model = Wrapped("tuple").eval()
    model.forward = lambda inp: {"scores": model.net(inp)}
    with pytest.raises(TypeError, match=r"model output: expected logits .*got .*output_transform="):
        Summit(x, y, layers=[f"net.{LAYER}"]).aggregate(model)


def test_netdissect_on_a_model_that_does_not_take_the_rgb_probes():
    probes = ConceptSet.synthetic(n=40, size=16)
    with pytest.raises(ValueError, match=r"model: its first convolution takes 1-channel images, "
                                         r"but the concept probe images are 3-channel .*"
                                         r"transform="):
        NetDissect(probes, [LAYER]).dissect(small_cnn().eval())


def _gap_net(seed: int) -> nn.Module:
    """conv features -> global average pool -> Linear: the head CAMDistillLoss reads."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


def test_cam_distill_loss_bad_input_is_named():
    x, _ = tracked(8)
    loss = CAMDistillLoss(_gap_net(1).eval(), _gap_net(2), teacher_layer="1", student_layer="1")
    with pytest.raises(ValueError, match=r"x: instance 0 has 64 non-finite pixels"):
        loss(torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match=r"x: expected at least one instance, got 0"):
        loss(x[:0])
    half = CAMDistillLoss(_gap_net(1).eval().half(), _gap_net(2), teacher_layer="1",
                          student_layer="1")
    with pytest.raises(TypeError, match=r"teacher, student: expected networks of one dtype .*"
                                        r"torch.float16 teacher and a torch.float32 student"):
        half(x)
    assert torch.isfinite(loss(x).loss)  # good input still trains


def test_summit_nan_or_empty_probes_are_named():
    x, y = tracked(8)
    with pytest.raises(ValueError, match=r"data: instance 0 has 64 non-finite pixels"):
        Summit(torch.full_like(x, float("nan")), y, layers=[LAYER])
    with pytest.raises(ValueError, match=r"data: expected at least one instance, got 0"):
        Summit(x[:0], y[:0], layers=[LAYER])


def _cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "deepvid_plugin.cli", "compare", *argv],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.e2e
def test_compare_output_that_cannot_be_written(mlflow_server, tmp_path):
    # checked before any run is read (reading is the slow part): the run ids need not exist
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o500)
    cases = [(str(tmp_path), r"-o/--output: expected a file to write the page to, got the "
                             r"directory"),
             (str(tmp_path / "nowhere" / "x.html"), r"in an existing directory")]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((str(ro / "x.html"), r"a file this user can write"))
    for output, message in cases:
        proc = _cli("a" * 32, "b" * 32, "--tracking-uri", mlflow_server.url, "-o", output)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "deepvid compare: error: " in proc.stderr
        assert re.search(message, proc.stderr), proc.stderr


@pytest.mark.e2e
def test_compare_with_a_dead_tracking_uri(tmp_path):
    from tests.e2e.fixtures_mlflow import free_port

    start = time.perf_counter()
    proc = _cli("a" * 32, "b" * 32, "--tracking-uri", f"http://127.0.0.1:{free_port()}",
                "-o", str(tmp_path / "x.html"))
    seconds = time.perf_counter() - start
    print(f"dead tracking URI: {seconds:.1f} s")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--tracking-uri: the MLflow server at tracking URI" in proc.stderr
    assert "does not answer (connection refused)" in proc.stderr
    assert seconds < 60  # seconds (interpreter start included), not MLflow's minutes
