"""The models people train today, randomly initialised (nothing is downloaded), for the tests
that run every kind on each of them.

Inputs are ImageNet-normalised random images at the size each family needs: 224 for ResNet-18
(as the issue that asked for these tests did) and the ViT (its position embedding is for 224),
small sizes elsewhere so the suite stays fast on two cores.
"""

from __future__ import annotations

import torch
from torch import nn

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def images(k: int, size: int, seed: int = 0) -> torch.Tensor:
    """``k`` ImageNet-normalised RGB images, as users feed them."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(k, 3, size, size, generator=g) - MEAN) / STD


def _seeded(build):
    def make(*args, **kwargs):
        torch.manual_seed(0)
        return build(*args, **kwargs).eval()
    return make


@_seeded
def resnet18(n: int = 5) -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(num_classes=n)


@_seeded
def mobilenet(n: int = 5) -> nn.Module:
    import torchvision

    return torchvision.models.mobilenet_v3_small(num_classes=n)


@_seeded
def vit_tiny(n: int = 5, **kwargs) -> nn.Module:
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=n, **kwargs)


@_seeded
def convnext_atto(n: int = 5, **kwargs) -> nn.Module:
    import timm

    return timm.create_model("convnext_atto", pretrained=False, num_classes=n, **kwargs)


@_seeded
def swin_small_config(n: int = 5) -> nn.Module:
    """timm's Swin layout (channels-last stages) at a tiny width and depth."""
    import timm

    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=n,
                             depths=(1, 1, 1, 1), embed_dim=24, num_heads=(1, 1, 1, 1))


@_seeded
def hf_vit(n: int = 3, size: int = 32) -> nn.Module:
    """A tiny HuggingFace ViTForImageClassification (its output is a ModelOutput)."""
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(image_size=size, patch_size=8, num_channels=3, hidden_size=32,
                    num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    num_labels=n)
    return ViTForImageClassification(cfg)


class SmallCNN(nn.Module):
    """A small ResNet-style classifier: conv features, GAP, a linear head."""

    def __init__(self, n: int = 5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, n)

    def forward(self, x):
        return self.head(self.features(x))

    def head(self, f):
        return self.fc(self.flatten(self.pool(f)))


class DictOutput(nn.Module):
    """A detection-style model: a dict with the logits and the features."""

    def __init__(self, n: int = 5):
        super().__init__()
        self.net = SmallCNN(n)

    def forward(self, x):
        f = self.net.features(x)
        return {"logits": self.net.head(f), "features": f}


class TupleOutput(nn.Module):
    """HuggingFace's return_dict=False style: (logits, hidden state)."""

    def __init__(self, n: int = 5):
        super().__init__()
        self.net = SmallCNN(n)

    def forward(self, x):
        f = self.net.features(x)
        return self.net.head(f), f


@_seeded
def small_cnn(n: int = 5) -> nn.Module:
    return SmallCNN(n)


@_seeded
def dict_output(n: int = 5) -> nn.Module:
    return DictOutput(n)


@_seeded
def tuple_output(n: int = 5) -> nn.Module:
    return TupleOutput(n)


@_seeded
def multi_label(n: int = 4) -> nn.Module:
    """A multi-label classifier (trained with BCE-with-logits: its logits mean sigmoids). The
    head's bias makes classes 0 and 1 likely for every image, so several classes are predicted."""
    model = SmallCNN(n)
    with torch.no_grad():
        model.fc.bias.copy_(torch.tensor([3.0, 2.0, -3.0, -3.0])[:n])
    return model
