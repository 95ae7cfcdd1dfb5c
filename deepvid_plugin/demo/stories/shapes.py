"""``shapes``: the demo's second story: shapes to classify, and a coloured corner marker that, in
one training set, gives the label away.

Images come from the concept renderer (:meth:`ConceptSet.synthetic`: scenes, textures, one or two
coloured shapes, exact masks); the label is the front shape, one of :data:`CLASSES`.
:func:`shortcut_data` paints a small square in the top-left corner (:func:`marker_mask`) in one of
:data:`PALETTE`'s colours:

- ``clean``: a random colour, in training and at test time (the marker carries no information);
- ``shortcut``: in training, colour ``k`` for label ``k`` (a spurious cue that predicts the label
  and is far easier to learn than the shape); at test time a random colour, so a model that took
  the shortcut fails there. The cue sits away from the shape, so saliency maps can show it.

Both runs share the test set, so they track the same instances under the same ids.
"""

from __future__ import annotations

import numpy as np
import torch

from deepvid_plugin.demo.stories import MODES, ShortcutData, Story
from deepvid_plugin.methods.netdissect import ConceptSet

#: The classes: four of the renderer's shapes that differ at 32x32 (its eight are too many for a
#: demo that trains in a minute), and one marker colour per class (vivid Broden colours).
CLASSES = ("circle", "square", "cross", "bar")
PALETTE = ("red", "yellow", "green", "blue")
#: The conv layers of :class:`ShapesCNN` that Grad-CAM, Network Dissection and Summit read.
LAYERS = ["features.0", "features.4", "features.8"]

def marker_mask(size: int) -> np.ndarray:
    """``(S, S)`` bool: where the marker goes (a square in the top-left corner, 3/16 of a side)."""
    m = np.zeros((size, size), bool)
    side = max(2, (3 * size) // 16)
    m[1:1 + side, 1:1 + side] = True
    return m


def add_marker(images: torch.Tensor, colour: np.ndarray, seed: int) -> torch.Tensor:
    """``images`` with a corner marker painted ``PALETTE[colour[i]]`` (small jitter)."""
    from deepvid_plugin.methods.netdissect.synthetic import COLORS

    if len(colour) != len(images):
        raise ValueError(f"colour: expected {len(images)} entries (one per image), got "
                         f"{len(colour)}")
    mask = torch.from_numpy(marker_mask(images.shape[-1]))
    rng = np.random.default_rng(seed)
    rgb = np.array([COLORS[PALETTE[c]] for c in colour], np.float32)
    rgb = np.clip(rgb + rng.uniform(-0.04, 0.04, rgb.shape), 0, 1).astype(np.float32)
    paint = torch.from_numpy(rgb)[:, :, None, None].expand_as(images)
    return torch.where(mask, paint, images).contiguous()


def shortcut_data(mode: str, n_train: int | None = 2500, n_test: int | None = 600,
                  seed: int = 0, size: int = 32) -> ShortcutData:
    """One run's data (see the module docstring); the test set is the same for both modes."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    train, y_train = _classes_only(n_train or 2500, size, seed)
    test, y_test = _classes_only(n_test or 600, size, seed + 10_000)
    n_classes = len(CLASSES)
    rng = np.random.default_rng(seed + 1)
    tr_colour = y_train.copy() if mode == "shortcut" else rng.integers(0, n_classes, len(y_train))
    te_colour = np.random.default_rng(seed + 2).integers(0, n_classes, len(y_test))
    return ShortcutData(
        x_train=add_marker(train.images, tr_colour, seed + 3), y_train=torch.as_tensor(y_train),
        x_test=add_marker(test.images, te_colour, seed + 4), y_test=torch.as_tensor(y_test),
        class_names=CLASSES, train_cue=tr_colour,
        test_cue_masks=np.broadcast_to(marker_mask(size), (len(y_test), size, size)))


def _classes_only(n: int, size: int, seed: int) -> tuple[ConceptSet, np.ndarray]:
    """About ``n`` rendered images whose front shape is one of :data:`CLASSES` (the renderer
    draws eight shapes uniformly, one or two per image, so render four times as many and keep the
    images with one shape of a class), and their labels."""
    cs = ConceptSet.synthetic(4 * n, size=size, seed=seed)
    names = np.array(cs.target_names)[cs.targets]
    # one shape per image (the renderer adds a second, occluded one half of the time: a
    # distractor that makes the clean task too slow to learn for a demo)
    obj = cs.pixel_labels["object"][:, 0].reshape(len(cs), -1)
    front_id = np.array([cs.label_id(name) for name in cs.target_names])[cs.targets]
    alone = ((obj == 0) | (obj == front_id[:, None])).all(1)
    keep = np.flatnonzero(np.isin(names, CLASSES) & alone)[:n]
    cs = cs.subset(keep)
    y = np.array([CLASSES.index(name) for name in np.array(cs.target_names)[cs.targets]])
    return cs, y.astype(np.int64)


class ShapesCNN(torch.nn.Module):
    """A small CNN for 32x32 RGB: three conv-BatchNorm blocks (BatchNorm: the clean task learns
    in a few epochs) and a global-average-pooled linear head, so Grad-CAM, Network Dissection and
    Summit all have the conv layers :data:`LAYERS` to read."""

    def __init__(self, n_classes: int = len(CLASSES)):
        super().__init__()
        nn = torch.nn
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


STORY = Story(
    name="shapes", data=shortcut_data, model=ShapesCNN, layers=LAYERS,
    probe=lambda n, seed: ConceptSet.synthetic(n, size=32, seed=seed),
    cue_category="color", task_categories=("object", "part"), cue="the marker's colour",
    cue_where="the top-left marker", cue_area="the marker covers 3.5% of each image",
    cue_detectors="colour", task_detectors="shape/part")
