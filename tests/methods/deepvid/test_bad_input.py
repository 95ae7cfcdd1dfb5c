"""Bad input gets ValueError/TypeError naming the argument, what was expected and what arrived."""

import numpy as np
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
        ({"holdout": 0.9}, ValueError, r"holdout: expected a number in \[0.05, 0.5\], got 0.9"),
        ({"radius": -1.0}, ValueError, r"radius: expected a number >= 0 or one per latent dimension .*got -1.0"),
        ({"radius": [[0.5]]}, ValueError, r"radius: expected a number >= 0 or one per latent dimension .*got \[\[0.5\]\]"),
        ({"l2": float("inf")}, ValueError, r"l2: expected None \(automatic\) or a finite number > 0, got inf"),
        ({"seed": -1}, ValueError, r"seed: expected an int >= 0, got -1"),
        ({"batch_size": 2.0}, ValueError, r"batch_size: expected an int >= 1, got 2.0"),
        ({"l2": 0}, ValueError, r"l2: expected None"),
        ({"neighbourhood": "pixels"}, ValueError,
         r"neighbourhood: expected one of \['vae\+jitter', 'vae', 'masks', 'vae\+masks'\], "
         r"got 'pixels'"),
        ({"features": "patches"}, ValueError,
         r"features: expected one of \['auto', 'pixels', 'superpixels', 'grid'\], got 'patches'"),
        ({"features": "superpixels", "neighbourhood": "vae"}, ValueError,
         r"neighbourhood: features='superpixels' switches regions off, so expected 'masks' or "
         r"'vae\+masks', got 'vae'"),
        ({"features": "pixels", "neighbourhood": "masks"}, ValueError,
         r"neighbourhood: features='pixels' samples the generator, so expected 'vae\+jitter' or "
         r"'vae', got 'masks'"),
        ({"neighbourhood": "masks", "jitter": 0.05}, ValueError,
         r"jitter: neighbourhood='masks' adds no pixel jitter"),
        ({"baseline": "grey"}, ValueError,
         r"baseline: expected one of \['zero', 'mean', 'blur', 'reconstruction'\], got 'grey'"),
        ({"keep": 1.0}, ValueError, r"keep: expected a number in \[0.05, 0.95\], got 1.0"),
        ({"n_features": 1}, ValueError, r"n_features: expected an int >= 2, got 1"),
        ({"store_classes": 0}, ValueError, r"store_classes: expected an int >= 1, got 0"),
        ({"jitter": -0.1}, ValueError, r"jitter: expected a number > 0 with neighbourhood='vae\+jitter', got -0.1"),
        ({"jitter": float("nan")}, ValueError, r"jitter: expected None \(the default\) or a finite number, got nan"),
        ({"neighbourhood": "vae", "jitter": 0.05}, ValueError, r"jitter: neighbourhood='vae' adds no pixel jitter"),
        ({"outputs": "probabilities"}, ValueError, r"outputs: expected one of \['logits', 'probs'\], got 'probabilities'"),
    ],
)
def test_bad_settings(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        DeepVID(GEN, **kwargs)


def test_bad_generator():
    with pytest.raises(TypeError, match=r"generator: expected an object with encode\(\) and decode\(\).*got int"):
        DeepVID(3)
    with pytest.raises(ValueError, match=r"generator: neighbourhood='vae\+masks' samples a generator, got None"):
        DeepVID(None, neighbourhood="vae+masks")
    with pytest.raises(ValueError, match=r"baseline: 'reconstruction' needs a generator, got generator=None"):
        DeepVID(None, baseline="reconstruction")


def test_pixels_need_a_generator_and_small_images():
    with pytest.raises(ValueError, match=r"generator: features='pixels' samples neighbours from a "
                                         r"generator, got None: pass a fitted VAE, or use features='superpixels'"):
        DeepVID(None, features="pixels").explain(good_model, X)
    big = PixelGenerator((1, 96, 96))
    with pytest.raises(ValueError, match=r"features: 'pixels' keeps a weight per pixel and class and works up "
                                         r"to 64 pixels a side, got images of 96x96: use features='superpixels'"):
        DeepVID(big, features="pixels").explain(good_model, torch.rand(1, 1, 96, 96))


@pytest.mark.parametrize(
    ("x", "exc", "pattern"),
    [
        (torch.rand(1, 8, 8), ValueError, r"x: expected images of shape \(K, C, H, W\), got shape \(1, 8, 8\).*unsqueeze"),
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
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 10\), got \[1, 12\]"):
        dv.explain(good_model, X, labels=[1, 12])
    with pytest.raises(ValueError, match=r"ids: expected 2 unique non-empty ids, got \['a', 'a'\]"):
        dv.explain(good_model, X, ids=["a", "a"])


def test_vae_bad_config():
    with pytest.raises(ValueError, match=r"channels: expected 1 or 3, got 2"):
        VAE(2, 8, 8)
    with pytest.raises(ValueError, match=r"height: expected an image size of at least 8 pixels, got 4"):
        VAE(1, 4, 8)
    with pytest.raises(ValueError, match=r"resolution: expected None or a side between 8 and 64 "
                                         r"pixels, got 128"):
        VAE(3, 224, 224, resolution=128)
    with pytest.raises(ValueError, match=r"data: expected images of shape \(N, 1, 8, 8\), got \(4, 1, 9, 9\)"):
        VAE(1, 8, 8).fit(torch.rand(4, 1, 9, 9), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"latent_dim: expected an int >= 1, got 0"):
        VAE(1, 8, 8, latent_dim=0)
    with pytest.raises(ValueError, match=r"width: expected an image size of at least 8 pixels, got 8.5"):
        VAE(1, 8, 8.5)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"epochs": 0}, r"epochs: expected an int >= 1, got 0"),
        ({"epochs": 2.5}, r"epochs: expected an int >= 1, got 2.5"),
        ({"batch_size": 0}, r"batch_size: expected an int >= 1, got 0"),
        ({"batch_size": True}, r"batch_size: expected an int >= 1, got True"),
        ({"lr": 0.0}, r"lr: expected a finite number > 0, got 0.0"),
        ({"lr": float("nan")}, r"lr: expected a finite number > 0, got nan"),
        ({"beta": -1.0}, r"beta: expected a finite number > 0, got -1.0"),
        ({"beta": "1"}, r"beta: expected a finite number > 0, got '1'"),
        ({"seed": -3}, r"seed: expected an int >= 0, got -3"),
    ],
)
def test_vae_fit_bad_arguments(kwargs, pattern):
    vae = VAE(1, 8, 8)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    with pytest.raises(ValueError, match=pattern):
        vae.fit(torch.rand(4, 1, 8, 8), progress=False, **{"epochs": 1, **kwargs})
    # Refused before any work: no statistics set, no weight trained, not marked fitted.
    after = vae.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---- bad input a new user really sends ------------------------------------------------------------


def test_model_ending_in_softmax_is_refused():
    """Probabilities distilled as logits give a near-flat teacher: refuse, and say what to do."""
    def softmax_model(x):
        return torch.softmax(good_model(x) * 5, dim=1)

    with pytest.raises(ValueError, match=r"model output: expected logits, got probabilities .*"
                                         r"remove the model's final softmax, or pass outputs='probs'"):
        DeepVID(GEN, n_neighbours=16).explain(softmax_model, X)


def test_outputs_probs_takes_the_log():
    """softmax(log p) = p: a softmax model declared with outputs='probs' is explained exactly
    like the same model without its softmax."""
    def logits_model(x):
        return good_model(x) * 5

    def softmax_model(x):
        return torch.softmax(logits_model(x), dim=1)

    (a,) = DeepVID(GEN, n_neighbours=32).explain(logits_model, X[:1])
    (b,) = DeepVID(GEN, n_neighbours=32, outputs="probs").explain(softmax_model, X[:1])
    assert b.settings["outputs"] == "probs"
    assert a.teacher_probs.max() > 0.2  # not a flat teacher, so the comparison can fail
    np.testing.assert_allclose(b.teacher_probs, a.teacher_probs, atol=1e-3)
    np.testing.assert_allclose(b.weights.astype(np.float32), a.weights.astype(np.float32),
                               atol=2e-2 * float(np.abs(a.weights).max()))
    assert b.fidelity["deletion_auc"] == pytest.approx(a.fidelity["deletion_auc"], abs=1e-3)


def test_outputs_probs_refuses_logits():
    with pytest.raises(ValueError, match=r"model output: outputs='probs' expects probabilities"):
        DeepVID(GEN, n_neighbours=16, outputs="probs").explain(good_model, X)


def test_non_integer_labels_are_rejected():
    with pytest.raises(ValueError, match=r"labels: expected integer class indices, got \[1.7, 2.2\]"):
        DeepVID(GEN, n_neighbours=16).explain(good_model, X, labels=[1.7, 2.2])
    # integral floats (e.g. a float tensor of labels) are fine, and kept as ints
    records = DeepVID(GEN, n_neighbours=16).explain(good_model, X, labels=torch.tensor([1.0, 2.0]))
    assert [r.label for r in records] == [1, 2]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_pixels_name_the_input(bad):
    x = torch.rand(2, 1, 16, 16)
    x[0] = bad
    with pytest.raises(ValueError, match=r"x: instance 0 has 256 non-finite pixels"):
        DeepVID(PixelGenerator((1, 16, 16)), n_neighbours=16).explain(good_model, x)
    y = torch.rand(3, 1, 8, 8)
    y[2, 0, 1, :3] = bad
    with pytest.raises(ValueError, match=r"x: instance 2 has 3 non-finite pixels"):
        DeepVID(GEN, n_neighbours=16).explain(good_model, y)
