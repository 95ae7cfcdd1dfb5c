"""Grad-CAM: correct maps, captum agreement, and the user's model left exactly as found."""

import numpy as np
import pytest
import torch
from torch import nn

from deepvid_plugin.core import faithfulness
from deepvid_plugin.methods.gradcam.engine import GradCAM, GradCAMResult


class RegionFeatures(nn.Module):
    """Two feature channels: channel 0 sees only region R of the image, channel 1 only the rest."""

    def __init__(self, region: torch.Tensor):
        super().__init__()
        self.register_buffer("masks", torch.stack([region, 1 - region])[None])

    def forward(self, x):
        return x.expand(-1, 2, -1, -1) * self.masks


class RegionModel(nn.Module):
    """Class 0's score rises with channel 0 (region R) and falls with channel 1; class 1 the
    opposite. So class 0's evidence lies only in R, class 1's only outside it."""

    def __init__(self, region):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.conv.weight)
        self.regions = RegionFeatures(region)
        self.head = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, -0.5], [-0.5, 1.0]]))

    def forward(self, x):
        f = self.regions(self.conv(x))
        return self.head(f.mean((2, 3)))


class SmallCNN(nn.Module):
    def __init__(self, n_classes=5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(12 * 25, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


def _trained_small_cnn():
    torch.manual_seed(0)
    model = SmallCNN()
    # Non-trivial BatchNorm statistics, so eval mode visibly differs from train mode.
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(torch.rand(16, 3, 10, 10) * 2)
    return model


def _all_hooks(model):
    return [h for m in model.modules()
            for h in (*m._forward_hooks.values(), *m._backward_hooks.values(),
                      *m._forward_pre_hooks.values())]


def test_cam_mass_lies_in_the_region_the_class_uses():
    region = torch.zeros(8, 8)
    region[1:4, 2:6] = 1.0  # 12 of 64 pixels
    model = RegionModel(region)
    g = torch.Generator().manual_seed(0)
    x = 0.2 + torch.rand(6, 1, 8, 8, generator=g)
    x[:3] *= 10 * region + 0.2 * (1 - region)  # bright region R: predicted class 0
    x[3:] *= 0.2 * region + (1 - region)  # bright outside R: predicted class 1
    labels = torch.tensor([1, 1, 1, 0, 0, 0])  # the true class is the other one
    r = GradCAM("regions", evidence_steps=None).explain(model, x, labels)
    assert r.pred.tolist() == [0, 0, 0, 1, 1, 1]
    in_r = region.bool().numpy()
    # Share of |CAM| inside R (absolute values, so negative evidence cannot cancel out).
    mass_pred = np.abs(r.cam_pred)[:, in_r].sum(1) / np.abs(r.cam_pred).sum((1, 2))
    mass_true = np.abs(r.cam_true)[:, in_r].sum(1) / np.abs(r.cam_true).sum((1, 2))
    np.testing.assert_array_less(0.99, mass_pred[:3])  # class 0 looks inside R
    np.testing.assert_array_less(mass_pred[3:], 0.01)  # class 1 looks outside R
    np.testing.assert_array_less(mass_true[:3], 0.01)
    np.testing.assert_array_less(0.99, mass_true[3:])


def test_matches_captum_layer_gradcam():
    from captum.attr import LayerAttribution, LayerGradCam

    model = _trained_small_cnn()
    x = torch.rand(7, 3, 10, 10)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    r = GradCAM("features.3", batch_size=3, evidence_steps=None).explain(model, x, labels)
    model.eval()
    lgc = LayerGradCam(model, model.features[3])
    pred = torch.as_tensor(r.pred)
    assert torch.equal(pred, model(x).argmax(1))
    for cam, target in ((r.cam_pred, pred), (r.cam_true, labels)):
        ref = LayerAttribution.interpolate(
            lgc.attribute(x, target=target, relu_attributions=True), (10, 10), "bilinear")
        ref = ref[:, 0].detach().numpy()
        assert ref.max() > 0  # a non-degenerate comparison
        np.testing.assert_allclose(cam, ref, rtol=1e-4, atol=1e-6 * ref.max())


def test_result_shapes_probabilities_and_evidence():
    model = _trained_small_cnn()
    x = torch.rand(4, 3, 10, 10)
    r = GradCAM(evidence_steps=5).explain(model, x, ids=["a", "b", "c", "d"])
    assert isinstance(r, GradCAMResult)
    assert r.layer == "features.3"  # the last convolution
    assert r.cam_pred.shape == (4, 10, 10) and r.cam_pred.dtype == np.float32
    assert r.cam_true is None and r.labels is None
    assert r.probs.shape == (4, 5)
    np.testing.assert_allclose(r.probs.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(r.pred, r.probs.argmax(1))
    assert r.evidence is not None and len(r.evidence) == 4
    expected = faithfulness.evidence(model, x, torch.as_tensor(r.cam_pred),
                                     torch.as_tensor(r.pred), ["a", "b", "c", "d"], steps=5)
    for got, want in zip(r.evidence, expected, strict=True):
        assert got["evidence_steps"] == 5
        assert got["deletion_auc"] == pytest.approx(want["deletion_auc"])
        assert got["random_insertion_auc"] == pytest.approx(want["random_insertion_auc"])


def test_default_layer_is_the_last_convolution_that_runs():
    class Shuffled(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Conv2d(4, 4, 3, padding=1)  # registered first, runs last
            self.early = nn.Conv2d(1, 4, 3, padding=1)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            return self.head(self.late(torch.relu(self.early(x))).mean((2, 3)))

    torch.manual_seed(1)
    gc = GradCAM(evidence_steps=None)
    assert gc.explain(Shuffled(), torch.rand(2, 1, 6, 6)).layer == "late"
    # The found layer is remembered per model, not reused for another model.
    assert gc.explain(_trained_small_cnn(), torch.rand(2, 3, 10, 10)).layer == "features.3"


def test_no_hook_left_after_call_and_after_exception():
    model = _trained_small_cnn()
    x = torch.rand(3, 3, 10, 10)
    assert _all_hooks(model) == []
    GradCAM(evidence_steps=3).explain(model, x, [0, 1, 2])
    assert _all_hooks(model) == []

    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom inside the model")

    model.head.insert(0, Boom())  # runs after the hooked layer
    for layer in (None, "features.3"):
        with pytest.raises(RuntimeError, match="boom inside the model"):
            GradCAM(layer).explain(model, x)
        assert _all_hooks(model) == []


def test_model_state_grads_and_rng_untouched():
    model = _trained_small_cnn()
    model.train()
    model.features[1].eval()  # a mixed state must come back exactly
    flags = [m.training for m in model.modules()]
    stats = [b.clone() for b in model.buffers()]
    model.head[2].weight.grad = torch.full_like(model.head[2].weight, 0.5)  # a user's own grad
    x = torch.rand(3, 3, 10, 10)
    state = torch.random.get_rng_state()
    GradCAM(evidence_steps=3).explain(model, x, [0, 1, 2])
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), stats, strict=True))
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert torch.equal(grads.pop("head.2.weight"), torch.full_like(model.head[2].weight, 0.5))
    assert grads and all(g is None for g in grads.values())
    assert torch.is_grad_enabled()
    assert torch.equal(torch.random.get_rng_state(), state)


def test_frozen_parameters_and_inplace_ops_after_the_layer():
    class Block(nn.Module):
        def __init__(self, inplace):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)
            self.head = nn.Linear(3, 4)
            self.inplace = inplace

        def forward(self, x):
            out = self.conv(x)
            if self.inplace:
                out += 1.0  # as in a ResNet block's `out += identity`
                out.relu_()
            else:
                out = torch.relu(out + 1.0)
            return self.head(out.mean((2, 3)))

    torch.manual_seed(2)
    a, b = Block(inplace=True), Block(inplace=False)
    b.load_state_dict(a.state_dict())
    a.requires_grad_(False)  # a frozen model: no parameter needs a gradient
    x = torch.rand(3, 2, 5, 5)
    ra = GradCAM("conv", evidence_steps=None).explain(a, x, [0, 1, 2])
    rb = GradCAM("conv", evidence_steps=None).explain(b, x, [0, 1, 2])
    assert ra.cam_pred.max() > 0
    np.testing.assert_allclose(ra.cam_pred, rb.cam_pred, rtol=1e-5)
    np.testing.assert_allclose(ra.cam_true, rb.cam_true, rtol=1e-5)


def test_bad_layer_name_lists_close_matches():
    model = _trained_small_cnn()
    with pytest.raises(ValueError, match=r"layer: .*'feature\.3'.*close matches: \['features\.3'"):
        GradCAM("feature.3").explain(model, torch.rand(1, 3, 10, 10))


def test_layer_must_output_feature_maps_and_belong_to_the_model():
    model = _trained_small_cnn()
    with pytest.raises(ValueError, match=r"layer: expected 'head\.2' to output \(N, C, h, w\)"):
        GradCAM("head.2").explain(model, torch.rand(1, 3, 10, 10))
    with pytest.raises(ValueError, match="layer: expected a submodule of the model"):
        GradCAM(nn.Conv2d(3, 3, 1)).explain(model, torch.rand(1, 3, 10, 10))
    assert _all_hooks(model) == []


def test_model_without_convolution_is_a_clear_error():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="layer: the model has no nn.Conv2d"):
        GradCAM().explain(mlp, torch.rand(2, 1, 4, 4))


@pytest.mark.parametrize("call, match", [
    (lambda m: GradCAM().explain(m, torch.rand(3, 10, 10)), "x:"),
    (lambda m: GradCAM().explain(m, torch.full((1, 3, 10, 10), float("nan"))),
     "x: instance 0 has 300 non-finite"),
    (lambda m: GradCAM().explain(m, torch.rand(2, 3, 10, 10), labels=[1.7, 2.0]), "labels:"),
    (lambda m: GradCAM().explain(m, torch.rand(2, 3, 10, 10), labels=[1]), "labels:"),
    (lambda m: GradCAM().explain(m, torch.rand(2, 3, 10, 10), labels=[1, 5]),
     r"labels: expected class indices in \[0, 5\)"),
    (lambda m: GradCAM().explain(m, torch.rand(2, 3, 10, 10), ids=["a", "a"]), "ids:"),
    (lambda m: GradCAM(batch_size=0), "batch_size:"),
    (lambda m: GradCAM(evidence_steps=1), "evidence_steps:"),
])
def test_bad_input_names_the_argument(call, match):
    model = _trained_small_cnn()
    with pytest.raises(ValueError, match=match):
        call(model)
    assert _all_hooks(model) == []
