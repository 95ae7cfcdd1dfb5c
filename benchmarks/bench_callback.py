"""Callback overhead: epoch time with DeepVIDCallback at every epoch / epoch time without.

Measured from one run per workload: each epoch's training time and the callback's time (explain
16 instances with the callback's default number of neighbours, evidence included, and write to a
real TensorBoard logdir) are timed separately, and each epoch's ratio is
``(train + callback) / train``. The first epoch also generates the neighbours and the solver
caches, once per instance; it is reported (and targeted) on its own.

- (a) the demo workload: DigitsCNN on scikit-learn's digits (1,438 images per epoch);
- (b) CIFAR-sized: ResNet-18 on 10k synthetic 32x32x3 images per epoch (target <= 1.10 at every
  epoch). When ``TRAIN_FRACTION < 1`` (a loaded shared machine, where a 10k-image epoch takes
  minutes), each epoch trains on that fraction of the 79 batches and its time is scaled up to the
  full epoch; the callback is timed in full either way, and the notes say which was used;
- what would meet the target instead of the defaults: the same run amortised over a sparser
  cadence, and the callback with fewer neighbours on the same model;
- how the per-epoch cost grows with instances and neighbours (digits CNN).

DDP is measured in ``bench_ddp``.

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

K, M = 16, 512  # M: the scaling table only; the overhead runs use the defaults
QUICK = os.environ.get("DEEPVID_BENCH_QUICK", "") not in ("", "0")
TARGET_OVERHEAD = 1.10  # (train + callback) / train, every epoch after the first
TARGET_FIRST = 1.5  # the same, first epoch (neighbours generated, solver states built)
RESNET_EPOCHS = 3  # the first (neighbours generated) + 2 steady epochs
TRAIN_FRACTION = 0.25  # share of each ResNet epoch's batches trained and timed (then scaled)


def default_neighbours() -> int:
    """The callback's own default ``n_neighbours`` (what a user gets)."""
    import inspect

    from deepvid_plugin.callbacks import DeepVIDCallback

    return inspect.signature(DeepVIDCallback).parameters["n_neighbours"].default


def _vae(x: torch.Tensor, epochs: int):
    """A VAE fitted on ``x``, cached under benchmarks/.cache by a fingerprint of the data."""
    import hashlib

    from benchmarks.faithfulness_workloads import fit_vae

    digest = hashlib.sha1(x.contiguous().numpy().tobytes()).hexdigest()[:16]
    return fit_vae(x, epochs, {"data": "callback", "sha1": digest})[0]


def _train_epoch(model, opt, x, y, batch: int, gen: torch.Generator,
                 fraction: float = 1.0) -> float:
    """Train one epoch (or its first ``fraction`` of batches); returns the share trained."""
    model.train()
    batches = torch.randperm(len(y), generator=gen).split(batch)
    n = max(1, round(len(batches) * fraction))
    for idx in batches[:n]:
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return n / len(batches)


def overhead(model, x, y, x_tracked, vae, epochs: int, batch: int, k: int = K,
             fraction: float = 1.0) -> dict[str, Any]:
    """Per-epoch train and callback times from one run, with the callback's defaults (only
    QUICK shrinks the neighbours)."""
    from deepvid_plugin.callbacks import DeepVIDCallback

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    train_s, cb_s, train_cpu, cb_cpu = [], [], [], []
    options = {"n_neighbours": 64} if QUICK else {}
    with tempfile.TemporaryDirectory() as logdir, \
            DeepVIDCallback(model, x_tracked[:k], generator=vae, logdir=logdir, progress=False,
                            **options) as cb:
        for epoch in range(epochs):
            t0, c0 = time.perf_counter(), time.process_time()
            share = _train_epoch(model, opt, x, y, batch, gen, fraction)
            t1, c1 = time.perf_counter(), time.process_time()
            records = cb.on_epoch_end(epoch)
            t2, c2 = time.perf_counter(), time.process_time()
            if len(records) != k:
                raise RuntimeError(f"callback returned {len(records)} records, expected {k}")
            train_s.append((t1 - t0) / share)
            train_cpu.append((c1 - c0) / share)
            cb_s.append(t2 - t1)
            cb_cpu.append(c2 - c1)
    ratios = [(t + c) / t for t, c in zip(train_s, cb_s, strict=True)]
    cpu_ratios = [(t + c) / t for t, c in zip(train_cpu, cb_cpu, strict=True)]
    steady = list(range(1, epochs)) if epochs > 1 else [0]
    return {"epochs": epochs, "train_s_per_epoch": round(statistics.mean(train_s), 3),
            "callback_s_per_epoch": round(statistics.mean(cb_s[i] for i in steady), 3),
            "train_cpu_s_per_epoch": round(statistics.mean(train_cpu), 3),
            "callback_cpu_s_per_epoch": round(statistics.mean(cb_cpu[i] for i in steady), 3),
            "first_epoch_callback_s": round(cb_s[0], 3),
            "overhead_ratio": round(max(ratios[i] for i in steady), 4),
            "first_epoch_ratio": round(ratios[0], 4),
            "ratio_per_epoch": [round(r, 3) for r in ratios],
            "cpu_ratio_per_epoch": [round(r, 3) for r in cpu_ratios],
            "train_fraction_timed": round(share, 3)}


def demo_workload() -> dict[str, Any]:
    from deepvid_plugin.demo.digits import DigitsCNN, load_digits

    d = load_digits()
    torch.manual_seed(0)
    vae = _vae(d.x_train, 2 if QUICK else 10)
    res = overhead(DigitsCNN(), d.x_train, d.y_train, d.x_test, vae,
                   epochs=2 if QUICK else 4, batch=64)
    return {"workload": "(a) demo: DigitsCNN, 1,438 digits/epoch, batch 64", **res}


def cifar_workload() -> tuple[dict[str, Any], Any, torch.Tensor, Any]:
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
    res = overhead(model, x, y, x[-K:].clone(), vae, epochs=2 if QUICK else RESNET_EPOCHS,
                   batch=128, fraction=0.1 if QUICK else TRAIN_FRACTION)
    row = {"workload": f"(b) ResNet-18, {n:,} synthetic 32x32x3 images/epoch, batch 128", **res}
    return row, model, x[-K:].clone(), vae


def scaling() -> list[dict[str, Any]]:
    """Per-epoch callback cost (neighbours cached) vs instances and neighbours, digits CNN."""
    from deepvid_plugin.demo.digits import load_digits, train_digits_cnn
    from deepvid_plugin.explain import DeepVID

    d = load_digits()
    model = train_digits_cnn(d, epochs=2)
    vae = _vae(d.x_train, 2)
    rows = []
    # 2048 neighbours (measured before: ~4x the 512 cost) left out to fit a loaded machine.
    ks, ms = ((4, 16), (64, 256)) if QUICK else ((4, 16, 64), (128, 512))
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


def fewer_neighbours(model, x_tracked, vae, neighbours: int, epochs: int = 2) -> float:
    """The callback's per-epoch time with ``neighbours`` instead of the default, on the model
    the overhead run trained (the callback's cost does not depend on what it learnt): the
    later epochs' mean."""
    from deepvid_plugin.callbacks import DeepVIDCallback

    times = []
    with tempfile.TemporaryDirectory() as logdir, \
            DeepVIDCallback(model, x_tracked[:K], generator=vae, logdir=logdir, progress=False,
                            n_neighbours=neighbours) as cb:
        for epoch in range(epochs + 1):
            t0 = time.perf_counter()
            cb.on_epoch_end(epoch)
            times.append(time.perf_counter() - t0)
    return statistics.mean(times[1:])


def _run() -> dict[str, Any]:
    load_start = [round(v, 2) for v in os.getloadavg()]
    m = 64 if QUICK else default_neighbours()
    a = demo_workload()
    b, resnet, x_tracked, vae = cifar_workload()
    train = b["train_s_per_epoch"]
    alternatives = []
    for every in (2, 3):  # the same run, amortised: the callback at every N-th epoch
        ratio = (every * train + b["callback_s_per_epoch"]) / (every * train)
        alternatives.append({"workload": f"(b) at every_n_epochs={every} (amortised, same run)",
                             "overhead_ratio": round(ratio, 4)})
    for nb in (() if QUICK else (128, 256)):
        cb_s = fewer_neighbours(resnet, x_tracked, vae, nb)
        alternatives.append({"workload": f"(b) with n_neighbours={nb} (same trained model)",
                             "callback_s_per_epoch": round(cb_s, 3),
                             "overhead_ratio": round((train + cb_s) / train, 4)})
    rows = [a, b, *alternatives, *scaling()]
    timed_share = b["train_fraction_timed"]
    notes = [
        "overhead_ratio = (train + callback) / train of the worst epoch after the first; "
        "first_epoch_ratio is the first epoch's (it also generates and caches the neighbours "
        "and the solver state: first_epoch_callback_s); ratio_per_epoch lists every epoch.",
        f"The callback's cost is dominated by the teacher's forward passes: K x (M + 1) = "
        f"{K} x {m + 1} = {K * (m + 1):,} images per epoch plus the evidence's 46 per "
        f"instance, i.e. about {K * (m + 1) / 10_000:.0%} of the images a 10k-image epoch trains "
        f"on, at roughly a third of the cost per image (forward only, no_grad): at 512 "
        f"neighbours the forward passes alone are ~0.27 of a training epoch, so <= 1.10 at "
        f"every epoch cannot be met at the default neighbours on any device; the rows "
        f"'at every_n_epochs=N' and 'with n_neighbours=N' give what would meet it (and "
        f"bench_faithfulness what fewer neighbours cost).",
        ("(b) trained and timed every batch of each 10k-image epoch." if timed_share >= 1 else
         f"(b) trained and timed {timed_share:.0%} of each epoch's batches and scaled that time "
         f"to the full 10k-image epoch (the machine was too loaded for full epochs in the time "
         f"available); the callback ran in full at every epoch."),
        "DDP: bench_ddp measures the callback sharded over 1, 2 and 4 gloo ranks.",
        f"Load average (1, 5, 15 min): {load_start} at start, "
        f"{[round(v, 2) for v in os.getloadavg()]} at the end, on {os.cpu_count()} cores shared "
        f"with other jobs. Train and callback times of an epoch are taken back to back, so "
        f"load slows both, but not equally; the ratio by process CPU time "
        f"(cpu_ratio_per_epoch) is less disturbed.",
    ]
    return {
        "title": "Callback overhead (DeepVIDCallback at every epoch)",
        "settings": {"instances": K, "neighbours (overhead runs)": f"{m} (the callback's default)"
                     if not QUICK else 64, "neighbours (scaling)": M,
                     "sink": "TensorBoard logdir (real files)",
                     "threads": torch.get_num_threads(), "quick": QUICK},
        "rows": rows,
        "targets": [
            {"name": "(b) ResNet-18 10k-image epoch: overhead ratio, worst epoch after the first",
             "value": b["overhead_ratio"], "target": f"<= {TARGET_OVERHEAD}",
             "met": b["overhead_ratio"] <= TARGET_OVERHEAD,
             "note": f"(train + callback) / train per epoch, same run; epochs: "
                     f"{b['ratio_per_epoch']}; by process CPU time: {b['cpu_ratio_per_epoch']}"},
            {"name": "(b) ResNet-18 10k-image epoch: overhead ratio, first epoch",
             "value": b["first_epoch_ratio"], "target": f"<= {TARGET_FIRST}",
             "met": b["first_epoch_ratio"] <= TARGET_FIRST,
             "note": f"includes generating the neighbours ({b['first_epoch_callback_s']} s "
                     f"callback vs {b['callback_s_per_epoch']} s later)"},
        ],
        "notes": notes,
    }


def run() -> dict[str, Any]:
    """One torch thread for everything measured (restored afterwards): on the shared 2-core box
    two threads per process made the ratios noise."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run()
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
