"""Run by test_ddp.py: ``python ddp_script.py OUT DEVICES``; a Lightning fit with the DeepVID
callback under ``strategy="ddp"`` (gloo, CPU) when DEVICES > 1. Lightning re-launches this very
script for the other ranks. Each rank reports what it wrote in ``OUT/rank<r>.json``."""

import json
import os
import sys

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from deepvid_plugin.callbacks.lightning import DeepVIDLightningCallback
from deepvid_plugin.demo.digits import load_digits
from deepvid_plugin.explain import PixelGenerator

EPOCHS = 3


class Frozen(pl.LightningModule):
    """lr=0 and no BatchNorm/Dropout: the model is the same on every rank and in a 1-process
    run, so any difference in the records comes from the callback's DDP handling."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(8 * 64, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def main(out: str, devices: int) -> None:
    torch.set_num_threads(1)
    d = load_digits()
    cb = DeepVIDLightningCallback(d.x_test[:4], labels=d.y_test[:4],
                                  generator=PixelGenerator((1, 8, 8)), radius=0.1,
                                  n_neighbours=64, progress=False)
    trainer = pl.Trainer(
        accelerator="cpu", devices=devices, max_epochs=EPOCHS,
        strategy="ddp" if devices > 1 else "auto", callbacks=[cb],
        logger=TensorBoardLogger(out, name="tb", version=0), enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False)
    data = DataLoader(TensorDataset(d.x_train[:128], d.y_train[:128]), batch_size=32)
    trainer.fit(Frozen(), data)
    with open(os.path.join(out, f"rank{trainer.global_rank}.json"), "w") as f:
        json.dump({"rank": trainer.global_rank, "world_size": trainer.world_size,
                   "written_steps": cb.explanations.written_steps, "failures": cb.failures}, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
