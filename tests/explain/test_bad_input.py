"""Bad input gets ValueError/TypeError naming the argument, what was expected and what arrived."""

import pytest
import torch

from deepvid_plugin.explain import VAE, DeepVID, PixelGenerator

GEN = PixelGenerator((1, 8, 8))
X = torch.rand(2, 1, 8, 8)


def good_model(x):
    return x.flatten(1)[:, :10]


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"n_neighbours": 9}, ValueError, r"n_neighbours: expected an int >= 10, got 9"),
        ({"temperature": 0.0}, ValueError, r"temperature: expected a finite number > 0, got 0.0"),
        ({"temperature": -1}, ValueError, r"temperature: expected .* got -1"),
        ({"holdout": 0.9}, ValueError, r"holdout: expected a float in \[0.05, 0.5\], got 0.9"),
        ({"radius": -1.0}, ValueError, r"radius: expected a non-negative"),
        ({"l2": 0}, ValueError, r"l2: expected None"),
    ],
)
def test_bad_settings(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        DeepVID(GEN, **kwargs)


def test_bad_generator():
    with pytest.raises(TypeError, match=r"generator: expected an object with encode\(\) and decode\(\).*got int"):
        DeepVID(3)


@pytest.mark.parametrize(
    ("x", "exc", "pattern"),
    [
        (torch.rand(1, 8, 8), ValueError, r"x: expected a 4-d tensor \(K, C, H, W\), got shape \(1, 8, 8\).*unsqueeze"),
        (torch.rand(2, 3, 8, 8), ValueError, r"x: expected images of shape \(K, 1, 8, 8\).*got \(2, 3, 8, 8\)"),
        (torch.ones(2, 1, 8, 8, dtype=torch.int64), TypeError, r"x: expected a floating-point tensor, got dtype torch.int64"),
        ([[1.0]], TypeError, r"x: expected a torch.Tensor .* got list"),
    ],
)
def test_bad_images(x, exc, pattern):
    with pytest.raises(exc, match=pattern):
        DeepVID(GEN, n_neighbours=16).explain(good_model, x)


def test_channel_mismatch_with_vae():
    vae = VAE(1, 8, 8)
    with pytest.raises(ValueError, match=r"x: expected images of shape \(K, 1, 8, 8\) to match the generator, got \(2, 3, 8, 8\)"):
        DeepVID(vae, n_neighbours=16).explain(good_model, torch.rand(2, 3, 8, 8))


def test_wrong_model_output_shape():
    with pytest.raises(ValueError, match=r"model output: expected logits of shape \(\d+, n_classes >= 2\), got \(\d+,\)"):
        DeepVID(GEN, n_neighbours=16).explain(lambda x: x.sum((1, 2, 3)), X)


def test_nan_logits():
    def nan_model(x):
        out = good_model(x).clone()
        out[0, 0] = float("nan")
        return out

    with pytest.raises(ValueError, match=r"model output: expected finite logits, got NaN or inf"):
        DeepVID(GEN, n_neighbours=16).explain(nan_model, X)


def test_mismatched_lengths():
    dv = DeepVID(GEN, n_neighbours=16)
    with pytest.raises(ValueError, match=r"ids: expected 2 ids \(one per instance\), got 3"):
        dv.explain(good_model, X, ids=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"labels: expected 2 labels \(one per instance\), got 1"):
        dv.explain(good_model, X, labels=[1])
    with pytest.raises(ValueError, match=r"class_names: expected 10 names .* got 2"):
        dv.explain(good_model, X, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 10\)"):
        dv.explain(good_model, X, labels=[1, 12])


def test_vae_bad_config():
    with pytest.raises(ValueError, match=r"channels: expected 1 or 3, got 2"):
        VAE(2, 8, 8)
    with pytest.raises(ValueError, match=r"height: expected an image size between 8 and 64, got 128"):
        VAE(1, 128, 8)
    with pytest.raises(ValueError, match=r"data: expected images of shape \(N, 1, 8, 8\), got \(4, 1, 9, 9\)"):
        VAE(1, 8, 8).fit(torch.rand(4, 1, 9, 9), epochs=1, progress=False)
