"""A tiny LightningModule around DigitsCNN, shared by the Lightning tests."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from tests.callbacks.helpers import small_cnn, train_slice


class LitDigits(pl.LightningModule):
    def __init__(self, lr: float = 3e-3, model: torch.nn.Module | None = None):
        super().__init__()
        self.net = model if model is not None else small_cnn()
        self.lr = lr

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def loader(shuffle: bool = True) -> DataLoader:
    x, y = train_slice()
    return DataLoader(TensorDataset(x, y), batch_size=64, shuffle=shuffle)


def trainer(**kwargs) -> pl.Trainer:
    opts = dict(accelerator="cpu", devices=1, enable_progress_bar=False,
                enable_model_summary=False, deterministic=True, logger=False,
                enable_checkpointing=False)
    opts.update(kwargs)
    return pl.Trainer(**opts)
