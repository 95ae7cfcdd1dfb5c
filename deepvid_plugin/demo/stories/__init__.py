"""The demo's shortcut stories: a data set with a spurious cue that, in one run's training set,
gives the label away (and is random at test time), so that every view can show what a model that
took the shortcut looks like.

A :class:`Story` says everything the demo needs to know about one data set: its data for a
``clean`` and a ``shortcut`` run, its model and the layers the layer kinds read, a probe set for
Network Dissection, and which concepts are the cue's and which the task's. Two stories:

- ``marked-digits`` (:mod:`.digits`, the default): scikit-learn's digits with a 2x2 marker in the
  top-left corner whose colour gives the label in the shortcut run's training set (variants for
  the alerts benchmark: ``marked-digits-bottom-right``, and ``framed-digits``, a coloured frame);
- ``shapes`` (:mod:`.shapes`): rendered shapes with a corner marker whose colour gives the label.

Both runs of a story share the test set, so they track the same instances under the same ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

MODES = ("clean", "shortcut")


@dataclasses.dataclass(frozen=True)
class ShortcutData:
    """One run's tensors (``x``: (N, C, S, S) float32 in [0, 1], ``y``: (N,) int64) and where the
    cue sits in every test image."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]
    train_cue: np.ndarray  # (N_train,) the class each training image's cue points at
    test_cue_masks: np.ndarray  # (N_test, S, S) bool: the cue's pixels in each test image


@dataclasses.dataclass(frozen=True)
class Story:
    """What the demo needs to know about one shortcut data set (see the module docstring)."""

    name: str
    #: (mode, n_train, n_test, seed) -> the run's data; ``n_*`` None means "all there is"
    data: Callable[[str, int | None, int | None, int], ShortcutData]
    model: Callable[[], torch.nn.Module]
    #: the conv layers Network Dissection and Summit read (module names)
    layers: list[str]
    #: (n, seed) -> the Network Dissection probe set (the same for both runs)
    probe: Callable[[int, int], Any]
    cue_category: str  # the probe category whose detectors are the cue's
    task_categories: tuple[str, ...]  # the probe categories whose detectors are the task's
    cue: str  # the cue in words, e.g. "the marker's colour"
    cue_where: str  # where the cue is, e.g. "the top-left marker"
    cue_area: str  # how much of the image the cue covers, in words
    cue_detectors: str  # what the cue category's detectors are called, e.g. "colour"
    task_detectors: str  # what the task categories' detectors are called, e.g. "digit"
    #: () -> a smaller model of the same family, the Exp-KD student; None: no third run
    student: Callable[[], torch.nn.Module] | None = None
    #: the layer whose output feeds the classifier (Exp-KD's CAM layer), teacher and student
    cam_layer: str | None = None


def story(name: str) -> Story:
    """The story called ``name`` (one of :data:`NAMES`)."""
    if name == "marked-digits":
        from deepvid_plugin.demo.stories.digits import STORY
    elif name in ("marked-digits-bottom-right", "framed-digits"):
        from deepvid_plugin.demo.stories.digits import make_story

        return make_story("bottom-right" if name == "marked-digits-bottom-right" else "border")
    elif name == "shapes":
        from deepvid_plugin.demo.stories.shapes import STORY
    else:
        raise ValueError(f"name: expected one of {list(NAMES)}, got {name!r}")
    return STORY


NAMES = ("marked-digits", "shapes", "marked-digits-bottom-right", "framed-digits")
