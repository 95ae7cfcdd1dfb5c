"""A plain torch.distributed loop (2 gloo processes, 1 thread each) with every kind in one
DeepVIDCallback: the ranks share the work (instances, probe images, per-class images), rank
zero alone writes, every subject is written exactly once per explained epoch, and every record
equals a one-process run's (every array to 1e-6; in practice bit for bit). The VAE is fitted
once, on rank zero, and reaches the other rank through its state. A failure on one rank is seen
by both: counted on each with ``on_error='warn'``, raised on each with ``'raise'`` (a failed
write on rank zero too), and no rank is left waiting."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.callbacks.helpers import kind_steps, records

WORLD = 2
EPOCHS = 2
K = 5  # odd: the ranks' shares differ in size (3 and 2)
KINDS = ("deepvid", "gradcam", "cam_agreement", "netdissect", "summit")


def _workload():
    from deepvid_plugin.callbacks import (
        CAMAgreement,
        DeepVIDExplainer,
        GradCAMExplainer,
        NetDissectExplainer,
        SummitExplainer,
    )
    from deepvid_plugin.explain import GradCAM
    from deepvid_plugin.methods.netdissect import ConceptSet, NetDissect
    from deepvid_plugin.methods.summit import Summit
    from tests.methods.netdissect.test_explainer import tiny_cnn

    probe = ConceptSet.synthetic(n=96, size=16, seed=0)
    n_cls = len(probe.target_names)
    model, teacher = tiny_cnn(n_cls, seed=1), tiny_cnn(n_cls, seed=5)
    targets = torch.as_tensor(probe.targets)
    explainers = [
        DeepVIDExplainer(train_data=probe.images, vae_epochs=1, n_neighbours=32,
                         progress=False),
        GradCAMExplainer(GradCAM("2", evidence_steps=4)),
        CAMAgreement(teacher, "3", "3", evidence_steps=4),
        NetDissectExplainer(NetDissect(probe, ["0", "2"], batch_size=32), every_n_epochs=1,
                            n_thumbnails=8),
        SummitExplainer(Summit(probe.images, targets, ["0", "2"], per_class=6, batch_size=8),
                        every_n_epochs=1),
    ]
    return model, probe, explainers


def _train(model, probe, epoch: int) -> None:
    """The same few steps on every rank (same seed, one thread): the replicas stay equal, as
    DDP keeps them."""
    from tests.methods.netdissect.test_explainer import train_some

    train_some(model, probe, steps=3, seed=epoch)


def _run(out: str, distributed, on_error: str = "raise", fail_rank: int | None = None) -> dict:
    from deepvid_plugin.callbacks import DeepVIDCallback

    torch.manual_seed(0)
    model, probe, explainers = _workload()
    if fail_rank is not None:
        explainers = [_FailOn(explainers[1], fail_rank), explainers[0]]
    cb = DeepVIDCallback(model, probe.images[:K], labels=probe.targets[:K].tolist(),
                         class_names=list(probe.target_names), explainers=explainers,
                         logdir=os.path.join(out, "tb"), on_error=on_error, progress=False,
                         distributed=distributed)
    returned = []
    with cb:
        for epoch in range(EPOCHS):
            _train(model, probe, epoch)
            returned.append(len(cb.on_epoch_end(epoch)))
    deepvid = cb.explanations.deepvid
    return {"written_steps": cb.explanations.written_steps, "failures": cb.failures,
            "returned": returned, "generator_source": deepvid.generator_source,
            "last_steps": cb.explanations.last_steps}


class _FailOn:
    """An explainer that fails on one rank only (its kind is the wrapped one's)."""

    def __init__(self, inner, rank: int):
        self.inner, self.rank = inner, rank
        self.kind, self.every_n_epochs = inner.kind, inner.every_n_epochs

    def prepare(self, context):
        self.inner.prepare(context)

    def explain(self, model, step):
        if dist.get_rank() == self.rank:
            raise RuntimeError(f"broken on rank {self.rank}")
        return self.inner.explain(model, step)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


def _fewer_than_ranks(out: str) -> dict:
    """One instance on two ranks: rank one's share is empty, it explains nothing and still
    takes part."""
    from deepvid_plugin.callbacks import DeepVIDCallback, GradCAMExplainer
    from deepvid_plugin.explain import GradCAM, PixelGenerator
    from tests.callbacks.helpers import small_cnn, tracked

    x, y = tracked(1)
    with DeepVIDCallback(small_cnn(), x, labels=y, generator=PixelGenerator((1, 8, 8)),
                         n_neighbours=16, explainers=[GradCAMExplainer(GradCAM())],
                         logdir=os.path.join(out, "tb"), progress=False) as cb:
        returned = [len(cb.on_epoch_end(epoch)) for epoch in range(EPOCHS)]
    return {"returned": returned, "failures": cb.failures,
            "written_steps": cb.explanations.written_steps}


class _BrokenSink:
    """A sink whose writes fail (a full disk): only rank zero ever calls it."""

    def write(self, record, step):
        raise OSError("disk full")

    def flush(self):
        pass

    def close(self):
        pass


def _failing_write(out: str) -> dict:
    from deepvid_plugin.callbacks import DeepVIDCallback
    from deepvid_plugin.explain import PixelGenerator
    from tests.callbacks.helpers import small_cnn, tracked

    x, y = tracked(4)
    try:
        with DeepVIDCallback(small_cnn(), x, labels=y, generator=PixelGenerator((1, 8, 8)),
                             n_neighbours=16, sinks=[_BrokenSink()], on_error="raise",
                             progress=False) as cb:
            cb.on_epoch_end(0)
        return {"raised": None}
    except Exception as e:
        return {"raised": f"{type(e).__name__}: {e}"}


def _raising(out: str) -> dict:
    try:
        _run(out, None, on_error="raise", fail_rank=1)
        return {"raised": None}
    except Exception as e:
        return {"raised": f"{type(e).__name__}: {e}"}


def _edges(out: str) -> dict:
    """Three short scenarios in one pair of processes (each start costs seconds): a failure on
    one rank with on_error='raise', one instance on two ranks, a failed write on rank zero."""
    return {"raise": _raising(os.path.join(out, "raise")),
            "few": _fewer_than_ranks(os.path.join(out, "few")),
            "write": _failing_write(out)}


def _worker(rank: int, store: str, out: str, mode: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        if mode == "equal":
            report = _run(out, None)
        elif mode == "warn":
            os.environ.pop("DEEPVID_TESTING", None)  # let the policy warn instead of raise
            report = _run(out, None, on_error="warn", fail_rank=1)
        else:
            report = _edges(out)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(report, f)
    finally:
        dist.destroy_process_group()


def _spawn(tmp, mode: str) -> list[dict]:
    mp.start_processes(_worker, args=(str(tmp / "store"), str(tmp), mode), nprocs=WORLD,
                       start_method="spawn")
    out = []
    for rank in range(WORLD):
        with open(tmp / f"rank{rank}.json") as f:
            out.append(json.load(f))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    two = tmp_path_factory.mktemp("two")
    reports = _spawn(two, "equal")
    one = tmp_path_factory.mktemp("one")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: the same kernels, so the same bits
    try:
        single = _run(str(one), False)
    finally:
        torch.set_num_threads(threads)
    return one, two, single, reports


def _close(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert isinstance(b, float) and abs(a - b) <= 1e-6 * max(1.0, abs(a)), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
def test_two_ranks_share_the_work_and_rank_zero_alone_writes(runs):
    one, two, single, (r0, r1) = runs
    assert single["failures"] == {} and r0["failures"] == {} and r1["failures"] == {}
    assert single["written_steps"] == [0, 1] == r0["written_steps"]
    assert r1["written_steps"] == []
    # rank zero returns every record of every kind; the other rank none
    at_least = 3 * K + 2 + 1  # 3 instance kinds x K instances, 2 layers, 1 or more classes
    assert r0["returned"] == single["returned"] and r0["returned"][0] >= at_least
    assert r1["returned"] == [0, 0]
    # the VAE was fitted once, on rank zero, and reached rank one through its state
    assert (r0["generator_source"], r1["generator_source"]) == ("fitted", "checkpoint")
    assert r0["last_steps"] == r1["last_steps"] == {k: 1 for k in KINDS}
    tb = two / "tb"
    assert len([f for f in os.listdir(tb) if "tfevents" in f]) == 1
    assert os.path.exists(tb / "deepvid-vae.pt")


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_subject_once_and_equal_to_one_process(runs, kind):
    one, two, _, _ = runs
    steps_two, steps_one = kind_steps(two / "tb", kind), kind_steps(one / "tb", kind)
    assert steps_two == steps_one and steps_two["."]
    for subject, steps in steps_two["."].items():
        assert steps == [0, 1], (kind, subject)  # exactly once per explained epoch
    if kind in ("deepvid", "gradcam", "cam_agreement"):
        assert sorted(steps_two["."]) == [str(i) for i in range(K)]
    compared = 0
    for subject in steps_two["."]:
        for step in range(EPOCHS):
            a = records(one / "tb", ".", subject, step, kind=kind)
            b = records(two / "tb", ".", subject, step, kind=kind)
            a, b = (getattr(r, "to_record", lambda r=r: r)() for r in (a, b))
            assert a.arrays.keys() == b.arrays.keys()
            for name, arr in a.arrays.items():
                other = b.arrays[name]
                assert arr.dtype == other.dtype and arr.shape == other.shape, (kind, name)
                assert np.allclose(arr.astype(np.float64), other.astype(np.float64),
                                   rtol=0, atol=1e-6), (kind, subject, step, name)
                compared += arr.size
            _close(a.meta, b.meta, f"{kind}/{subject}/{step}.meta")
            _close(a.settings, b.settings, f"{kind}/{subject}/{step}.settings")
    assert compared > 0


@pytest.mark.slow
def test_a_failure_on_one_rank_is_counted_on_every_rank(tmp_path):
    r0, r1 = _spawn(tmp_path, "warn")
    # the broken kind failed at both epochs, on both ranks; the other kind ran everywhere
    assert r0["failures"] == r1["failures"] == {"gradcam.explain": 2}
    assert r0["last_steps"] == r1["last_steps"] == {"gradcam": None, "deepvid": 1}
    assert r0["written_steps"] == [0, 1] and r0["returned"] == [K, K]
    assert kind_steps(tmp_path / "tb", "gradcam") == {}


@pytest.fixture(scope="module")
def edges(tmp_path_factory):
    out = tmp_path_factory.mktemp("edges")
    return out, _spawn(out, "edges")


@pytest.mark.slow
def test_a_failure_on_one_rank_raises_on_every_rank(edges):
    _, (r0, r1) = edges
    assert r1["raise"]["raised"] == "RuntimeError: broken on rank 1"
    assert r0["raise"]["raised"].startswith(
        "RankFailed: rank 1 of 2 failed: RuntimeError: broken on")


@pytest.mark.slow
def test_more_ranks_than_instances(edges):
    """One instance on two ranks: rank one's share is empty, it explains nothing and still
    takes part."""
    out, (r0, r1) = edges
    r0, r1 = r0["few"], r1["few"]
    assert r0["failures"] == r1["failures"] == {}
    assert r0["returned"] == [2, 2] and r1["returned"] == [0, 0]  # deepvid + gradcam, 1 each
    assert r0["written_steps"] == [0, 1] and r1["written_steps"] == []
    assert kind_steps(out / "few" / "tb", "gradcam") == {".": {"0": [0, 1]}}


@pytest.mark.slow
def test_a_failed_write_on_rank_zero_raises_on_every_rank(edges):
    """Only rank zero writes; with on_error='raise' its failure must not leave rank one going on
    into training collectives that rank zero will never join."""
    _, (r0, r1) = edges
    assert r0["write"]["raised"] == "OSError: disk full"
    assert r1["write"]["raised"].startswith("RankFailed: rank 0 of 2 failed: OSError: disk full")
