"""The shared argument checks: what each accepts (normalised), and messages that name the
argument, the expectation and what arrived."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepvid_plugin.core import checks


def test_integer():
    assert checks.integer("seed", np.int64(3)) == 3 and type(checks.integer("seed", 3)) is int
    for bad in (True, 1.0, -1, "2", None):
        with pytest.raises(ValueError, match=r"seed: expected an int >= 0, got"):
            checks.integer("seed", bad)
    with pytest.raises(ValueError, match=r"n_neighbours: expected an int >= 10, got 5"):
        checks.integer("n_neighbours", 5, 10)


def test_positive_and_optional_positive():
    assert checks.positive("temperature", 2) == 2.0
    for bad in (0, -1.0, float("inf"), float("nan"), True, "2"):
        with pytest.raises(ValueError, match=r"temperature: expected a finite number > 0"):
            checks.positive("temperature", bad)
    assert checks.optional_positive("l2", None) is None
    assert checks.optional_positive("l2", 0.5) == 0.5
    with pytest.raises(ValueError, match=r"l2: expected None \(automatic\) or a finite number"):
        checks.optional_positive("l2", 0)


def test_fraction_and_choice():
    assert checks.fraction("holdout", 0.2, 0.05, 0.5) == 0.2
    with pytest.raises(ValueError, match=r"holdout: expected a number in \[0.05, 0.5\], got 0.6"):
        checks.fraction("holdout", 0.6, 0.05, 0.5)
    assert checks.choice("outputs", "probs", ("logits", "probs")) == "probs"
    with pytest.raises(ValueError, match=r"outputs: expected one of \['logits', 'probs'\], got"):
        checks.choice("outputs", "scores", ("logits", "probs"))


def test_radius_is_the_engines_rule_zero_allowed():
    assert checks.radius(0).item() == 0.0  # the callback used to refuse this; the engine did not
    assert checks.radius([0.1, 0.2]).tolist() == pytest.approx([0.1, 0.2])
    for bad in (-1, [0.1, -0.2], [[0.1]], [], float("nan"), "big", True):
        with pytest.raises(ValueError, match=r"radius: expected a number >= 0 or one per latent"):
            checks.radius(bad)


def test_generator():
    class G:
        def encode(self, x):
            return x

        def decode(self, z):
            return z

    g = G()
    assert checks.generator(g) is g
    with pytest.raises(TypeError, match=r"generator: expected an object with encode\(\) and "
                                        r"decode\(\).*got int"):
        checks.generator(3)


def test_images():
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    out = checks.images("x", x)
    assert not out.requires_grad and torch.equal(out, x.detach())
    with pytest.raises(TypeError, match="x: expected a torch.Tensor of images"):
        checks.images("x", np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match=r"instances: .*unsqueeze\(0\)"):
        checks.images("instances", torch.zeros(1, 8, 8))
    with pytest.raises(TypeError, match="x: expected a floating-point tensor, got dtype"):
        checks.images("x", torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="x: expected at least one instance, got 0"):
        checks.images("x", torch.zeros(0, 1, 8, 8))
    bad = torch.zeros(3, 1, 8, 8)
    bad[1, 0, :2, 0] = float("nan")
    with pytest.raises(ValueError, match="x: instance 1 has 2 non-finite pixels"):
        checks.images("x", bad)


def test_ids():
    assert checks.ids(None, 3) == ["0", "1", "2"]
    assert checks.ids(None, 2, ["7", "9"]) == ["7", "9"]
    assert checks.ids([1, 2], 2) == ["1", "2"]
    with pytest.raises(TypeError, match="ids: expected a sequence of 2 ids, got a single string"):
        checks.ids("ab", 2)
    with pytest.raises(ValueError, match=r"ids: expected 2 ids \(one per instance\), got 3"):
        checks.ids(["a", "b", "c"], 2)
    with pytest.raises(ValueError, match="ids: expected 2 unique non-empty ids"):
        checks.ids(["a", "a"], 2)
    with pytest.raises(ValueError, match="ids: expected 2 unique non-empty ids"):
        checks.ids(["a", ""], 2)
    # k=None: any number of ids (faithfulness.random_saliency), still unique and never None.
    assert checks.ids(["a", 3], None) == ["a", "3"]
    assert checks.ids([], None) == []
    with pytest.raises(ValueError, match=r"ids: expected 2 unique non-empty ids, got \['a', 'a'\]"):
        checks.ids(["a", "a"], None)
    with pytest.raises(TypeError, match="ids: expected a sequence of ids, got None"):
        checks.ids(None, None)
    with pytest.raises(TypeError, match="ids: expected a sequence of ids, got a single string 'abc'"):
        checks.ids("abc", None)


def test_labels():
    assert checks.labels(None, 2) is None
    assert checks.labels(torch.tensor([1.0, 2.0]), 2) == [1, 2]  # integral floats are fine
    assert checks.labels(np.array([3, 0]), 2, n_classes=4) == [3, 0]
    with pytest.raises(ValueError, match=r"labels: expected integer class indices, got \[1.7"):
        checks.labels([1.7, 2.0], 2)
    with pytest.raises(ValueError, match="labels: expected integer class indices"):
        checks.labels([True, 1], 2)
    with pytest.raises(ValueError, match=r"labels: expected 2 labels \(one per instance\), got 1"):
        checks.labels([1], 2)
    with pytest.raises(ValueError, match=r"labels: expected a 1-d sequence of 2 class indices"):
        checks.labels(torch.zeros(2, 1), 2)
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 10\), got"):
        checks.labels([0, 10], 2, n_classes=10)
    with pytest.raises(ValueError, match=r"labels: expected class indices >= 0, got \[-1, 0\]"):
        checks.labels([-1, 0], 2)


def test_class_names():
    assert checks.class_names(None) is None
    assert checks.class_names(("a", 1)) == ["a", "1"]
    with pytest.raises(TypeError, match="class_names: expected a sequence of strings"):
        checks.class_names("ab")
    with pytest.raises(ValueError, match="class_names: expected at least 2 names"):
        checks.class_names(["only"])
    with pytest.raises(ValueError, match=r"class_names: expected 10 names .* got 2"):
        checks.class_names(["a", "b"], n_classes=10)
