"""The workloads of ``bench_faithfulness``: digits (the paper's home ground) and natural images.

- **digits CNN 8x8 and 16x16**: the demo's digits CNN; the planted region is a central vertical
  stripe of 25% of the pixels, planted by a second teacher of the same architecture trained on
  ``x * mask`` (nothing outside the mask can move it).
- **photos 32x32** and **photos 224x224**: ``deepvid_plugin.demo.photos.planted_photos``, one patch
  of a photograph (14% of the image, random position) pasted into smoothed noise, label = the
  photograph; the patch is the only evidence, so the planted region is each instance's patch, on
  the model itself. Inputs are normalised with the training set's per-channel mean and std, as
  users feed ImageNet-normalised images (so 0, the deletion baseline, is the mean colour). At
  32 px a small CNN is trained; at 224 px a torchvision ResNet-18 (standard ImageNet stem), its
  randomly initialised backbone frozen and only its last block and ``fc`` trained briefly (a full
  ResNet-18 is too slow to train on 2 CPU cores).

Trained models and VAEs are cached under ``benchmarks/.cache/`` (git-ignored), keyed by their
settings; delete the folder to retrain.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from deepvid_plugin.explain import VAE

CACHE = Path(__file__).resolve().parent / ".cache"
QUICK = os.environ.get("DEEPVID_BENCH_QUICK", "") not in ("", "0")


@dataclass
class Workload:
    name: str
    model: nn.Module  # eval mode: deletion/insertion are measured on it
    region_model: nn.Module  # eval mode: the model whose evidence sits in `masks`
    masks: torch.Tensor  # (K, H, W) bool: each instance's planted region
    x: torch.Tensor  # (K, C, H, W) instances to explain (held-out, in the model's input units)
    vae: VAE | None  # for DeepVID's paper mode (None: not applicable at this size)
    lime_segments: str  # "pixel" or "superpixels"
    note: str
    digits: bool = False


class Masked(nn.Module):
    """The planted-region teacher: ``inner(x * mask)``; nothing outside the mask can matter."""

    def __init__(self, inner: nn.Module, mask: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x * self.mask)


# ---- caching and training ----------------------------------------------------------------------
def cached(kind: str, key: dict[str, Any], build: Callable[[], nn.Module],
           make: Callable[[], nn.Module]) -> tuple[nn.Module, str]:
    """``build()`` once per key, stored as a state_dict under benchmarks/.cache; ``make()`` gives
    an untrained module of the same shape to load it into."""
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = CACHE / f"{kind}-{digest}.pt"
    if path.exists():
        module = make()
        module.load_state_dict(torch.load(path, weights_only=True))
        return module.eval(), f"loaded from {path.relative_to(CACHE.parent.parent)}"
    start = time.perf_counter()
    module = build()
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), path)
    return module.eval(), f"trained in {time.perf_counter() - start:.0f} s, cached"


def fit_vae(data: torch.Tensor, epochs: int, key: dict[str, Any]) -> tuple[VAE, str]:
    def build() -> VAE:
        torch.manual_seed(0)
        vae = VAE.for_data(data)
        vae.fit(data, epochs=epochs, progress=False)
        return vae

    vae, origin = cached("vae", {**key, "epochs": epochs}, build, lambda: VAE.for_data(data))
    return vae, f"VAE (latent 16) fitted {epochs} epochs on {len(data):,} images, {origin}"


def train(model_fn: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, epochs: int,
          lr: float, batch: int, mask: torch.Tensor | None = None) -> nn.Module:
    torch.manual_seed(0)
    inner = model_fn()
    model = Masked(inner, mask) if mask is not None else inner
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(batch):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 64) -> float:
    return float((torch.cat([model(c) for c in x.split(chunk)]).argmax(1) == y).float().mean())


# ---- digits ------------------------------------------------------------------------------------
class DigitsCNN16(nn.Module):
    """The demo's DigitsCNN layout for 16x16 inputs (its head is sized for 8x8)."""

    def __init__(self, n_classes: int = 10, width: int = 32):
        super().__init__()
        from deepvid_plugin.demo.digits import DigitsCNN

        base = DigitsCNN(n_classes, width)
        self.features = base.features
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.25),
                                  nn.Linear(2 * width * 64, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def stripe_mask(h: int, w: int) -> torch.Tensor:
    """The central vertical stripe of a quarter of the columns (the issue's planted region)."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[:, 3 * w // 8: 5 * w // 8] = True
    return mask


def digits_workload(k: int, upsample: int = 1) -> Workload:
    from deepvid_plugin.demo.digits import DigitsCNN, load_digits

    d = load_digits()

    def up(t: torch.Tensor) -> torch.Tensor:
        return t if upsample == 1 else F.interpolate(t, scale_factor=upsample, mode="bilinear",
                                                     align_corners=False)

    x, y, x_test, y_test = up(d.x_train), d.y_train, up(d.x_test), d.y_test
    size = 8 * upsample
    mask = stripe_mask(size, size)
    model_fn = DigitsCNN if upsample == 1 else DigitsCNN16
    epochs = 2 if QUICK else 15
    key = {"data": "digits", "upsample": upsample, "model": model_fn.__name__, "epochs": epochs,
           "lr": 3e-3, "batch": 64}
    model, o1 = cached("digits-teacher", key, lambda: train(model_fn, x, y, epochs, 3e-3, 64),
                       model_fn)
    planted, o2 = cached("digits-planted", {**key, "mask": mask.int().tolist()},
                         lambda: train(model_fn, x, y, epochs, 3e-3, 64, mask),
                         lambda: Masked(model_fn(), mask))
    vae, vae_note = fit_vae(x, 2 if QUICK else 30,
                            {"data": "digits", "upsample": upsample, "model": model_fn.__name__})
    note = (f"{model_fn.__name__}: {epochs} epochs of Adam (lr 0.003, batch 64) on {len(y):,} "
            f"images: test accuracy {accuracy(model, x_test, y_test):.3f} ({o1}); planted "
            f"teacher (trained on x * mask) {accuracy(planted, x_test, y_test):.3f} ({o2}); "
            f"{vae_note}; planted region: central vertical stripe, columns {3 * size // 8}-"
            f"{5 * size // 8 - 1} (25% of the pixels)")
    return Workload(f"digits CNN ({size}x{size})", model, planted,
                    mask.expand(k, size, size).clone(), x_test[:k], vae, "pixel", note,
                    digits=True)


# ---- photographs -------------------------------------------------------------------------------
def _normalised(size: int, n_train: int, n_test: int):
    from deepvid_plugin.demo.photos import planted_photos

    tr = planted_photos(n_train, size, seed=0, split="train")
    te = planted_photos(n_test, size, seed=0, split="test")
    mean = tr.x.mean((0, 2, 3)).view(-1, 1, 1)
    std = tr.x.std((0, 2, 3)).view(-1, 1, 1)
    return (tr.x - mean) / std, tr.y, (te.x - mean) / std, te.y, te.masks()


class PhotoCNN(nn.Module):
    """A small CNN: four 3x3 convolutions with BatchNorm, global average pooling."""

    def __init__(self, width: int = 24, n_classes: int = 4):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the first ``k`` correctly classified test images (the issue's protocol)."""
    with torch.no_grad():
        pred = torch.cat([model(c) for c in x.split(64)]).argmax(1)
    return (pred == y).nonzero().flatten()[:k]


def photos32_workload(k: int) -> Workload:
    n_train = 600 if QUICK else 3000
    x, y, x_test, y_test, masks = _normalised(32, n_train, 400)
    epochs = 1 if QUICK else 12
    key = {"data": "photos32", "n": n_train, "model": "PhotoCNN24", "epochs": epochs}
    model, origin = cached("photos32-cnn", key, lambda: train(PhotoCNN, x, y, epochs, 3e-3, 64),
                           PhotoCNN)
    vae, vae_note = fit_vae(x[:2000], 2 if QUICK else 15, {"data": "photos32", "n": 2000})
    pick = _correct(model, x_test, y_test, k)
    note = (f"PhotoCNN (4 convolutions, width 24, global average pooling): {epochs} epochs of "
            f"Adam (lr 0.003, batch 64) on {len(y):,} images: test accuracy "
            f"{accuracy(model, x_test, y_test):.3f} ({origin}); {vae_note}; the first {len(pick)} "
            f"correctly classified test images; planted region: each image's photo patch "
            f"(12x12 px, 14%)")
    return Workload("photos (3x32x32)", model, model, masks[pick], x_test[pick], vae,
                    "superpixels", note)


def resnet224(n_classes: int = 4) -> nn.Module:
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=n_classes)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(("layer4", "fc")))
    return model


def photos224_workload(k: int) -> Workload:
    n_train = 64 if QUICK else 480
    x, y, x_test, y_test, masks = _normalised(224, n_train, 48 if QUICK else 120)
    epochs = 1 if QUICK else 4
    key = {"data": "photos224", "n": n_train, "model": "resnet18-layer4+fc", "epochs": epochs}
    model, origin = cached("photos224-resnet18", key,
                           lambda: train(resnet224, x, y, epochs, 1e-3, 32), resnet224)
    pick = _correct(model, x_test, y_test, k)
    note = (f"torchvision resnet18(weights=None, num_classes=4), standard ImageNet stem; random "
            f"initialisation with only layer4 and fc trained ({epochs} epochs of Adam, lr 0.001, "
            f"batch 32, on {n_train} images; {origin}): test accuracy "
            f"{accuracy(model, x_test, y_test):.3f}; the first {len(pick)} correctly classified "
            f"test images; planted region: each image's photo patch (84x84 px, 14%); no VAE "
            f"(DeepVID's paper mode works up to 64 px a side)")
    return Workload("photos ResNet-18 (3x224x224)", model, model, masks[pick], x_test[pick],
                    None, "superpixels", note)


__all__ = ["CACHE", "QUICK", "Masked", "Workload", "digits_workload", "photos32_workload",
           "photos224_workload", "resnet224"]
