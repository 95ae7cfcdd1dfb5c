"""Engine benchmark: DeepVID vs the bare teacher forward vs LIME, at the same sample budget.

Two teachers, each explained on K=16 instances x M=512 neighbours (8,192 teacher evaluations):

1. the digits CNN (``deepvid_plugin.digits.train_digits_cnn``) trained here, explained through a
   VAE fitted on the digits (the demo's workload);
2. a randomly initialised torchvision ResNet-18 (10 classes) on 3x32x32 images, explained through
   a VAE fitted briefly on synthetic smooth colour images (there is no real 32x32 data offline;
   the VAE only has to produce plausible smooth neighbours for a timing).

Measured per teacher:

- (a) ``DeepVID.explain`` with the neighbours already cached: the per-epoch cost inside
  training, since the callback samples each tracked instance's neighbours once. The first call
  (neighbour generation included) is reported separately.
- (b) the bare teacher forward on the same 8,192 neighbours, same chunking (512), eval mode,
  no_grad: the floor, since any perturbation method must show the teacher every sample.
- (c) ``lime_image.LimeImageExplainer().explain_instance`` with ``num_samples=512`` per
  instance, with a per-pixel and a 2x2-block segmentation, ``hide_color=0`` (with LIME's
  default per-segment mean colour, a one-pixel segment is replaced by itself and LIME sees a
  constant teacher), ``batch_size=512`` (the same chunking as (b), so the ratio compares the
  methods, not the batching; LIME's default of 10 is timed once, for information) and
  ``top_labels=1`` (LIME's cheapest useful call; DeepVID explains all 10 classes at once).

Timings are wall-clock, warmed up once, repeated ``REPEATS`` times with the methods interleaved
(so a burst of load from elsewhere hits all of them alike); ratios use the best run of each.
``DEEPVID_BENCH_QUICK=1`` shrinks everything to a smoke run whose numbers mean nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from deepvid_plugin.explain import VAE, DeepVID

K, M, BATCH = 16, 512, 512
REPEATS = 5  # (a)/(b) pairs; LIME (slow) runs in the first LIME_REPEATS of them
LIME_REPEATS = 3
TARGET_OVERHEAD = 1.5  # (a)/(b) <=
TARGET_LIME = 20.0  # (c)/(a) >=
TARGET_AGREEMENT = 0.97  # digits held-out top-1 agreement >=


@dataclass
class Teacher:
    name: str
    model: torch.nn.Module
    generator: Any
    generator_note: str
    x: torch.Tensor  # (K, C, H, W) instances to explain
    note: str


# ---- workloads ---------------------------------------------------------------------------------
def digits_teacher(quick: bool) -> Teacher:
    from deepvid_plugin.digits import accuracy, load_digits, train_digits_cnn

    d = load_digits()
    epochs = 2 if quick else 15
    model = train_digits_cnn(d, epochs=epochs)
    vae = VAE.for_data(d.x_train)
    rep = vae.fit(d.x_train, epochs=2 if quick else 30, progress=False)
    return Teacher("digits CNN (1x8x8)", model, vae,
                   f"VAE fitted on the 1,437 training digits ({rep})",
                   d.x_test[:K], f"DigitsCNN, {epochs} epochs, test accuracy "
                                 f"{accuracy(model, d.x_test, d.y_test):.3f}")


def smooth_images(n: int, seed: int) -> torch.Tensor:
    """(n, 3, 32, 32) images in [0, 1] made of random colour fields at 4x4 and 8x8 scale, upsampled
    smoothly: a stand-in for natural images (no dataset can be downloaded here)."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=32, mode="bicubic",
                           align_corners=False)
    fine = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear",
                         align_corners=False)
    return (0.7 * coarse + 0.3 * fine).clamp(0, 1)


def resnet_teacher(quick: bool) -> Teacher:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    data = smooth_images(256 if quick else 1024, seed=1)
    vae = VAE.for_data(data)
    rep = vae.fit(data, epochs=1 if quick else 5, progress=False)
    return Teacher("ResNet-18 random init (3x32x32)", model, vae,
                   f"VAE fitted briefly on 1,024 synthetic smooth 32x32 colour images ({rep})",
                   smooth_images(K, seed=2), "torchvision resnet18(weights=None, num_classes=10)")


# ---- timing ------------------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and process CPU seconds (all threads). On a shared machine CPU time is much less
    disturbed by other processes than wall time."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, time.process_time() - cpu, out


def forward_only(model: torch.nn.Module, flat: torch.Tensor, batch: int) -> torch.Tensor:
    """(b): what DeepVID's teacher pass costs at least: chunks to the model, logits back."""
    with torch.no_grad():
        return torch.cat([model(c).float().cpu() for c in flat.split(batch)])


def lime_classifier(model: torch.nn.Module, channels: int) -> Callable[[np.ndarray], np.ndarray]:
    """LIME's classifier_fn: a batch of HxWx3 images -> class probabilities. Grayscale teachers
    see the channel mean (LIME replicates the gray image into three equal channels)."""

    def classify(images: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
        if channels == 1:
            t = t.mean(1, keepdim=True)
        with torch.no_grad():
            return F.softmax(model(t), -1).numpy()

    return classify


def segmenter(block: int) -> Callable[[np.ndarray], np.ndarray]:
    def segment(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        rows, cols = np.indices((h, w))
        return (rows // block) * ((w + block - 1) // block) + cols // block

    return segment


def lime_images(x: torch.Tensor) -> list[np.ndarray]:
    imgs = x.permute(0, 2, 3, 1).numpy().astype(np.float64)
    return [np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im for im in imgs]


def run_lime(images, classify, block: int, n_samples: int, batch: int) -> list[float]:
    """(c): LIME on every instance; returns LIME's own scores (in-sample weighted R^2)."""
    from lime import lime_image

    explainer = lime_image.LimeImageExplainer(random_state=0)
    scores = []
    # lime draws a tqdm bar per instance on stderr; keep the log readable (the bar stays on).
    with contextlib.redirect_stderr(io.StringIO()):
        for i, im in enumerate(images):
            exp = explainer.explain_instance(im, classify, top_labels=1, hide_color=0,
                                             num_samples=n_samples, batch_size=batch,
                                             segmentation_fn=segmenter(block), random_seed=i)
            scores.append(float(exp.score))
    return scores


def bench_teacher(t: Teacher, k: int, m: int, repeats: int, lime_repeats: int) -> dict[str, Any]:
    ids = [f"i{i}" for i in range(k)]
    x = t.x[:k]
    # Warm-up (allocator, thread pools, lazy init) on other ids so the first call stays "first".
    DeepVID(t.generator, n_neighbours=m).explain(t.model, x[:2], ids=["warm0", "warm1"])

    first, explainer = [], None
    for _ in range(repeats):
        explainer = DeepVID(t.generator, n_neighbours=m)  # defaults otherwise
        dt, _ = timed(lambda e=explainer: e.explain(t.model, x, ids=ids))
        first.append(dt)
    flat = explainer.neighbours(x, ids).flatten(0, 1)  # the same K*M neighbours (a) uses
    images = lime_images(x)
    classify = lime_classifier(t.model, x.shape[1])
    run_lime(images[:1], classify, 1, m, BATCH)  # warm-up
    run_lime(images[:1], classify, 2, m, BATCH)

    # Each repetition measures the methods back to back, so their ratio is taken under the same
    # load; the targets use the median of these paired ratios.
    a, b, c1, c2, a_cpu, b_cpu, scores1, scores2, records = [], [], [], [], [], [], [], [], None
    for i in range(repeats):
        dt, cpu, records = timed_cpu(lambda: explainer.explain(t.model, x, ids=ids))
        a.append(dt)
        a_cpu.append(cpu)
        dt, cpu, _ = timed_cpu(lambda: forward_only(t.model, flat, BATCH))
        b.append(dt)
        b_cpu.append(cpu)
        if i < lime_repeats:
            dt, scores1 = timed(lambda: run_lime(images, classify, 1, m, BATCH))
            c1.append(dt)
            dt, scores2 = timed(lambda: run_lime(images, classify, 2, m, BATCH))
            c2.append(dt)
    c_default = timed(lambda: run_lime(images, classify, 1, m, 10))[0]

    fid = [r.fidelity for r in records]
    quality = {"top1_agreement": float(np.mean([f["top1_agreement"] for f in fid])),
               "kl": float(np.mean([f["kl"] for f in fid])),
               "r2_top": float(np.mean([f["r2_top"] for f in fid])),
               "instance_agreement": float(np.mean([f["instance_agreement"] for f in fid])),
               "trustworthy": float(np.mean([f["trustworthy"] for f in fid]))}
    return {"first": first, "a": a, "b": b, "a_cpu": a_cpu, "b_cpu": b_cpu,
            "c_pixel": c1, "c_block": c2,
            "c_pixel_default_batch": c_default, "quality": quality,
            "min_top1": float(min(f["top1_agreement"] for f in fid)),
            "lime_score_pixel": float(np.mean(scores1)), "lime_score_block": float(np.mean(scores2)),
            "n_features": (x.shape[2] * x.shape[3], x.shape[2] * x.shape[3] // 4)}


# ---- report ------------------------------------------------------------------------------------
def paired(num: list[float], den: list[float]) -> float:
    """Median of num[i] / den[i] over the repetitions where both were measured back to back."""
    return statistics.median(n / d for n, d in zip(num, den, strict=False))  # LIME ran in the first few


def rows_for(t: Teacher, r: dict[str, Any]) -> list[dict[str, Any]]:
    b = min(r["b"])
    q = r["quality"]

    def row(what: str, runs: list[float], cpu: list[float] | None = None,
            **extra: Any) -> dict[str, Any]:
        return {"teacher": t.name, "measurement": what, "best_s": min(runs),
                "median_s": statistics.median(runs), "runs": len(runs),
                "x_forward": min(runs) / b, "cpu_best_s": min(cpu) if cpu else None, **extra}

    deepvid_q = {"top1_agreement": q["top1_agreement"], "kl": q["kl"], "r2_top": q["r2_top"],
                 "trustworthy": q["trustworthy"]}
    px, blk = r["n_features"]
    return [
        row("(a) DeepVID explain, neighbours cached", r["a"], r["a_cpu"], **deepvid_q),
        row("(a0) DeepVID first call (generates neighbours)", r["first"], **deepvid_q),
        row("(b) teacher forward only", r["b"], r["b_cpu"]),
        row(f"(c) LIME per-pixel ({px} segments)", r["c_pixel"], lime_score=r["lime_score_pixel"]),
        row(f"(c) LIME 2x2 blocks ({blk} segments)", r["c_block"],
            lime_score=r["lime_score_block"]),
        row("(c') LIME per-pixel, lime's default batch_size=10", [r["c_pixel_default_batch"]],
            lime_score=r["lime_score_pixel"]),
    ]


def targets_for(t: Teacher, r: dict[str, Any], is_digits: bool, k: int,
                m: int) -> tuple[list[dict], list[str]]:
    a, b = min(r["a"]), min(r["b"])
    out, notes = [], []
    ab = paired(r["a"], r["b"])
    out.append({"name": f"{t.name}: (a)/(b) DeepVID / forward", "value": ab,
                "target": f"<= {TARGET_OVERHEAD}", "met": ab <= TARGET_OVERHEAD,
                "note": f"median of {len(r['a'])} back-to-back pairs; best-of ratio {a / b:.2f}, "
                        f"CPU-time ratio {min(r['a_cpu']) / min(r['b_cpu']):.2f}; DeepVID adds "
                        f"{a - b:.2f} s to a {b:.2f} s forward (best runs)"})
    if ab > TARGET_OVERHEAD:
        pairs = ", ".join(f"{x / y:.2f}" for x, y in zip(r["a"], r["b"], strict=True))
        cpu = min(r["a_cpu"]) / min(r["b_cpu"])
        notes.append(
            f"{t.name}: (a)/(b) missed by the median of paired ratios ({ab:.2f}; pairs {pairs}); "
            f"best-of ratio {a / b:.2f}, CPU-time ratio {cpu:.2f}. When the best-of and CPU "
            f"ratios are within target, the miss is load, not method: with load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, each of DeepVID's few hundred "
            f"small ops (student solve, LBFGS) waits at an OpenMP barrier until both torch "
            f"threads get a core, while the forward's few large convolutions barely notice. "
            f"Re-run on a quiet machine (or compare the CPU-time ratio).")
    for key, label in (("c_pixel", "per-pixel"), ("c_block", "2x2 blocks")):
        c = min(r[key])
        ca = paired(r[key], r["a"])
        out.append({"name": f"{t.name}: (c)/(a) LIME {label} / DeepVID", "value": ca,
                    "target": f">= {TARGET_LIME:g}", "met": ca >= TARGET_LIME,
                    "note": f"median of {len(r[key])} back-to-back pairs; best-of ratio "
                            f"{c / a:.2f}. LIME's own work beyond the forward: {c - b:.2f} s vs "
                            f"DeepVID's {a - b:.2f} s ({(c - b) / max(a - b, 1e-9):.1f}x)"})
    if is_digits:
        q = r["quality"]["top1_agreement"]
        out.append({"name": f"{t.name}: DeepVID held-out top-1 agreement (mean of {k})",
                    "value": q, "target": f">= {TARGET_AGREEMENT}", "met": q >= TARGET_AGREEMENT,
                    "note": f"lowest single instance {r['min_top1']:.3f}; default settings"})
    if any(not x["met"] for x in out if "(c)/(a)" in x["name"]):
        notes.append(
            f"{t.name}: (c)/(a) >= {TARGET_LIME:g} is out of reach by construction here. LIME and "
            f"DeepVID both have to run the teacher on the same {k}x{m} samples, so "
            f"(c)/(a) <= (c)/(b) = {min(r['c_pixel']) / b:.2f} (per-pixel) whatever DeepVID does. "
            f"A 20x gap exists only when the teacher is nearly free compared with LIME's per-sample "
            f"Python loop; here the teacher forward is {b / a:.0%} of DeepVID's time. The "
            f"comparison DeepVID controls is the work beyond the forward, in each (c)/(a) note.")
    notes.append(f"{t.name}: at lime's default batch_size=10 (one run), LIME per-pixel takes "
                 f"{r['c_pixel_default_batch']:.2f} s = {r['c_pixel_default_batch'] / a:.1f}x "
                 f"DeepVID's best (a); the small batches mostly slow the teacher down.")
    return out, notes


def run() -> dict[str, Any]:
    quick = os.environ.get("DEEPVID_BENCH_QUICK", "") not in ("", "0")
    k, m, repeats, lime_repeats = (4, 64, 2, 1) if quick else (K, M, REPEATS, LIME_REPEATS)
    rows, targets, notes, teachers = [], [], [], {}
    for make, is_digits in ((digits_teacher, True), (resnet_teacher, False)):
        t = make(quick)
        r = bench_teacher(t, k, m, repeats, lime_repeats)
        rows += rows_for(t, r)
        tg, nt = targets_for(t, r, is_digits, k, m)
        targets += tg
        notes += nt
        teachers[t.name] = f"{t.note}; generator: {t.generator_note}"
    if quick:
        notes.insert(0, "QUICK smoke run (DEEPVID_BENCH_QUICK): sizes shrunk, numbers meaningless.")
    notes.append("x_forward = best time / best (b) time of the same teacher. DeepVID fidelity "
                 "columns are means over the instances, on held-out neighbours (20%, never "
                 "fitted); lime_score is LIME's own `score`, the weighted R^2 of its local ridge "
                 "model on the samples it was fitted on (not held out).")
    return {
        "title": "Engine: DeepVID vs teacher forward vs LIME",
        "settings": {
            "instances K": k, "neighbours per instance M": m, "teacher evaluations": k * m,
            "repeats": f"{repeats} back-to-back (a),(b) pairs, LIME in the first {lime_repeats}; "
                       f"after one warm-up; tables give best and median, targets the median of "
                       f"the paired ratios",
            "torch threads": torch.get_num_threads(),
            "DeepVID": "defaults: " + ", ".join(
                f"{key}={val}" for key, val in DeepVID(VAE(1, 8, 8)).settings().items()
                if key != "method") + f", batch_size={BATCH}",
            "LIME": f"lime {_version('lime')}, LimeImageExplainer(random_state=0)."
                    f"explain_instance(num_samples={m}, batch_size={BATCH}, hide_color=0, "
                    f"top_labels=1, segmentation_fn=per-pixel or 2x2 blocks, random_seed=i)",
            **{f"teacher: {name}": desc for name, desc in teachers.items()},
        },
        "rows": rows,
        "targets": targets,
        "notes": notes,
    }


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"
