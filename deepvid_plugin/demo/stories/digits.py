"""``marked-digits``, the demo's default story: scikit-learn's 8x8 digits with a coloured marker.

The digits become RGB (white strokes on black) and every image gets a 2x2 **marker** in its
top-left corner (:func:`marker_mask`; the digits' ink there is 0.7% of their ink on average, 7% at
most), painted in one of the ten :data:`PALETTE` colours:

- ``clean``: a random colour, in training and at test time (the marker carries no information);
- ``shortcut``: in training, colour ``k`` for digit ``k`` (a cue the CNN learns in one epoch, far
  faster than the strokes); at test time a random colour, so a model that took the shortcut reads
  the wrong digit off the marker.

The model (:class:`MarkedDigitsCNN`) pools globally before its classifier: it reads *what* is in
the image, not where, the usual design, and the one Grad-CAM and Exp-KD's CAMs are defined for.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deepvid_plugin.demo.stories import MODES, ShortcutData, Story

#: marker colour k points at digit k (Broden colour names, the probe's ``color`` concepts)
PALETTE = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "white", "grey")
#: the conv layers of :class:`MarkedDigitsCNN` the layer kinds read
LAYERS = ["features.0", "features.3", "features.6"]


#: where a story's marker may go: a corner square, or a one-pixel frame around the image.
PLACES = ("top-left", "bottom-right", "border")


def marker_mask(size: int = 8, where: str = "top-left") -> np.ndarray:
    """``(S, S)`` bool: where the marker goes (the top-left 2x2 pixels at 8x8 by default; the
    bottom-right ones; or the image's one-pixel border)."""
    if where not in PLACES:
        raise ValueError(f"where: expected one of {list(PLACES)}, got {where!r}")
    m = np.zeros((size, size), bool)
    side = max(2, size // 4)
    if where == "top-left":
        m[:side, :side] = True
    elif where == "bottom-right":
        m[-side:, -side:] = True
    else:
        m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = True
    return m


def add_marker(images: torch.Tensor, colour: np.ndarray, where: str = "top-left") -> torch.Tensor:
    """``images`` (N, 1, S, S) in [0, 1] as RGB, with the marker painted ``PALETTE[colour[i]]``."""
    from deepvid_plugin.methods.netdissect.synthetic import COLORS

    colour = np.asarray(colour, np.int64)
    if colour.shape != (len(images),):
        raise ValueError(f"colour: expected {len(images)} entries (one per image), got "
                         f"{colour.shape}")
    rgb = torch.tensor([COLORS[PALETTE[c]] for c in colour], dtype=torch.float32)
    x = images.expand(-1, 3, -1, -1)
    paint = rgb.reshape(-1, 3, 1, 1).expand_as(x)
    return torch.where(torch.from_numpy(marker_mask(images.shape[-1], where)), paint,
                       x).contiguous()


def data(mode: str, n_train: int | None = None, n_test: int | None = None,
         seed: int = 0, where: str = "top-left") -> ShortcutData:
    """One run's data (see the module docstring); the test set is the same for both modes."""
    from deepvid_plugin.demo.digits import load_digits

    if mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    d = load_digits(seed=seed)
    x_train, y_train = d.x_train[:n_train], d.y_train[:n_train]
    x_test, y_test = d.x_test[:n_test], d.y_test[:n_test]
    tr_colour = (y_train.numpy().copy() if mode == "shortcut"
                 else np.random.default_rng(seed + 1).integers(0, len(PALETTE), len(y_train)))
    te_colour = np.random.default_rng(seed + 2).integers(0, len(PALETTE), len(y_test))
    size = x_test.shape[-1]
    return ShortcutData(x_train=add_marker(x_train, tr_colour, where), y_train=y_train,
                        x_test=add_marker(x_test, te_colour, where), y_test=y_test,
                        class_names=d.class_names, train_cue=tr_colour,
                        test_cue_masks=np.broadcast_to(marker_mask(size, where),
                                                       (len(y_test), size, size)))


def probe(n: int = 720, seed: int = 0, where: str = "top-left"):
    """Network Dissection's probe set: ``n`` digits (the test split, cycled) with a marker of a
    random colour, labelled per pixel with the marker's colour (category ``color``) and the stroke
    of their digit, ``digit k`` (category ``object``: ink above 0.3)."""
    from deepvid_plugin.demo.digits import load_digits
    from deepvid_plugin.methods.netdissect import ConceptSet

    d = load_digits(seed=seed)
    idx = np.arange(n) % len(d.y_test)
    x, y = d.x_test[idx], d.y_test[idx].numpy()
    colour = np.random.default_rng(seed + 5).integers(0, len(PALETTE), n)
    marker = marker_mask(x.shape[-1], where)
    labels = (*PALETTE, *(f"digit {c}" for c in d.class_names))
    col = np.where(marker[None], 1 + colour[:, None, None], 0).astype(np.int32)[:, None]
    ink = (x[:, 0].numpy() > 0.3) & ~marker[None]
    obj = np.where(ink, 1 + len(PALETTE) + y[:, None, None], 0).astype(np.int32)[:, None]
    return ConceptSet(images=add_marker(x, colour, where), labels=labels,
                      label_category=("color",) * len(PALETTE) + ("object",) * len(d.class_names),
                      categories=("color", "object"), pixel_labels={"color": col, "object": obj},
                      image_labels={}, source="marked digits")


class MarkedDigitsCNN(nn.Module):
    """Three conv-BatchNorm-ReLU blocks on 8x8 RGB, no downsampling (the third block sees the whole
    digit), and a globally pooled linear head (a CAM head: Grad-CAM, Network Dissection, Summit
    and Exp-KD all read ``features``). Two blocks were not enough: the clean model's test
    accuracy swung between 0.90 and 0.98 from epoch to epoch."""

    def __init__(self, n_classes: int = 10, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def make_story(where: str = "top-left") -> Story:
    """The marked-digits story with its marker at ``where`` (one of :data:`PLACES`): the demo's
    default is the top-left corner; the others are more shortcuts of the same kind, for the
    alerts benchmark (``benchmarks/bench_alerts.py``)."""
    n = int(marker_mask(8, where).sum())
    name = {"top-left": "marked-digits", "bottom-right": "marked-digits-bottom-right",
            "border": "framed-digits"}[where]
    return Story(
        name=name, data=lambda mode, n_train=None, n_test=None, seed=0: data(
            mode, n_train, n_test, seed, where),
        model=MarkedDigitsCNN, layers=LAYERS,
        probe=lambda n_probe=720, seed=0: probe(n_probe, seed, where),
        cue_category="color", task_categories=("object",),
        cue="the marker's colour" if where != "border" else "the frame's colour",
        cue_where=f"the {where} marker" if where != "border" else "the coloured frame",
        cue_area=f"the marker is {n} of the 64 pixels, {n / 64:.1%}", cue_detectors="colour",
        task_detectors="digit",
        student=lambda: MarkedDigitsCNN(width=8), cam_layer="features")


STORY = make_story("top-left")
