"""The callback on the models people train today, and its early check: a mistake fails in the
constructor, before any VAE is fitted, with "name: expected X, got Y"."""

import numpy as np
import pytest
import torch

from deepvid_plugin.callbacks import DeepVIDCallback
from deepvid_plugin.explain import VAE, Attribution, CAMAgreement, GradCAM, PixelGenerator
from tests.callbacks.helpers import ListSink
from tests.models import zoo


def saliency(model, x, targets):
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)[0]


@pytest.mark.parametrize("build, size, layer", [
    (zoo.resnet18, 224, "layer4.1.conv2"),
    (zoo.mobilenet, 64, "features.12.0"),
    (zoo.convnext_atto, 64, "stages.3.blocks.1.mlp.fc2"),
    (zoo.vit_tiny, 224, "blocks.11.norm1"),
    (zoo.dict_output, 16, "net.features.3"),
    (zoo.tuple_output, 16, "net.features.3"),
    (zoo.hf_vit, 32, None),
])
def test_callback_explains_every_family(build, size, layer):
    model = build().train()
    x = zoo.images(2, size)
    sink = ListSink()
    with DeepVIDCallback(model, x, labels=[0, 1], sinks=[sink], explainers=[
            GradCAM(evidence_steps=3), Attribution(saliency, evidence_steps=3)]) as cb:
        got = cb.on_epoch_end(0)
    assert sorted((r.kind, r.subject) for r in got) == [
        ("attribution", "0"), ("attribution", "1"), ("gradcam", "0"), ("gradcam", "1")]
    assert sink.steps("gradcam") == sink.steps("attribution") == {"0": [0], "1": [0]}
    layers = {r.meta["layer"] for r in got if r.kind == "gradcam"}
    assert layers == {layer} if layer else all(n.endswith("layernorm_before") for n in layers)
    assert all(m.training for m in model.modules())  # training mode left as found


def test_callback_multi_label():
    model = zoo.multi_label()
    labels = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1]])
    sink = ListSink()
    with DeepVIDCallback(model, zoo.images(2, 16), labels=labels, sinks=[sink],
                         class_names=["cat", "dog", "ball", "grass"],
                         explainers=[GradCAM(outputs="sigmoid", evidence_steps=3)]) as cb:
        got = cb.on_epoch_end(0)
    assert [r.meta["labels"] for r in got] == [[0, 2], [3]]
    for r in got:
        explained = {r.meta["pred"], *r.arrays.get("classes", [])}
        assert set(r.meta["labels"]) <= explained
        assert r.meta["outputs"] == "sigmoid" and r.meta["label"] is None
    with pytest.raises(ValueError, match=r"explainers: multi-hot labels .*outputs='sigmoid'; got "
                                         r"gradcam with outputs='logits'"):
        DeepVIDCallback(model, zoo.images(2, 16), labels=labels, sinks=[ListSink()],
                        explainers=[GradCAM()])


def test_output_transform_and_forward_fn_reach_every_explainer():
    class Wrapped(torch.nn.Module):  # no forward of its own: its classifier is .net
        def __init__(self):
            super().__init__()
            self.net = zoo.small_cnn()

    model = Wrapped()
    x = zoo.images(2, 16)
    sink = ListSink()
    teacher = zoo.small_cnn()
    with DeepVIDCallback(model, x, labels=[1, 2], sinks=[sink],
                         forward_fn=lambda m, xb: {"scores": m.net(xb)},
                         output_transform=lambda out: out["scores"],
                         explainers=[GradCAM("net.features.3", evidence_steps=3),
                                     CAMAgreement(teacher, "features.5", "net.features.5",
                                                  evidence_steps=3)]) as cb:
        got = cb.on_epoch_end(0)
    plain = GradCAM("features.3", evidence_steps=3).explain(model.net, x, labels=[1, 2])
    gc = [r for r in got if r.kind == "gradcam"]
    np.testing.assert_allclose(np.stack([r.arrays["cam_pred"] for r in gc]), plain.cam_pred,
                               rtol=1e-5, atol=1e-7)
    assert {r.kind for r in got} == {"gradcam", "cam_agreement"}


# ---- the early check -----------------------------------------------------------------------------
def _never_fitted(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a VAE was fitted before the early check failed")

    monkeypatch.setattr(VAE, "fit", boom)


@pytest.mark.parametrize("kwargs, match", [
    ({"labels": [0, 7]}, r"labels: expected class indices in \[0, 5\), got \[0, 7\]"),
    ({"class_names": ["a", "b", "c"]}, r"class_names: expected 5 names \(the model outputs 5 "
                                       r"classes\), got 3"),
    ({"labels": torch.ones(2, 3)}, r"labels: expected a multi-hot matrix of 5 columns"),
    ({"explainers": [GradCAM("features.9")]}, r"layer: expected a module name .*'features.9'"),
    ({"explainers": [GradCAM("fc")]}, r"layer: expected 'fc' to output \(N, C, h, w\)"),
    ({"generator": PixelGenerator((3, 8, 8))}, r"x: expected images of shape \(K, 3, 8, 8\) to "
                                               r"match the generator, got \(2, 3, 16, 16\)"),
])
def test_mistakes_fail_in_the_constructor_before_any_fitting(tmp_path, monkeypatch, kwargs,
                                                             match):
    _never_fitted(monkeypatch)
    args = {"train_data": zoo.images(8, 16), **kwargs}
    if "generator" in kwargs or "explainers" in kwargs and "train_data" in args:
        args.pop("train_data")
    with pytest.raises(ValueError, match=match):
        DeepVIDCallback(zoo.small_cnn(), zoo.images(2, 16), logdir=tmp_path, **args)
    assert not any(tmp_path.iterdir())  # nothing was written either


def test_an_unreadable_output_fails_in_the_constructor(tmp_path):
    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = zoo.small_cnn()

        def forward(self, x):
            return {"scores": self.net(x)}

    with pytest.raises(TypeError, match=r"model output: .*dict with keys \['scores'\].*"
                                        r"output_transform="):
        DeepVIDCallback(Named(), zoo.images(2, 16), logdir=tmp_path,
                        explainers=[GradCAM()])
    cb = DeepVIDCallback(Named(), zoo.images(2, 16), logdir=tmp_path, explainers=[GradCAM()],
                         output_transform=lambda out: out["scores"])
    cb.close()
