"""Callback overhead: epoch time with DeepVIDCallback at every epoch / epoch time without.

Measured from one run per workload: each epoch's training time and the callback's time (explain
16 instances x 512 neighbours + write to a real TensorBoard logdir) are timed separately, and the
ratio is ``(train + callback) / train`` over the epochs after the first (the first one also
generates the neighbours, once per instance; it is reported on its own).

- (a) the demo workload: DigitsCNN on scikit-learn's digits (1,438 images per epoch);
- (b) CIFAR-sized: ResNet-18 on 10k synthetic 32x32x3 images per epoch (target <= 5% overhead);
- how the per-epoch cost grows with instances and neighbours (digits CNN);
- DDP: rank zero computes vs shard-and-gather, 2 gloo CPU processes (the measurement behind the
  choice documented in ``callbacks/lightning.py``).

``DEEPVID_BENCH_QUICK=1`` shrinks everything for a smoke run.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

import torch
from torch.nn import functional as F

K, M = 16, 512
QUICK = os.environ.get("DEEPVID_BENCH_QUICK", "") not in ("", "0")


def _vae(x: torch.Tensor, epochs: int):
    from deepvid_plugin.explain import VAE

    torch.manual_seed(0)
    vae = VAE.for_data(x)
    vae.fit(x, epochs=epochs, progress=False)
    return vae


def _train_epoch(model, opt, x, y, batch: int, gen: torch.Generator) -> None:
    model.train()
    for idx in torch.randperm(len(y), generator=gen).split(batch):
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def overhead(model, x, y, x_tracked, vae, epochs: int, batch: int, k: int = K,
             m: int = M) -> dict[str, Any]:
    """Per-epoch train and callback times from one run."""
    from deepvid_plugin.callbacks import DeepVIDCallback

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    train_s, cb_s = [], []
    with tempfile.TemporaryDirectory() as logdir, \
            DeepVIDCallback(model, x_tracked[:k], generator=vae, n_neighbours=m,
                            logdir=logdir, progress=False) as cb:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            _train_epoch(model, opt, x, y, batch, gen)
            t1 = time.perf_counter()
            records = cb.on_epoch_end(epoch)
            t2 = time.perf_counter()
            if len(records) != k:
                raise RuntimeError(f"callback returned {len(records)} records, expected {k}")
            train_s.append(t1 - t0)
            cb_s.append(t2 - t1)
    steady = range(1, epochs) if epochs > 1 else range(epochs)
    train = statistics.mean(train_s[i] for i in steady)
    cb_time = statistics.mean(cb_s[i] for i in steady)
    return {"epochs": epochs, "train_s_per_epoch": round(train, 3),
            "callback_s_per_epoch": round(cb_time, 3),
            "first_epoch_callback_s": round(cb_s[0], 3),
            "overhead_ratio": round((train + cb_time) / train, 4)}


def demo_workload() -> dict[str, Any]:
    from deepvid_plugin.digits import DigitsCNN, load_digits

    d = load_digits()
    torch.manual_seed(0)
    vae = _vae(d.x_train, 2 if QUICK else 10)
    res = overhead(DigitsCNN(), d.x_train, d.y_train, d.x_test, vae,
                   epochs=2 if QUICK else 4, batch=64)
    return {"workload": "(a) demo: DigitsCNN, 1,438 digits/epoch, batch 64", **res}


def cifar_workload() -> dict[str, Any]:
    import torchvision

    n = 1000 if QUICK else 10_000
    g = torch.Generator().manual_seed(0)
    # Smooth synthetic images (upsampled noise): CIFAR's size and statistics roughly, no download.
    x = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear",
                      align_corners=False)
    y = torch.randint(0, 10, (n,), generator=g)
    vae = _vae(x[:2000], 2)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    res = overhead(model, x, y, x[-K:].clone(), vae, epochs=2, batch=128)
    return {"workload": f"(b) ResNet-18, {n:,} synthetic 32x32x3 images/epoch, batch 128", **res}


def scaling() -> list[dict[str, Any]]:
    """Per-epoch callback cost (neighbours cached) vs instances and neighbours, digits CNN."""
    from deepvid_plugin.digits import load_digits, train_digits_cnn
    from deepvid_plugin.explain import DeepVID

    d = load_digits()
    model = train_digits_cnn(d, epochs=2)
    vae = _vae(d.x_train, 2)
    rows = []
    ks, ms = ((4, 16), (64, 256)) if QUICK else ((4, 16, 64), (128, 512, 2048))
    for k in ks:
        for m in ms:
            dv = DeepVID(vae, n_neighbours=m)
            t0 = time.perf_counter()
            dv.explain(model, d.x_test[:k])
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            dv.explain(model, d.x_test[:k], step=1)
            again = time.perf_counter() - t0
            rows.append({"workload": "scaling (digits CNN)", "instances": k, "neighbours": m,
                         "first_call_s": round(first, 3), "per_epoch_s": round(again, 3),
                         "ms_per_instance": round(1000 * again / k, 1)})
    return rows


# ---- DDP: rank zero vs shard-and-gather ------------------------------------------------------
def _ddp_worker(rank: int, world: int, port: int, vae_path: str, out: str) -> None:
    import torch.distributed as dist

    from deepvid_plugin.digits import DigitsCNN, load_digits
    from deepvid_plugin.explain import VAE, DeepVID

    torch.set_num_threads(1)  # one core per rank, as DDP on a CPU host gives it
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    d = load_digits()
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    x, ids = d.x_test[:K], [str(i) for i in range(K)]
    dv = DeepVID(VAE.load(vae_path), n_neighbours=M)
    dv.explain(model, x, ids=ids)  # warm: neighbours cached on every rank
    mine = list(range(rank, K, world))
    timings: dict[str, list[float]] = {"rank0": [], "shard": []}
    single = sharded = None
    for _ in range(1 if QUICK else 3):
        dist.barrier()
        t0 = time.perf_counter()
        if rank == 0:
            single = dv.explain(model, x, ids=ids, step=1)
        dist.barrier()
        timings["rank0"].append(time.perf_counter() - t0)
        dist.barrier()
        t0 = time.perf_counter()
        part = dv.explain(model, x[mine], ids=[ids[i] for i in mine], step=1)
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(part, gathered, dst=0)
        dist.barrier()
        timings["shard"].append(time.perf_counter() - t0)
        if rank == 0:
            sharded = sorted((r for p in gathered for r in p), key=lambda r: int(r.instance_id))
    if rank == 0:
        diff = max(float(abs(a.student_probs - b.student_probs).max())
                   for a, b in zip(single, sharded, strict=True))
        same = all(a == b for a, b in zip(single, sharded, strict=True))
        torch.save({"rank0_s": min(timings["rank0"]), "shard_s": min(timings["shard"]),
                    "max_weight_diff": diff, "records_equal": same}, out)
    dist.destroy_process_group()


def ddp_choice() -> dict[str, Any]:
    import socket

    import torch.multiprocessing as mp

    from deepvid_plugin.digits import load_digits

    with tempfile.TemporaryDirectory() as tmp:
        vae_path, out = os.path.join(tmp, "vae.pt"), os.path.join(tmp, "out.pt")
        _vae(load_digits().x_train, 2).save(vae_path)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_ddp_worker, args=(2, port, vae_path, out), nprocs=2, join=True)
        res = torch.load(out, weights_only=True)
    return {"workload": f"DDP choice: 2 gloo CPU ranks, 1 thread each, {K} x {M} (digits)",
            "rank0_compute_s": round(res["rank0_s"], 3), "shard_gather_s": round(res["shard_s"], 3),
            "shard_records_equal_1_process": bool(res["records_equal"]),
            "shard_max_student_prob_diff": res["max_weight_diff"]}


def run() -> dict[str, Any]:
    torch.set_num_threads(os.cpu_count() or 1)
    a = demo_workload()
    b = cifar_workload()
    rows = [a, b, *scaling()]
    ddp = ddp_choice()
    rows.append(ddp)
    notes = [
        "Overhead = (train + callback) / train per epoch, from one run, epochs after the first "
        "(the first epoch also generates and caches the neighbours: first_epoch_callback_s).",
        "The callback's cost is dominated by the teacher's forward passes over K x (M+1) images "
        f"({K} x {M + 1} = {K * (M + 1):,} per epoch), i.e. about {K * (M + 1) / 10_000:.0%} "
        "of the images a 10k-image epoch trains on, at roughly a third of the cost per image "
        "(forward only, no_grad); the student fit adds a fixed few hundred ms. So on a CPU the "
        "ratio on (b) is bounded below by about 1 + 0.8/3 unless every_n_epochs > 1 or fewer "
        "neighbours are used; the table shows how the cost scales.",
        f"DDP: shard-and-gather took {ddp['shard_gather_s']}s vs {ddp['rank0_compute_s']}s for "
        "rank zero alone, but the sharded records are not those of a 1-process run "
        f"(records equal: {ddp['shard_records_equal_1_process']}; max |student probability "
        f"difference| {ddp['shard_max_student_prob_diff']:.2e}) because the students of all instances share one "
        "LBFGS refinement. The callback therefore computes on rank zero (callbacks/lightning.py).",
    ]
    return {
        "title": "Callback overhead (DeepVIDCallback at every epoch)",
        "settings": {"instances": K, "neighbours": M, "sink": "TensorBoard logdir (real files)",
                     "threads": torch.get_num_threads(), "quick": QUICK},
        "rows": rows,
        "targets": [{"name": "(b) ResNet-18 CIFAR-sized overhead ratio",
                     "value": b["overhead_ratio"], "target": "<= 1.05",
                     "met": b["overhead_ratio"] <= 1.05,
                     "note": "epoch time with the callback / without, same run"}],
        "notes": notes,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
