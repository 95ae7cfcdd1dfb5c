"""Summit: cost per explained epoch, and what it adds to training at ``every_n_epochs=5``.

One explained epoch = ``Summit.aggregate(model)`` over 50 probe images per class (the fixed
probe set, drawn once) + the attribution graph of every class + the stability against the
previous explained epoch. Workloads:

- the digits CNN (``deepvid_plugin/digits.py``), layers ``features.0`` and ``features.3``, next
  to one training epoch on the 1,438 training digits (batch 64);
- torchvision's ResNet-18 at 32x32 on synthetic images, every BasicBlock (``layer1.0`` ...
  ``layer4.1``) and the last two stages only, next to one training epoch on 10k images
  (batch 128; measured on 1k images and scaled x10 in QUICK mode). Target: <= 2% of training
  time amortised at every 5 epochs, i.e. ``summit_s / (5 * train_epoch_s) <= 0.02``;
- Summit over training on the digits: a few epochs, the mean stability per explained epoch.

Everything runs with one torch thread (restored afterwards): on the shared 2-core box two
threads per process made both training and Summit 2-8x slower and the ratio meaningless.
``DEEPVID_BENCH_QUICK=1`` shrinks the training measurement and the number of repeats.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import torch
from torch.nn import functional as F

QUICK = os.environ.get("DEEPVID_BENCH_QUICK", "") not in ("", "0")
PER_CLASS = 16  # Summit's default (DEFAULT_PER_CLASS; 50 before issue 22)
SWEEP = (16, 25, 50)  # probe images per class compared on ResNet-18 (cost) and digits (graphs)
EVERY = 5
RESNET_ALL = [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
RESNET_LATE = ["layer3.0", "layer3.1", "layer4.0", "layer4.1"]


def _train_epoch(model, opt, x, y, batch: int, gen: torch.Generator) -> float:
    model.train()
    t0 = time.perf_counter()
    for idx in torch.randperm(len(y), generator=gen).split(batch):
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def explained_epoch(summit, model, previous) -> tuple[dict[str, float], Any]:
    """Seconds spent in aggregate, graphs (all classes) and stability; and the result."""
    t0 = time.perf_counter()
    result = summit.aggregate(model)
    t1 = time.perf_counter()
    graphs = [result.graph(c) for c in range(len(result.class_names)) if result.group_sizes[c]]
    t2 = time.perf_counter()
    if previous is not None:
        result.stability(previous)
    t3 = time.perf_counter()
    if not graphs or not graphs[0]["nodes"]:
        raise RuntimeError("summit produced no graph")
    return {"aggregate_s": t1 - t0, "graphs_s": t2 - t1, "stability_s": t3 - t2,
            "summit_s": t3 - t0}, result


def _row(workload: str, layers: list[str], summit, model, train_s: float,
         repeats: int) -> dict[str, Any]:
    times, previous = [], None
    for _ in range(repeats):
        t, previous = explained_epoch(summit, model, previous)
        times.append(t)
    best = {k: min(t[k] for t in times) for k in times[0]}
    return {"workload": workload, "layers": f"{layers[0]} .. {layers[-1]} ({len(layers)})",
            "graph_layers": len(previous.layers), "nodes": sum(previous.channels),
            "probe_images": len(summit.indices),
            **{k: round(v, 3) for k, v in best.items()},
            "train_epoch_s": round(train_s, 3),
            f"amortised_pct_every_{EVERY}": round(100 * best["summit_s"] / (EVERY * train_s), 2)}


def digits_workload(repeats: int) -> dict[str, Any]:
    from deepvid_plugin.demo.digits import DigitsCNN, load_digits
    from deepvid_plugin.methods.summit import Summit

    d = load_digits()
    torch.manual_seed(0)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    _train_epoch(model, opt, d.x_train, d.y_train, 64, gen)  # warm-up, and a trained state
    train_s = statistics.median(_train_epoch(model, opt, d.x_train, d.y_train, 64, gen)
                                for _ in range(1 if QUICK else 3))
    layers = ["features.0", "features.3"]
    summit = Summit(d.x_train, d.y_train, layers, per_class=PER_CLASS)
    return _row("digits CNN, 1,438 digits/epoch, batch 64", layers, summit, model, train_s,
                repeats)


def resnet_workloads(repeats: int) -> tuple[list[dict[str, Any]], float]:
    import torchvision

    from deepvid_plugin.methods.summit import Summit

    n_train = 1000 if QUICK else 10_000
    g = torch.Generator().manual_seed(0)
    # Smooth synthetic images (upsampled noise), CIFAR's size; nothing is downloaded.
    x = F.interpolate(torch.rand(n_train, 3, 8, 8, generator=g), size=32, mode="bilinear",
                      align_corners=False)
    y = torch.randint(0, 10, (n_train,), generator=g)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    _train_epoch(model, opt, x[:256], y[:256], 128, gen)  # warm-up
    train_s = _train_epoch(model, opt, x, y, 128, gen) * (10_000 / n_train)
    n_probe = 10 * max(SWEEP)
    probe_x = F.interpolate(torch.rand(n_probe, 3, 8, 8, generator=g), size=32,
                            mode="bilinear", align_corners=False)
    probe_y = torch.arange(n_probe) % 10
    rows = []
    name = ("ResNet-18 32x32, 10k images/epoch, batch 128"
            + (" (train time scaled from 1k)" if QUICK else ""))
    for layers in (RESNET_ALL, RESNET_LATE):
        summit = Summit(probe_x, probe_y, layers, per_class=PER_CLASS)
        rows.append(_row(name, layers, summit, model, train_s, repeats))
    for per_class in (() if QUICK else [p for p in SWEEP if p != PER_CLASS]):
        summit = Summit(probe_x, probe_y, RESNET_ALL, per_class=per_class)
        rows.append(_row(f"{name}, per_class={per_class}", RESNET_ALL, summit, model, train_s,
                         1))
    return rows, train_s


def graph_agreement() -> list[dict[str, Any]]:
    """What fewer probe images cost: each class's node set (classifier left out) against the
    graph from 50 images per class, on a trained digits CNN, mean Jaccard over classes. Draws
    with another seed give the floor: two draws of 50 disagree too."""
    from deepvid_plugin.demo.digits import load_digits, train_digits_cnn
    from deepvid_plugin.methods.summit import Summit
    from deepvid_plugin.methods.summit.graph import jaccard

    d = load_digits()
    torch.manual_seed(0)
    model = train_digits_cnn(d, epochs=2 if QUICK else 8)
    layers = ["features.0", "features.3"]

    def nodes(per_class: int, seed: int) -> list[set[str]]:
        r = Summit(d.x_train, d.y_train, layers, per_class=per_class, seed=seed).aggregate(model)
        return [{n["id"] for n in r.graph(c)["nodes"] if n["layer"] != r.head}
                for c in range(len(r.class_names))]

    reference = nodes(50, 0)
    rows = []
    for per_class in SWEEP:
        # seeds 1..3: other draws than the reference's (seed 0), which a smaller per_class with
        # seed 0 would share its first images with
        scores = [statistics.mean(jaccard(a, b) for a, b in zip(reference, nodes(per_class, s),
                                                                strict=True))
                  for s in ((1,) if QUICK else (1, 2, 3))]
        rows.append({"workload": "graph agreement (digits CNN, trained)",
                     "per_class": per_class, "jaccard_vs_50": round(statistics.mean(scores), 3),
                     "jaccard_min": round(min(scores), 3), "draws": len(scores)})
    return rows


def over_training(epochs: int) -> list[dict[str, Any]]:
    """Stability per explained epoch while the digits CNN trains (explained every epoch)."""
    from deepvid_plugin.demo.digits import DigitsCNN, load_digits
    from deepvid_plugin.methods.summit import Summit

    d = load_digits()
    torch.manual_seed(0)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    summit = Summit(d.x_train, d.y_train, ["features.0", "features.3"], per_class=PER_CLASS)
    rows, previous = [], summit.aggregate(model)
    for epoch in range(1, epochs + 1):
        _train_epoch(model, opt, d.x_train, d.y_train, 64, gen)
        result = summit.aggregate(model)
        stab = result.stability(previous)
        rows.append({"workload": "over training (digits CNN)", "epoch": epoch,
                     "mean_stability": round(statistics.mean(stab.values()), 3),
                     "min_stability": round(min(stab.values()), 3)})
        previous = result
    return rows


def run() -> dict[str, Any]:
    repeats = 1 if QUICK else 3
    threads = torch.get_num_threads()
    # One thread for training and Summit alike: on a shared 2-core box, 2 threads per process
    # measured 2-8x slower for both (oversubscribed threads wait on each other).
    torch.set_num_threads(1)
    try:
        digits = digits_workload(repeats)
        resnet, _ = resnet_workloads(repeats)
        history = over_training(3 if QUICK else 8)
        agreement = graph_agreement()
    finally:
        torch.set_num_threads(threads)
    pct = resnet[0][f"amortised_pct_every_{EVERY}"]
    return {
        "title": "Summit: cost per explained epoch",
        "settings": {"per_class": PER_CLASS, "classes": 10, "every_n_epochs": EVERY,
                     "torch_threads": 1, "probe": "drawn from the training images",
                     "repeats (best of)": repeats, "quick": QUICK,
                     "defaults": "top_share 0.03, top_inputs 5, nodes_per_layer 6"},
        "rows": [digits, *resnet, *history, *agreement],
        "targets": [{"name": "ResNet-18 (all blocks) amortised at every 5 epochs, % of training",
                     "value": pct, "target": "<= 2", "met": pct <= 2,
                     "note": "summit_s / (5 x train_epoch_s)"}],
        "notes": ["summit_s = aggregate (one forward pass of the probe set plus the grouped-"
                  "convolution influences of every hop) + graphs of all classes + stability.",
                  "The influence cost grows with in x out channels x positions of each hop; "
                  "layer1 (64x64 channels on 8x8 maps) and layer4 (512x512) dominate ResNet-18.",
                  "Ranking: torch.topk on CPU uses a partial sort only for rows of >= 64 x k "
                  "values (320 at top_inputs 5) and nth_element, ~5x slower per value, below; "
                  "rows of 107..319 inputs are ranked padded with -inf to 320, one-tap hops "
                  "on 1x1 maps (all of layer4) are formed as products in the ranked layout, "
                  "each chunk's maxima are written straight into the ranking buffer, and the "
                  "max over 16 positions (4x4 maps) is taken by halving. Counts are unchanged "
                  "(pinned by tests/explain/test_summit_ranking.py); aggregate on this workload "
                  "went from 7.07 s to 4.01 s (same process, 1 thread, load ~1.5-2).",
                  "What dominates now (cProfile of aggregate, ResNet-18 all blocks, 1 thread, "
                  "4.1 s): torch.topk ~41% (a partial sort over 500 images x 1.4M (out, in) "
                  "pairs), the spatial max over 4 positions (layer3, written transposed) ~14%, "
                  "the grouped matmuls ~11%, the halving maxima of layer2 ~5%, the forward pass "
                  "~5%, bincount ~4%. Even with the ranking free, the rest (~2.4 s) exceeds the "
                  "2% budget (~1.6 s), so the target needs fewer hops "
                  "(e.g. RESNET_LATE), fewer probe images or a sparser schedule.",
                  "Since issue 22 the default is 16 probe images per class (was 50): the cost "
                  "is linear in them (rows per_class=...), and the graph_agreement rows give "
                  "what it costs: each class's node set against a 50-image graph of another "
                  "draw, next to two 50-image draws' own agreement. The classifier's influence "
                  "is counted for each class's own logit only (was every logit: quadratic in "
                  "the classes)."],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
