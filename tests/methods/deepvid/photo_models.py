"""The small CNN of the photo tests (its trained weights are a fixture:
tests/fixtures/deepvid_photos/)."""

from torch import nn


def photo_cnn(size: int, width: int = 16) -> nn.Module:
    """Four convolutions and global average pooling; from 64 px on, a stride-2 stem."""
    return nn.Sequential(
        nn.Conv2d(3, width, 5, stride=2 if size >= 64 else 1, padding=2), nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(2 * width, 4))
