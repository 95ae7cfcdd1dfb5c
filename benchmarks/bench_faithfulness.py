"""Faithfulness benchmark: do DeepVID's maps point where the model looks, next to peers?

Workloads (``benchmarks/faithfulness_workloads.py``): the digits CNN at 8x8 and 16x16 (the paper's
home ground; a planted-stripe teacher), and natural images: photo patches planted in smoothed
noise at 32x32 (a small CNN) and at 224x224 (a ResNet-18), where each instance's patch is the only
evidence.

Methods, in one run, on the same instances, each explaining the teacher's predicted class:

- **DeepVID default** (``DeepVID(vae)``; at 224 px ``DeepVID(None)``, no generator needed): the
  paper's pixel student up to 16x16, a student over superpixels above; ranked by its
  contribution map (pixels: ``w[pred] * x`` summed over channels; regions: each region's weight
  drawn onto its pixels);
- **DeepVID paper mode** (``features="pixels"``: VAE neighbours plus pixel jitter, a weight per
  pixel); not applicable at 224 px (it works up to 64 px a side);
- **Grad-CAM** (this project's, its default layer: the last convolution);
- **LIME** (lime 0.2 ``LimeImageExplainer``, ``hide_color=0``, as many samples as DeepVID has
  neighbours): one segment per pixel on digits, scikit-image SLIC superpixels (as many as
  DeepVID's default regions, compactness 10) on photos;
- captum **IntegratedGradients** (zero baseline, 50 steps) and **InputXGradient**, summed over
  channels; a **random** map (fixed per instance id).

Metrics: deletion and insertion AUC with 16 steps, baseline 0 (RISE, Petsiuk et al. 2018;
``deepvid_plugin.core.faithfulness.deletion_insertion``), and the share of |map| inside the
planted region ("mass"; on digits the planted-stripe teacher's maps, on photos the model's own)
and how often the map's maximum falls inside it ("point"); means over the instances.

Targets on every workload (DeepVID default against the best of Grad-CAM, LIME, IG and IxG):
mass >= best - 0.05, deletion AUC <= 1.1 x best, insertion AUC >= best - 0.02; on digits no
regression from the numbers of commit f7dddfd; at 224 px DeepVID's time per instance <= 1.2 x a
bare teacher forward over the same number of images (its neighbours plus its evidence), and its
peak memory for 16 instances <= 2 GB beyond the model (``_memory.py``, in fresh processes).

Small instance counts keep the whole run near ten minutes on a 2-core CPU: 24 photos at 32 px,
3 at 224 px. ``DEEPVID_BENCH_QUICK=1`` shrinks everything to a smoke run whose numbers mean
nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.bench_engine import lime_classifier, lime_images, segmenter
from benchmarks.faithfulness_workloads import (
    QUICK,
    Workload,
    digits_workload,
    photos32_workload,
    photos224_workload,
)
from deepvid_plugin.explain import DeepVID, GradCAM
from deepvid_plugin.methods.deepvid.engine import default_n_features

STEPS = 16
IG_STEPS = 50
TARGET_DELETION_RATIO = 1.1
TARGET_INSERTION_GAP = 0.02
TARGET_MASS_GAP = 0.05
TARGET_TIME_RATIO = 1.2
TARGET_PEAK_GB = 2.0
PEERS = ("Grad-CAM", "LIME", "IntegratedGradients", "InputXGradient")
#: DeepVID default on digits at commit f7dddfd (benchmarks/results/faithfulness.json then):
#: deletion AUC, insertion AUC, planted mass of the contribution map.
DIGITS_BEFORE = {"digits CNN (8x8)": (0.09015, 0.9283, 0.8904),
                 "digits CNN (16x16)": (0.0689, 0.9307, 0.7629)}
REGRESSION_TOLERANCE = 0.01


@dataclass
class Maps:
    saliency: torch.Tensor  # (K, H, W) the ranking map (highest = most important)
    seconds: float
    agreement: float | None = None  # DeepVID: mean held-out top-1 agreement
    trusted: int | None = None  # DeepVID: records that pass their own trust rule


def predicted(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(c) for c in x.split(32)]).argmax(1)


def deepvid_maps(model: nn.Module, x: torch.Tensor, ids: list[str], generator: Any,
                 **options: Any) -> Maps:
    start = time.perf_counter()
    records = DeepVID(generator, **options).explain(model, x, ids=ids)
    seconds = time.perf_counter() - start
    return Maps(torch.stack([torch.from_numpy(r.contribution_map(r.predicted)).float()
                             for r in records]), seconds,
                agreement=float(np.mean([r.fidelity["top1_agreement"] for r in records])),
                trusted=sum(r.trustworthy for r in records))


def _slic(n_segments: int):
    from skimage.segmentation import slic

    def segment(image: np.ndarray) -> np.ndarray:
        lo, hi = image.min(), image.max()
        scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
        return slic(scaled, n_segments=n_segments, compactness=10, start_label=0,
                    channel_axis=2)

    return segment


def lime_maps(model: nn.Module, x: torch.Tensor, target: torch.Tensor, segments: str,
              samples: int) -> Maps:
    from lime import lime_image

    explainer = lime_image.LimeImageExplainer(random_state=0)
    classify = lime_classifier(model, x.shape[1])
    h, w = x.shape[2:]
    seg_fn = segmenter(1) if segments == "pixel" else _slic(default_n_features(h, w))
    out = torch.zeros(x.shape[0], h, w)
    start = time.perf_counter()
    # lime draws a tqdm bar per instance on stderr; keep the log readable.
    with contextlib.redirect_stderr(io.StringIO()):
        for i, im in enumerate(lime_images(x)):
            label = int(target[i])
            exp = explainer.explain_instance(im, classify, labels=(label,), top_labels=None,
                                             hide_color=0, num_samples=samples, batch_size=64,
                                             segmentation_fn=seg_fn, random_seed=i)
            seg = torch.from_numpy(exp.segments).long()
            weights = torch.zeros(int(seg.max()) + 1)
            for s, value in exp.local_exp[label]:
                weights[s] = value
            out[i] = weights[seg]
    return Maps(out, time.perf_counter() - start)


def captum_maps(method: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> Maps:
    from captum.attr import InputXGradient, IntegratedGradients

    start = time.perf_counter()
    inp = x.clone().requires_grad_(True)
    if method == "IntegratedGradients":
        attr = IntegratedGradients(model).attribute(inp, baselines=0.0, target=target,
                                                    n_steps=IG_STEPS, internal_batch_size=32)
    else:
        attr = InputXGradient(model).attribute(inp, target=target)
    return Maps(attr.detach().sum(1), time.perf_counter() - start)


FEWER_NEIGHBOURS = (128, 256)


def gradcam_maps(model: nn.Module, x: torch.Tensor) -> Maps:
    start = time.perf_counter()
    result = GradCAM(evidence_steps=None, batch_size=32).explain(model, x)
    return Maps(torch.from_numpy(result.cam_pred).float(), time.perf_counter() - start)


def all_maps(model: nn.Module, w: Workload, ids: list[str],
             deepvid_default: Maps | None = None) -> dict[str, Maps | str]:
    from deepvid_plugin.core.faithfulness import random_saliency

    target = predicted(model, w.x)
    h, wd = w.x.shape[2:]
    samples = DeepVID(None).n_neighbours  # LIME gets DeepVID's budget of model calls
    return {
        "DeepVID default": deepvid_default or deepvid_maps(model, w.x, ids, w.vae),
        "DeepVID paper mode": (deepvid_maps(model, w.x, ids, w.vae, features="pixels")
                               if w.vae is not None else
                               "not applicable: the pixel student works up to 64 px a side"),
        # what fewer neighbours cost (issue 22: the callback's overhead at every epoch)
        **{f"DeepVID n_neighbours={n}": deepvid_maps(model, w.x, ids, w.vae, n_neighbours=n)
           for n in FEWER_NEIGHBOURS},
        "Grad-CAM": gradcam_maps(model, w.x),
        "LIME": lime_maps(model, w.x, target, w.lime_segments, samples),
        "IntegratedGradients": captum_maps("IntegratedGradients", model, w.x, target),
        "InputXGradient": captum_maps("InputXGradient", model, w.x, target),
        "random map": Maps(random_saliency(ids, (h, wd), seed=0), 0.0),
    }


def mass_in(saliency: torch.Tensor, masks: torch.Tensor) -> float:
    """Mean over instances of the share of absolute map mass inside each one's region."""
    a = saliency.abs().double().flatten(1)
    share = (a * masks.flatten(1)).sum(1) / a.sum(1).clamp_min(1e-300)
    return float(share.mean())


def point_in(saliency: torch.Tensor, masks: torch.Tensor) -> float:
    """Share of instances whose map peaks inside their region."""
    top = saliency.flatten(1).argmax(1)
    return float(masks.flatten(1)[torch.arange(len(top)), top].float().mean())


# ---- benchmark ---------------------------------------------------------------------------------
def bench_workload(w: Workload, deepvid_default: Maps | None = None
                   ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from deepvid_plugin.core.faithfulness import deletion_insertion

    ids = [f"i{i}" for i in range(len(w.x))]
    target = predicted(w.model, w.x)
    maps = all_maps(w.model, w, ids, deepvid_default)
    region = maps if w.region_model is w.model else all_maps(w.region_model, w, ids)
    rows, summary = [], {}
    for name, m in maps.items():
        if isinstance(m, str):
            rows.append({"workload": w.name, "method": name, "note": m})
            continue
        c = deletion_insertion(w.model, w.x, m.saliency, target, steps=STEPS, batch_size=64)
        r = region[name]
        row = {"workload": w.name, "method": name,
               "deletion_auc": float(c.deletion_auc.mean()),
               "insertion_auc": float(c.insertion_auc.mean()),
               "mass": mass_in(r.saliency, w.masks), "point": point_in(r.saliency, w.masks),
               "agreement": m.agreement, "trusted": (None if m.trusted is None
                                                     else f"{m.trusted}/{len(w.x)}"),
               "seconds": round(m.seconds, 2)}
        rows.append(row)
        summary[name] = row
    return rows, summary


def _margin(name: str, what: str, value: float, goal: str, met: bool, note: str) -> dict:
    return {"name": f"{name}: {what}", "value": value, "target": goal, "met": met, "note": note}


def targets_for(w: Workload, s: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    dv = s["DeepVID default"]
    best_del = min(PEERS, key=lambda p: s[p]["deletion_auc"])
    best_ins = max(PEERS, key=lambda p: s[p]["insertion_auc"])
    best_mass = max(PEERS, key=lambda p: s[p]["mass"])
    ratio = dv["deletion_auc"] / s[best_del]["deletion_auc"]
    gap = dv["insertion_auc"] - s[best_ins]["insertion_auc"]
    mgap = dv["mass"] - s[best_mass]["mass"]
    paper = s.get("DeepVID paper mode")

    def vs(key: str, peer: str) -> str:
        extra = f", paper mode {paper[key]:.3f}" if paper else ""
        return (f"DeepVID {dv[key]:.3f} vs {peer} {s[peer][key]:.3f} (random "
                f"{s['random map'][key]:.3f}{extra})")

    out = [
        _margin(w.name, "DeepVID deletion AUC / best peer's", ratio,
                f"<= {TARGET_DELETION_RATIO}", ratio <= TARGET_DELETION_RATIO,
                vs("deletion_auc", best_del)),
        _margin(w.name, "DeepVID insertion AUC - best peer's", gap, f">= {-TARGET_INSERTION_GAP}",
                gap >= -TARGET_INSERTION_GAP, vs("insertion_auc", best_ins)),
        _margin(w.name, "DeepVID region mass - best peer's", mgap, f">= {-TARGET_MASS_GAP}",
                mgap >= -TARGET_MASS_GAP, vs("mass", best_mass)),
    ]
    if w.name in DIGITS_BEFORE:
        d0, i0, m0 = DIGITS_BEFORE[w.name]
        worst = max(dv["deletion_auc"] - d0, i0 - dv["insertion_auc"], m0 - dv["mass"])
        out.append(_margin(w.name, "DeepVID default's regression from f7dddfd (worst of deletion, "
                                   "insertion, mass)", worst, f"<= {REGRESSION_TOLERANCE}",
                           worst <= REGRESSION_TOLERANCE,
                           f"before {d0:.4f} / {i0:.4f} / {m0:.4f}, now "
                           f"{dv['deletion_auc']:.4f} / {dv['insertion_auc']:.4f} / "
                           f"{dv['mass']:.4f}"))
    return out


def run() -> dict[str, Any]:
    from benchmarks import _memory

    k_digits, k32, k224 = (4, 4, 1) if QUICK else (32, 24, 3)
    load = [round(v, 2) for v in os.getloadavg()]
    rows, targets, described = [], [], {}
    for make in (lambda: digits_workload(k_digits), lambda: digits_workload(k_digits, 2),
                 lambda: photos32_workload(k32)):
        w = make()
        r, summary = bench_workload(w)
        rows += r
        targets += targets_for(w, summary)
        described[f"workload: {w.name}"] = f"{len(w.x)} held-out instances; {w.note}"
    # 224 px: DeepVID runs in fresh processes, which also measure its time and peak memory.
    w = photos224_workload(k224)
    big = _memory.measure(w.model, w.x, sorted({1, len(w.x)}))
    mine = big["runs"][-1]
    dv = Maps(mine["maps"].float(), mine["seconds"], agreement=mine["agreement"],
              trusted=mine["trusted"])
    r, summary = bench_workload(w, deepvid_default=dv)
    rows += r
    targets += targets_for(w, summary)
    targets += _memory.targets(w.name, big, TARGET_TIME_RATIO, TARGET_PEAK_GB)
    described[f"workload: {w.name}"] = f"{len(w.x)} held-out instances; {w.note}"
    described["224 px cost"] = _memory.describe(big)
    notes = ["QUICK smoke run (DEEPVID_BENCH_QUICK): sizes shrunk, numbers meaningless."] \
        if QUICK else []
    notes += [
        "deletion_auc / insertion_auc: mean over the instances of the area under the predicted "
        "class's probability as the top-ranked pixels are removed (set to 0) / restored on a "
        f"blank image in {STEPS} steps. Lower deletion and higher insertion are better.",
        "mass: share of |map| inside the planted region (mean over instances); point: share of "
        "instances whose map peaks inside it. Digits: maps of the planted-stripe teacher (the "
        "same architecture trained on x * mask; gradient methods score 1 by construction there, "
        "since its gradient is zero outside the mask). Photos: the model's own maps, the region "
        "being each instance's photo patch (14% of the image; chance is 0.14).",
        "agreement: DeepVID's held-out top-1 agreement; trusted: its records that pass their own "
        "trust rule (agreement, instance agreement, probability trend, better than a random map "
        "at deletion/insertion). seconds: wall time to explain the instances.",
        "DeepVID n_neighbours=128/256: the default with fewer neighbours, what the callback "
        "would need at every epoch to stay within 1.10 of a ResNet-18 training epoch "
        "(bench_callback); compare their rows with 'DeepVID default' (512).",
        f"Load average (1, 5, 15 min) at start: {load}; the machine (2 cores) was shared with "
        f"other jobs, which affects only the seconds column and the 224-px time ratio.",
    ]
    return {
        "title": "Faithfulness: deletion/insertion and planted regions, DeepVID vs peers",
        "settings": {
            "curve steps": STEPS, "baseline": "0.0 (all channels)",
            "DeepVID default": ", ".join(f"{key}={val}" for key, val in
                                         DeepVID(None).settings().items() if key != "method"),
            "DeepVID paper mode": "the same with features='pixels' (VAE neighbours + jitter 0.05)",
            "LIME": "lime LimeImageExplainer(random_state=0).explain_instance(labels=(pred,), "
                    "num_samples=512, hide_color=0, batch_size=64, random_seed=i); segments: one "
                    "per pixel (digits), skimage slic(n_segments=DeepVID's default, "
                    "compactness=10) on the min-max scaled image (photos)",
            "Grad-CAM": "deepvid_plugin GradCAM() at its default layer (the last convolution)",
            "captum": f"IntegratedGradients(baselines=0, n_steps={IG_STEPS}), InputXGradient; "
                      f"summed over channels",
            "target class": "the teacher's prediction on the instance, for every method",
            "instances": f"{k_digits} per digits workload, {k32} photos at 32 px, {k224} at "
                         f"224 px: small counts keep the run near ten minutes on 2 CPU cores",
            **described,
        },
        "rows": rows,
        "targets": targets,
        "notes": notes,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1, default=str))
