"""Exp-KD benchmark: does aligning CAMs (``CAMDistillLoss``) make a small student better, or make
it look where the teacher looks?

Task (rendered here, no download): 3x32x32 images, one object of 6 shapes (square, disk,
triangle, plus, ring, X) at a random position, scale and colour, on a smooth random background
with pixel noise and small distractor squares. The label is the shape; the object's pixel mask is
known exactly.

Teacher: a ResNet-18-like network (BasicBlock x [2, 2, 2, 2], widths 16-32-32-64 instead of
64-512 so that it trains in minutes on 2 CPU cores; stride-2 stem; ``layer4`` is 8x8),
trained once (seed 0) with cross-entropy. Student: a plain 4-conv CNN with a tenth of the
teacher's parameters (``features`` is 8x8 too), trained from scratch, 3 seeds per method; a seed
gives every method the same initialisation and batch order:

- ``CE``: cross-entropy alone;
- ``CE + logit KD``: + Hinton KD (T=4, weight 1);
- ``CE + logit KD + CAM-KD``: + the CAM term (top-3 classes, per-pixel temperature 1, weight
  ``CAM_WEIGHT``).

Reported on a held-out set, per method (mean and std over seeds): the student's accuracy; the
agreement of its CAM with the teacher's for the true class (Pearson and IoU of the top-20% pixels,
both maps ReLU'd and upsampled bilinearly to 32x32); and the IoU of its CAM with the true object
mask (the map's top-N pixels, N = the mask's area). The teacher's own mask IoU and a random map's
are given for scale. ``DEEPVID_BENCH_QUICK=1`` shrinks everything to a smoke run whose numbers mean
nothing.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deepvid_plugin.methods.cam_agreement.loss import CAMDistillLoss

QUICK = os.environ.get("DEEPVID_BENCH_QUICK", "") not in ("", "0")
SHAPES = ("square", "disk", "triangle", "plus", "ring", "X")
SIZE = 32
N_TRAIN, N_TEST = (256, 128) if QUICK else (1500, 1000)
TEACHER_EPOCHS, STUDENT_EPOCHS = (1, 1) if QUICK else (6, 8)
SEEDS = (0,) if QUICK else (0, 1, 2)
BATCH, LR = 64, 2e-3
TOP_K, CAM_T, KD_T, KD_WEIGHT, CAM_WEIGHT = 3, 1.0, 4.0, 1.0, 20.0
TOP_FRACTION = 0.2


# ---- the task ----------------------------------------------------------------------------------
def _shape_mask(kind: int, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    ady, adx, d = np.abs(dy), np.abs(dx), np.hypot(dy, dx)
    if kind == 0:
        return (ady <= 0.8 * r) & (adx <= 0.8 * r)
    if kind == 1:
        return d <= r
    if kind == 2:  # pointing up
        return (dy >= -r) & (dy <= 0.8 * r) & (adx <= (dy + r) * 0.55)
    if kind == 3:
        arm = max(1.0, r / 3)
        return ((adx <= arm) & (ady <= r)) | ((ady <= arm) & (adx <= r))
    if kind == 4:
        return (d <= r) & (d >= 0.55 * r)
    return (np.abs(adx - ady) <= max(1.0, r / 4)) & (np.maximum(adx, ady) <= r)


def render(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (n, 3, 32, 32) float32, labels (n,), object masks (n, 32, 32) bool)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    images = np.empty((n, 3, SIZE, SIZE), np.float32)
    masks = np.empty((n, SIZE, SIZE), bool)
    labels = rng.integers(0, len(SHAPES), n)
    for i in range(n):
        # Smooth background: a random colour gradient, plus pixel noise.
        c0, c1 = rng.uniform(0.0, 0.6, (2, 3, 1, 1))
        angle = rng.uniform(0, 2 * np.pi)
        t = ((np.cos(angle) * xx + np.sin(angle) * yy) / SIZE + 1) / 2
        img = c0 * (1 - t) + c1 * t + rng.normal(0, 0.08, (3, SIZE, SIZE))
        for _ in range(3):  # distractors: 2x2 squares of random colour
            y0, x0 = rng.integers(0, SIZE - 2, 2)
            img[:, y0:y0 + 2, x0:x0 + 2] = rng.uniform(0, 1, (3, 1, 1))
        r = rng.uniform(4.0, 7.0)
        cy, cx = rng.uniform(r + 1, SIZE - r - 1, 2)
        m = _shape_mask(int(labels[i]), yy - cy, xx - cx, r)
        colour = rng.uniform(0.4, 1.0, (3, 1))
        img[:, m] = colour
        images[i], masks[i] = img, m
    return torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(masks)


# ---- the networks ------------------------------------------------------------------------------
class Block(nn.Module):
    """torchvision's BasicBlock: two 3x3 conv-BN, a shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet18(nn.Module):
    """ResNet-18's topology (BasicBlock x [2, 2, 2, 2], GAP -> fc) at 1/4-1/8 of its width."""

    def __init__(self, n_classes: int, widths: tuple[int, ...] = (16, 32, 32, 64)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())  # 32 -> 16
        strides, cin, layers = (1, 2, 1, 1), widths[0], []
        for w, s in zip(widths, strides, strict=True):
            layers.append(nn.Sequential(Block(cin, w, s), Block(w, w, 1)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers  # layer4: 8x8
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.pool(x).flatten(1))


class Student(nn.Module):
    """A plain 4-conv CNN (conv-BN-ReLU, two max-pools); ``features`` is 8x8 on a 32x32 input
    (GAP -> fc head)."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        chans, layers = (3, 16, 24, 32, 32), []
        for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU()] + ([nn.MaxPool2d(2)] if i < 2 else [])
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---- training ----------------------------------------------------------------------------------
def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int,
          kd: CAMDistillLoss | None = None) -> dict[str, float]:
    """Adam with a cosine learning-rate decay, fixed batch order per seed. With ``kd``: CE + the
    distillation loss."""
    order = torch.Generator().manual_seed(1000 + seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps = epochs * -(-len(x) // BATCH)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    sums = {"ce": 0.0, "cam": 0.0, "kd": 0.0}
    n_steps = 0
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=order)
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            if kd is None:
                logits, distill = model(x[idx]), None
            else:
                out = kd(x[idx])
                logits, distill = out.logits, out.loss
                sums["cam"] += out.parts["cam"]
                sums["kd"] += out.parts["kd"]
            ce = F.cross_entropy(logits, y[idx])
            loss = ce if distill is None else ce + distill
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            sums["ce"] += float(ce.detach())
            n_steps += 1
    model.eval()
    return {k: v / max(n_steps, 1) for k, v in sums.items()}


# ---- metrics -----------------------------------------------------------------------------------
def _up(cam: torch.Tensor) -> torch.Tensor:
    """(B, h, w) raw CAM -> (B, 32*32) ReLU'd and bilinearly upsampled."""
    return F.interpolate(cam.relu()[:, None], size=(SIZE, SIZE), mode="bilinear",
                         align_corners=False).flatten(1)


def _top_mask(m: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
    """Boolean mask of each row's top-n entries (n per row or shared)."""
    ranks = m.argsort(dim=1, descending=True).argsort(dim=1)
    n = torch.as_tensor(n).reshape(-1, 1) if not isinstance(n, int) else n
    return ranks < n


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a & b).sum(1).float() / (a | b).sum(1).clamp(min=1).float()


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    denom = (a.norm(dim=1) * b.norm(dim=1))
    # A flat map (all zero after ReLU) carries no location: count it as no correlation.
    return torch.where(denom > 0, (a * b).sum(1) / denom.clamp(min=1e-12), torch.zeros_like(denom))


@torch.no_grad()
def evaluate(kd: CAMDistillLoss, x: torch.Tensor, y: torch.Tensor,
             masks: torch.Tensor) -> dict[str, float]:
    accs, pears, agree_iou, mask_iou, t_mask_iou = [], [], [], [], []
    top_n = int(TOP_FRACTION * SIZE * SIZE)
    for i in range(0, len(x), 250):
        xb, yb, mb = x[i:i + 250], y[i:i + 250], masks[i:i + 250].flatten(1)
        maps = kd.maps(xb)
        rows = torch.arange(len(xb))
        t = _up(maps.teacher[rows, yb])
        s = _up(maps.student[rows, yb])
        accs.append((maps.student_logits.argmax(1) == yb).float())
        pears.append(_pearson(t, s))
        agree_iou.append(_iou(_top_mask(t, top_n), _top_mask(s, top_n)))
        area = mb.sum(1)
        mask_iou.append(_iou(_top_mask(s, area), mb))
        t_mask_iou.append(_iou(_top_mask(t, area), mb))
    return {"accuracy": float(torch.cat(accs).mean()), "pearson": float(torch.cat(pears).mean()),
            "top20_iou": float(torch.cat(agree_iou).mean()),
            "mask_iou": float(torch.cat(mask_iou).mean()),
            "teacher_mask_iou": float(torch.cat(t_mask_iou).mean())}


def random_map_mask_iou(masks: torch.Tensor, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    m = masks.flatten(1)
    rand = torch.rand(m.shape, generator=g)
    return float(_iou(_top_mask(rand, m.sum(1)), m).mean())


# ---- the benchmark -----------------------------------------------------------------------------
METHODS = {  # name -> (cam_weight, kd_weight); None = no teacher at all
    "CE": None,
    "CE + logit KD": (0.0, KD_WEIGHT),
    "CE + logit KD + CAM-KD": (CAM_WEIGHT, KD_WEIGHT),
}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def run() -> dict[str, Any]:
    start = time.perf_counter()
    x_train, y_train, _ = render(N_TRAIN, seed=1)
    x_test, y_test, m_test = render(N_TEST, seed=2)

    torch.manual_seed(0)
    teacher = TinyResNet18(len(SHAPES))
    t0 = time.perf_counter()
    train(teacher, x_train, y_train, TEACHER_EPOCHS, seed=0)
    teacher_s = time.perf_counter() - t0
    with torch.no_grad():
        teacher_acc = float((teacher(x_test).argmax(1) == y_test).float().mean())

    per_method: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    for seed in SEEDS:
        for method, weights in METHODS.items():
            torch.manual_seed(100 + seed)  # same initialisation for every method of a seed
            student = Student(len(SHAPES))
            loss_kw = {"cam_weight": 0.0, "kd_weight": 0.0} if weights is None else \
                {"cam_weight": weights[0], "kd_weight": weights[1]}
            kd = CAMDistillLoss(teacher, student, "layer4", "features", top_k=TOP_K,
                                temperature=CAM_T, kd_temperature=KD_T, **loss_kw)
            t0 = time.perf_counter()
            losses = train(student, x_train, y_train, STUDENT_EPOCHS, seed,
                           kd=None if weights is None else kd)
            metrics = evaluate(kd, x_test, y_test, m_test)  # kd only reads maps here
            metrics.update(train_s=time.perf_counter() - t0, **{f"train_{k}": v
                                                              for k, v in losses.items()})
            per_method[method].append(metrics)

    rows = []
    for method, runs in per_method.items():
        row: dict[str, Any] = {"student": method, "seeds": len(runs)}
        for key in ("accuracy", "pearson", "top20_iou", "mask_iou"):
            mean, std = _mean_std([r[key] for r in runs])
            row[key] = round(mean, 4)
            row[f"{key}_std"] = round(std, 4)
        row["per_seed_accuracy"] = [round(r["accuracy"], 4) for r in runs]
        row["train_s_per_seed"] = round(statistics.fmean(r["train_s"] for r in runs), 1)
        rows.append(row)
    teacher_mask_iou = per_method["CE"][0]["teacher_mask_iou"]
    rand_iou = random_map_mask_iou(m_test)
    rows.append({"student": "(teacher, for scale)", "seeds": 1, "accuracy": round(teacher_acc, 4),
                 "pearson": 1.0, "top20_iou": 1.0, "mask_iou": round(teacher_mask_iou, 4)})
    rows.append({"student": "(random map, for scale)", "mask_iou": round(rand_iou, 4)})

    by = {r["student"]: r for r in rows}
    base, logit, cam = by["CE"], by["CE + logit KD"], by["CE + logit KD + CAM-KD"]
    d_acc = cam["accuracy"] - logit["accuracy"]
    d_pear = cam["pearson"] - logit["pearson"]
    d_mask = cam["mask_iou"] - logit["mask_iou"]
    notes = [
        f"CAM-KD vs logit KD alone (mean over {len(SEEDS)} seeds): accuracy {d_acc:+.4f}, CAM "
        f"Pearson with the teacher {d_pear:+.3f}, top-20% IoU with the teacher "
        f"{cam['top20_iou'] - logit['top20_iou']:+.3f}, mask IoU {d_mask:+.3f}. "
        f"Logit KD vs CE: accuracy {logit['accuracy'] - base['accuracy']:+.4f}.",
        _verdict(d_acc, max(cam["accuracy_std"], logit["accuracy_std"]), d_pear, d_mask),
        "One teacher (seed 0) for every student; seeds change the student's initialisation and "
        "batch order, and each seed uses the same initialisation and order for all three methods.",
        f"CAM weight {CAM_WEIGHT} was set once so that the CAM term is of the order of the CE "
        "term early in training; it was not tuned on the test set, and no sweep was run.",
    ]
    if QUICK:
        notes.insert(0, "QUICK smoke run (DEEPVID_BENCH_QUICK): sizes shrunk, numbers meaningless.")
    return {
        "title": "Exp-KD: CAM distillation (CAMDistillLoss) vs logit KD vs CE",
        "settings": {
            "task": f"3x{SIZE}x{SIZE} rendered shapes {list(SHAPES)}, random position/scale/"
                    "colour, smooth background, noise, 3 distractor squares",
            "train / test images": f"{N_TRAIN} / {N_TEST}",
            "teacher": f"TinyResNet18 widths 16-32-32-64, {_params(teacher):,} params, "
                       f"{TEACHER_EPOCHS} epochs, {teacher_s:.0f} s, test accuracy "
                       f"{teacher_acc:.4f}, CAM layer 'layer4' (8x8)",
            "student": f"4-conv CNN, {_params(Student(len(SHAPES))):,} params, "
                       f"{STUDENT_EPOCHS} epochs, CAM layer 'features' (8x8)",
            "optimiser": f"Adam lr {LR} with cosine decay to 0, batch {BATCH}",
            "loss": f"CE (+ {KD_WEIGHT} x Hinton KD at T={KD_T}) (+ {CAM_WEIGHT} x CAM term: "
                    f"top-{TOP_K} teacher classes, per-pixel softmax at T={CAM_T})",
            "CAM metrics": "true class; maps ReLU'd and upsampled to 32x32; Pearson and IoU of "
                           "the top-20% pixels vs the teacher; mask IoU = top-N pixels (N = "
                           "object area) vs the object mask",
            "seeds": list(SEEDS), "threads": torch.get_num_threads(), "quick": QUICK,
            "wall_s": round(time.perf_counter() - start, 1),
        },
        "rows": rows,
        "notes": notes,
    }


def _verdict(d_acc: float, acc_std: float, d_pear: float, d_mask: float) -> str:
    acc = ("accuracy changes by less than the seed-to-seed spread" if abs(d_acc) <= acc_std
           else f"accuracy {'improves' if d_acc > 0 else 'drops'} by {abs(d_acc):.4f} (more than "
                f"the seed spread {acc_std:.4f})")
    look = ("the student's CAMs move towards the teacher's" if d_pear > 0.02
            else "the student's CAMs do not move measurably towards the teacher's")
    mask = ("and cover the object better" if d_mask > 0.02
            else "and cover the object worse" if d_mask < -0.02
            else "with no clear change in how well they cover the object")
    return f"Verdict on this task: with CAM-KD {acc}; {look}, {mask}."
