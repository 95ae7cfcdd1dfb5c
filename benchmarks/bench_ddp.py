"""Scale-out under DDP: explanation wall time per epoch with 1, 2 and 4 gloo processes (one
torch thread each), and how much of it is the ranks meeting (waiting for the slowest, the
gather of records to rank zero).

Workloads, each through ``DeepVIDCallback`` exactly as a ``torch.distributed`` training loop
uses it (every rank calls ``on_epoch_end``; rank zero writes to a real TensorBoard logdir):

- **instances**: DeepVID (default settings: 512 neighbours) and Grad-CAM on 16 digits with the
  digits CNN: the tracked instances are split over the ranks and the records gathered;
- **probe images**: Summit on bench_summit's workload (a random ResNet-18 at 32x32, every
  BasicBlock, 50 smooth synthetic images per class): the probe batches are split over the ranks
  and the counts summed on rank zero.

Per world size: the first epoch (neighbours generated) is left out; the next ``EPOCHS`` are
timed on every rank between barriers, and the row gives the median epoch (the slowest rank's
time). Collective time is measured inside ``Group`` (the callback's only door to
``torch.distributed``) on rank zero: ``sync_s`` is the exchange of outcomes (it includes waiting
for the slowest rank), ``gather_s`` the transfer of records (and, for Summit, its own
exchanges). Every world size also checks that rank zero's records equal the 1-process ones.

This box has 2 cores: 2 ranks get one core each, 4 ranks share 2 cores (each runs at about half
speed), so the 4-rank row measures oversubscription, not scale-out; the notes extrapolate to 8
GPU ranks from the 1- and 2-rank rows.
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from typing import Any

import torch

QUICK = os.environ.get("DEEPVID_BENCH_QUICK", "") not in ("", "0")
K = 16
EPOCHS = 2 if QUICK else 4  # timed epochs after the first
WORLDS = (1, 2) if QUICK else (1, 2, 4)
PER_CLASS = 5 if QUICK else 50  # Summit's probe images per class (bench_summit's workload)


def _timed_group_class():
    from deepvid_plugin.core.collective import Group

    class TimedGroup(Group):
        """The callback's Group, timing every collective it makes (per method)."""

        spent: dict[str, float] = {}

        def _timed(self, name, fn, *args):
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - t0

        def all_gather(self, obj):
            return self._timed("all_gather", super().all_gather, obj)

        def gather(self, obj):
            return self._timed("gather", super().gather, obj)

        def reduce_sum_(self, tensors):
            return self._timed("reduce", super().reduce_sum_, tensors)

    return TimedGroup


def _callback(workload: str, model, vae, logdir: str, distributed: bool):
    from deepvid_plugin.callbacks import DeepVIDCallback, GradCAMExplainer, SummitExplainer
    from deepvid_plugin.demo.digits import load_digits
    from deepvid_plugin.explain import GradCAM
    from deepvid_plugin.methods.summit import Summit

    if workload == "instances":
        d = load_digits()
        x, y = d.x_test[:K], d.y_test[:K]
        options: dict[str, Any] = {"generator": vae, "explainers": [GradCAMExplainer(GradCAM())]}
        if QUICK:
            options["n_neighbours"] = 64
    else:
        from benchmarks.bench_summit import RESNET_ALL

        px, py = _probe()
        summit = Summit(px, py, RESNET_ALL, per_class=PER_CLASS)
        x, y = px[:K], py[:K]
        options = {"explainers": [SummitExplainer(summit, every_n_epochs=1)]}
    return DeepVIDCallback(model, x, labels=y, logdir=logdir, progress=False,
                           distributed=distributed, **options)


def _probe() -> tuple[torch.Tensor, torch.Tensor]:
    """bench_summit's ResNet probe: smooth synthetic 32x32 images, PER_CLASS per class."""
    from torch.nn import functional as F

    g = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand(10 * PER_CLASS, 3, 8, 8, generator=g), size=32,
                      mode="bilinear", align_corners=False)
    return x, torch.arange(10 * PER_CLASS) % 10


def _model(workload: str, model_path: str) -> torch.nn.Module:
    if workload == "instances":
        from deepvid_plugin.demo.digits import DigitsCNN

        model = DigitsCNN()
        model.load_state_dict(torch.load(model_path, weights_only=True))
        return model
    import torchvision

    torch.manual_seed(0)  # the same random ResNet-18 on every rank and in every run
    return torchvision.models.resnet18(num_classes=10)


def _worker(rank: int, world: int, port: int, workload: str, model_path: str, vae_path: str,
            out: str) -> None:
    import torch.distributed as dist

    from deepvid_plugin.explain import VAE

    torch.set_num_threads(1)  # one core per rank, as DDP on a CPU host gives it
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    model = _model(workload, model_path)
    vae = VAE.load(vae_path)
    with tempfile.TemporaryDirectory() as logdir:
        cb = _callback(workload, model, vae, logdir, world > 1)
        timed = None
        if world > 1:
            g = cb.explanations.group
            timed = _timed_group_class()(g.rank, g.world_size, g.group)
            cb.explanations.group = timed
        writing = [0.0]
        write = cb.explanations.write

        def timed_write(*args):  # rank zero's writing to TensorBoard, timed apart
            t0 = time.perf_counter()
            write(*args)
            writing[0] += time.perf_counter() - t0

        cb.explanations.write = timed_write
        with cb:
            cb.on_epoch_end(0)  # the first epoch: neighbours, solver states, VAE state
            walls, computes, writes, spent_per_epoch = [], [], [], []
            records = []
            for epoch in range(1, EPOCHS + 1):
                if timed is not None:
                    timed.spent.clear()
                    dist.barrier()
                writing[0] = 0.0
                t0 = time.perf_counter()
                records = cb.on_epoch_end(epoch)
                t1 = time.perf_counter()
                spent = dict(timed.spent) if timed is not None else {}
                computes.append(t1 - t0 - sum(spent.values()) - writing[0])
                writes.append(writing[0])
                spent_per_epoch.append(spent)
                wall = t1 - t0
                if world > 1:  # the epoch lasts until the slowest rank is done
                    box = [None] * world
                    dist.all_gather_object(box, wall)
                    wall = max(box)
                walls.append(wall)
        if rank == 0:
            from deepvid_plugin.core import kinds

            encoded = [kinds.as_record(r).encode() for r in records]
            torch.save({"walls": walls, "computes": computes, "writes": writes,
                        "spent": spent_per_epoch, "records": encoded}, out)
    if world > 1:
        dist.destroy_process_group()


def _measure(workload: str, world: int, model_path: str, vae_path: str, tmp: str
             ) -> dict[str, Any]:
    import torch.multiprocessing as mp

    out = os.path.join(tmp, f"{workload}-{world}.pt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(world, port, workload, model_path, vae_path, out),
                       nprocs=world, start_method="spawn")
    return torch.load(out, weights_only=True)


def _assets(tmp: str) -> tuple[str, str]:
    from benchmarks.bench_callback import _vae
    from deepvid_plugin.demo.digits import load_digits, train_digits_cnn

    d = load_digits()
    torch.manual_seed(0)
    model = train_digits_cnn(d, epochs=2)
    model_path, vae_path = os.path.join(tmp, "model.pt"), os.path.join(tmp, "vae.pt")
    torch.save(model.state_dict(), model_path)
    _vae(d.x_train, 2 if QUICK else 10).save(vae_path)
    return model_path, vae_path


def run() -> dict[str, Any]:
    load_start = [round(v, 2) for v in os.getloadavg()]
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        model_path, vae_path = _assets(tmp)
        for workload in ("instances", "probe images"):
            base = None
            for world in WORLDS:
                got = _measure(workload, world, model_path, vae_path, tmp)
                wall = statistics.median(got["walls"])
                i = got["walls"].index(sorted(got["walls"])[len(got["walls"]) // 2])
                spent = got["spent"][i]
                if base is None:
                    base = {"wall": wall, "records": got["records"]}
                sync, gather = spent.get("all_gather", 0.0), (spent.get("gather", 0.0)
                                                              + spent.get("reduce", 0.0))
                rows.append({
                    "workload": workload, "ranks": world, "epoch_s": round(wall, 3),
                    "speedup": round(base["wall"] / wall, 2),
                    "rank0_compute_s": round(got["computes"][i], 3),
                    "rank0_write_s": round(got["writes"][i], 3),
                    "sync_s": round(sync, 4), "gather_s": round(gather, 4),
                    "gather_share": round((sync + gather) / wall, 3) if world > 1 else 0.0,
                    "records": len(got["records"]),
                    "record_mb": round(sum(len(b) for b in got["records"]) / 2 ** 20, 2),
                    "records_equal_1_process": got["records"] == base["records"],
                    "epochs_timed": len(got["walls"])})
    by = {(r["workload"], r["ranks"]): r for r in rows}
    for workload in ("instances", "probe images"):
        one, two = by[(workload, 1)], by.get((workload, 2))
        if two is None:
            continue
        comm = two["gather_s"]
        serial = max(0.0, two["epoch_s"] - one["epoch_s"] / 2 - comm)
        est8 = one["epoch_s"] / 8 + serial + comm
        notes.append(
            f"{workload}: 8 GPU ranks, extrapolated: about {est8:.3f} s per epoch against "
            f"{one['epoch_s']:.3f} s on one ({one['epoch_s'] / est8:.1f}x), assuming (1) every "
            f"rank has its own device, so the per-rank compute divides by the ranks as it did "
            f"from 1 to 2 processes here ({one['epoch_s']:.3f} -> {two['rank0_compute_s']:.3f} "
            f"s on rank zero); (2) what did not halve at 2 ranks ({serial:.3f} s: rank zero's "
            f"writing, uneven shares, the wait for the slower rank) stays; (3) the gather stays near its "
            f"2-rank cost ({comm:.4f} s for {two['record_mb']} MB of records over gloo on one "
            f"host; NCCL or a fast interconnect is not slower). With {K} instances, 8 ranks "
            f"get 2 each: more ranks than instances gain nothing more for per-instance kinds.")
    four = [r for r in rows if r["ranks"] == 4]
    if four:
        notes.append("4 ranks on this 2-core box run 2 processes per core: each computes at "
                     "about half speed, so the 4-rank epoch is no faster than the 2-rank one "
                     "and its sync time grows (ranks wait for descheduled peers); it shows the "
                     "mechanism works at 4 ranks and the records stay identical, not the "
                     "speed-up 4 devices would give.")
    notes.append(f"Load average (1, 5, 15 min): {load_start} at start, "
                 f"{[round(v, 2) for v in os.getloadavg()]} at the end, on {os.cpu_count()} "
                 f"cores shared with other jobs.")
    equal = all(r["records_equal_1_process"] for r in rows)
    two_rows = [r for r in rows if r["ranks"] == 2]
    return {
        "title": "DDP scale-out: explanations sharded over gloo ranks",
        "settings": {"instances": K, "neighbours": 64 if QUICK else 512,
                     "kinds (instances)": "deepvid + gradcam, digits CNN",
                     "kinds (probe images)": f"summit, ResNet-18 all blocks, {PER_CLASS} per "
                                             f"class",
                     "ranks": list(WORLDS), "threads per rank": 1,
                     "epochs timed": EPOCHS, "quick": QUICK},
        "rows": rows,
        "targets": [
            {"name": "records of 2 and 4 ranks equal the 1-process records", "value": equal,
             "target": "== True", "met": equal,
             "note": "every array and field of every record rank zero returns"},
            *[{"name": f"{r['workload']}: 2-rank speed-up", "value": r["speedup"],
               "target": ">= 1.5", "met": r["speedup"] >= 1.5,
               "note": f"{r['epoch_s']} s per epoch, of which {r['sync_s'] + r['gather_s']:.4f} "
                       f"s meeting the other rank"} for r in two_rows],
        ],
        "notes": notes,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
