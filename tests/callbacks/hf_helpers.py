"""A tiny HuggingFace image classifier and dataset for the Trainer tests (random init, CPU)."""

from __future__ import annotations

import torch

SIZE, N_CLASSES, N_TRAIN = 32, 3, 24


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(N_TRAIN, 3, SIZE, SIZE, generator=g), torch.randint(0, N_CLASSES,
                                                                          (N_TRAIN,), generator=g)


class Images(torch.utils.data.Dataset):
    """What an image-classification Trainer gets: dicts of pixel_values and labels."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def vit():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    return ViTForImageClassification(ViTConfig(
        image_size=SIZE, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=N_CLASSES))


def train(model, out_dir, callback, report_to, epochs: int = 2, **kwargs):
    from transformers import Trainer, TrainingArguments

    x, y = data()
    args = TrainingArguments(str(out_dir), num_train_epochs=epochs, per_device_train_batch_size=8,
                             report_to=report_to, use_cpu=True, save_strategy="no",
                             logging_steps=1, disable_tqdm=True, seed=0, **kwargs)
    trainer = Trainer(model=model, args=args, train_dataset=Images(x, y), callbacks=[callback])
    trainer.train()
    return trainer
