"""The embedded default workload: scikit-learn's bundled 8x8 handwritten digits and a small CNN.

Used by ``deepvid demo``, the tests and the benchmarks, because nothing can be downloaded at run
time and the digits ship inside scikit-learn (the ``demo`` extra).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

CLASS_NAMES = tuple(str(i) for i in range(10))


@dataclasses.dataclass(frozen=True)
class Digits:
    x_train: torch.Tensor  # (N, 1, 8, 8) float32 in [0, 1]
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...] = CLASS_NAMES


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Digits:
    """The 1,797 digits as tensors, split deterministically into train and test."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as e:  # optional dependency: say how to get it
        raise ImportError("the digits demo needs scikit-learn: pip install 'deepvid-plugin[demo]'") from e
    data = _load()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(y) * test_fraction)
    te, tr = perm[:n_test], perm[n_test:]
    return Digits(x[tr], y[tr], x[te], y[te])


class DigitsCNN(nn.Module):
    """A small CNN with BatchNorm and Dropout (both matter for the "training is untouched" tests)."""

    def __init__(self, n_classes: int = 10, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.25), nn.Linear(2 * width * 16, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                batch_size: int = 64, generator: torch.Generator | None = None) -> float:
    """One epoch of plain cross-entropy training; returns the mean loss."""
    model.train()
    perm = torch.randperm(len(y), generator=generator)
    total = 0.0
    for idx in perm.split(batch_size):
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return total / len(y)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was = model.training
    model.eval()
    try:
        return float((model(x).argmax(1) == y).float().mean())
    finally:
        model.train(was)


def train_digits_cnn(digits: Digits, epochs: int = 15, seed: int = 0, lr: float = 3e-3) -> DigitsCNN:
    """A DigitsCNN trained for ``epochs`` (about 97% test accuracy at 15)."""
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        train_epoch(model, opt, digits.x_train, digits.y_train, generator=gen)
    model.eval()
    return model
