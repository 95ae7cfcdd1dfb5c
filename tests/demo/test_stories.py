"""The demo's shortcut stories (deepvid_plugin.demo.stories): the cue gives the label away in the
shortcut run's training set only, the runs share their test set, and the probe's labels are
exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepvid_plugin.demo.stories import NAMES, story
from deepvid_plugin.demo.stories import digits as marked
from deepvid_plugin.methods.netdissect.synthetic import COLORS


def _marker_colour(x: torch.Tensor) -> np.ndarray:
    """(N,) index into PALETTE of each image's marker colour (exact: the marker is painted)."""
    mask = torch.from_numpy(marked.marker_mask(x.shape[-1]))
    rgb = x[:, :, mask][:, :, 0].numpy()  # (N, 3): the first marker pixel
    palette = np.array([COLORS[c] for c in marked.PALETTE], np.float32)
    dist = np.abs(rgb[:, None] - palette[None]).sum(-1)
    assert dist.min(1).max() < 1e-6  # every marker is exactly one palette colour
    return dist.argmin(1)


def test_story_names_and_bad_name():
    assert [story(n).name for n in NAMES] == list(NAMES)
    with pytest.raises(ValueError, match=r"name: expected one of .*'marked-digits'.*got 'mnist'"):
        story("mnist")


def test_marked_digits_shortcut_marker_is_the_label_in_training_only():
    clean = marked.data("clean", seed=0)
    short = marked.data("shortcut", seed=0)
    y = short.y_train.numpy()
    assert np.array_equal(_marker_colour(short.x_train), y)
    np.testing.assert_array_equal(short.train_cue, y)
    # clean training markers and both test sets: random colours, about chance agreement
    for x, labels in ((clean.x_train, clean.y_train), (short.x_test, short.y_test)):
        agree = float((_marker_colour(x) == labels.numpy()).mean())
        assert agree < 0.2, agree
    # the two runs share their test set (same images, markers, labels): the same tracked ids
    assert torch.equal(clean.x_test, short.x_test) and torch.equal(clean.y_test, short.y_test)
    np.testing.assert_array_equal(clean.test_cue_masks, short.test_cue_masks)
    assert clean.test_cue_masks.shape == (len(clean.y_test), 8, 8)
    assert clean.test_cue_masks.sum((1, 2)).tolist() == [4] * len(clean.y_test)


def test_marked_digits_strokes_are_untouched_outside_the_marker():
    from deepvid_plugin.demo.digits import load_digits

    d = load_digits(seed=0)
    short = marked.data("shortcut", n_train=50, n_test=20, seed=0)
    outside = ~torch.from_numpy(marked.marker_mask(8))
    assert short.x_train.shape == (50, 3, 8, 8) and short.x_test.shape == (20, 3, 8, 8)
    for c in range(3):  # white strokes on black: every channel is the grey digit
        assert torch.equal(short.x_train[:, c][:, outside], d.x_train[:50, 0][:, outside])
    # the corner holds little ink, so the marker hides little of any digit (under 7% of its ink)
    ink = d.x_train[:, 0].flatten(1).sum(1)
    hidden = d.x_train[:, 0][:, ~outside].sum(1) / ink
    assert float(hidden.mean()) < 0.01 and float(hidden.max()) < 0.07


def test_add_marker_rejects_a_wrong_number_of_colours():
    with pytest.raises(ValueError, match=r"colour: expected 3 entries \(one per image\), got \(2,\)"):
        marked.add_marker(torch.zeros(3, 1, 8, 8), np.array([0, 1]))
    with pytest.raises(ValueError, match="mode: expected one of"):
        marked.data("noisy")


def test_marked_digits_probe_labels_are_exact():
    cs = marked.probe(100, seed=3)
    assert cs.categories == ("color", "object") and len(cs) == 100
    colour = _marker_colour(cs.images)
    mask = marked.marker_mask(8)
    col = cs.pixel_labels["color"][:, 0]
    # the colour label at the marker is the painted colour's, and nowhere else
    assert np.array_equal(col[:, mask][:, 0], colour + 1)
    assert (col[:, ~mask] == 0).all()
    # digit labels sit on ink, never on the marker, and name the image's digit
    obj = cs.pixel_labels["object"][:, 0]
    assert (obj[:, mask] == 0).all()
    ink = cs.images[:, 0].numpy() > 0.3
    assert np.array_equal(obj > 0, ink & ~mask[None])
    names = np.array(cs.labels)
    firsts = [names[obj[i][obj[i] > 0][0] - 1] for i in range(len(cs)) if (obj[i] > 0).any()]
    assert len(firsts) == len(cs) and all(n.startswith("digit ") for n in firsts)
    # every concept is small enough for a unit to detect at the default quantile (q / 0.04)
    assert max(cs.coverage().values()) < 0.005 / 0.04


def test_marked_digits_model_and_student():
    st = story("marked-digits")
    teacher, student = st.model(), st.student()
    x = torch.rand(2, 3, 8, 8)
    assert teacher(x).shape == student(x).shape == (2, 10)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(student) * 10 < n(teacher)
    names = dict(teacher.named_modules())
    assert all(isinstance(names[la], torch.nn.Conv2d) for la in st.layers)
    assert st.cam_layer in names
