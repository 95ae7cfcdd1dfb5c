"""Grad-CAM on the models people train today: the default layer, token layers, non-tensor
outputs and multi-label heads. Random init, nothing downloaded."""

import numpy as np
import pytest
import torch

from deepvid_plugin.core import faithfulness
from deepvid_plugin.explain import GradCAM
from tests.models import zoo


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.mark.parametrize("build, size, layer", [
    (zoo.resnet18, 224, "layer4.1.conv2"),
    (zoo.mobilenet, 64, "features.12.0"),
    (zoo.convnext_atto, 64, "stages.3.blocks.1.mlp.fc2"),
    (zoo.vit_tiny, 224, "blocks.11.norm1"),  # never the patch embedding
    (zoo.swin_small_config, 224, "layers.3.blocks.0.norm1"),  # (N, h, w, C) stages
])
def test_default_layer_and_maps_per_family(build, size, layer):
    model = build()
    x = zoo.images(2, size)
    r = GradCAM(evidence_steps=3).explain(model, x, labels=[1, 2])
    assert r.layer == layer
    assert r.cam_pred.shape == r.cam_true.shape == (2, size, size)
    assert np.isfinite(r.cam_pred).all() and (r.cam_pred >= 0).all() and r.cam_pred.max() > 0
    np.testing.assert_array_equal(r.pred, model(x).argmax(1).numpy())
    assert all(e["evidence_steps"] == 3 for e in r.evidence)


def test_vit_map_matches_pytorch_grad_cam_token_reshape():
    from pytorch_grad_cam import GradCAM as ReferenceGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = zoo.vit_tiny()
    x = zoo.images(2, 224, seed=3)
    r = GradCAM(evidence_steps=None).explain(model, x)
    assert r.layer == "blocks.11.norm1"

    def reshape_transform(t, h=14, w=14):  # pytorch-grad-cam's ViT example
        return t[:, 1:, :].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)

    with ReferenceGradCAM(model=model, target_layers=[model.blocks[-1].norm1],
                          reshape_transform=reshape_transform) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in r.pred])
    for i in range(2):
        assert ref[i].max() > 0 and r.cam_pred[i].max() > 0  # a non-degenerate comparison
        assert _corr(r.cam_pred[i], ref[i]) >= 0.9


def test_a_named_token_layer_and_a_custom_reshape_agree():
    model = zoo.vit_tiny()
    x = zoo.images(1, 224)
    auto = GradCAM("blocks.5.norm1", evidence_steps=None).explain(model, x)
    custom = GradCAM("blocks.5.norm1", evidence_steps=None, reshape=lambda t: t[:, 1:].reshape(
        t.shape[0], 14, 14, t.shape[2]).permute(0, 3, 1, 2)).explain(model, x)
    np.testing.assert_allclose(auto.cam_pred, custom.cam_pred, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"reshape: expected a callable returning \(N, C, h, w\)"):
        GradCAM("blocks.5.norm1", reshape=lambda t: t).explain(model, x)


@pytest.mark.parametrize("build", [zoo.dict_output, zoo.tuple_output])
def test_dict_and_tuple_outputs_give_the_plain_models_maps(build):
    wrapped, plain = build(), zoo.small_cnn()
    plain.load_state_dict(wrapped.net.state_dict())
    x = zoo.images(3, 16)
    a = GradCAM("net.features.3", evidence_steps=3).explain(wrapped, x, labels=[0, 1, 2])
    b = GradCAM("features.3", evidence_steps=3).explain(plain, x, labels=[0, 1, 2])
    np.testing.assert_array_equal(a.pred, b.pred)
    np.testing.assert_allclose(a.cam_pred, b.cam_pred, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.cam_true, b.cam_true, rtol=1e-5, atol=1e-7)
    assert [e["deletion_auc"] for e in a.evidence] == pytest.approx(
        [e["deletion_auc"] for e in b.evidence])


def test_an_unrecognised_output_needs_output_transform():
    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = zoo.small_cnn()

        def forward(self, x):
            return {"scores": self.net(x)}

    model, x = Named().eval(), zoo.images(2, 16)
    with pytest.raises(TypeError, match=r"model output: .*dict with keys \['scores'\].*"
                                        r"output_transform="):
        GradCAM(evidence_steps=None).explain(model, x)
    r = GradCAM(evidence_steps=3, output_transform=lambda out: out["scores"]).explain(model, x)
    ref = GradCAM(evidence_steps=3).explain(model.net, x)
    np.testing.assert_allclose(r.cam_pred, ref.cam_pred, rtol=1e-5, atol=1e-7)


def test_huggingface_model_output_is_recognised():
    model = zoo.hf_vit()
    r = GradCAM(evidence_steps=3).explain(model, zoo.images(2, 32))
    assert r.layer.endswith("layernorm_before")  # the last block's first norm
    torch.testing.assert_close(torch.as_tensor(r.probs),
                               torch.softmax(model(zoo.images(2, 32)).logits, 1))
    assert r.cam_pred.max() > 0


def test_multi_label_maps_probabilities_and_evidence_use_each_class():
    model = zoo.multi_label()
    x = zoo.images(3, 16, seed=1)
    labels = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]])
    engine = GradCAM("features.3", outputs="sigmoid", evidence_steps=4)
    r = engine.explain(model, x, labels=labels, ids=["a", "b", "c"])
    logits = model(x).detach()
    np.testing.assert_allclose(r.probs, torch.sigmoid(logits).numpy(), rtol=1e-5)
    assert r.labels is None and r.cam_true is None
    assert r.label_sets == ((0, 2), (3,), (0, 1))
    predicted = [set(np.flatnonzero(p > 0.5)) for p in r.probs]
    assert all(len(p) >= 2 for p in predicted)  # the bias makes several classes likely
    for i in range(3):
        # every predicted and every true class is explained: the top one as cam_pred, the
        # others in classes/cams
        explained = {int(r.pred[i]), *r.classes[i]}
        assert explained == predicted[i] | set(r.label_sets[i])
        for j, c in enumerate(r.classes[i]):  # each map is that class's own Grad-CAM
            alone = GradCAM("features.3", targets=[c], outputs="sigmoid",
                            evidence_steps=None).explain(model, x[i:i + 1])
            want = alone.cams[0][0] if c != int(alone.pred[0]) else alone.cam_pred[0]
            np.testing.assert_allclose(r.cams[i][j], want, rtol=1e-4, atol=1e-6)
    # the evidence scores the predicted class's sigmoid, not a softmax
    ev = faithfulness.evidence(model, x, torch.as_tensor(r.cam_pred), torch.as_tensor(r.pred),
                               ["a", "b", "c"], steps=4, outputs="sigmoid")
    assert [e["deletion_curve"][0] for e in r.evidence] == pytest.approx(
        [float(torch.sigmoid(logits[i, int(r.pred[i])])) for i in range(3)], rel=1e-5)
    assert [e["deletion_auc"] for e in r.evidence] == pytest.approx(
        [e["deletion_auc"] for e in ev])


def test_targets_pick_the_explained_classes():
    model, x = zoo.small_cnn(), zoo.images(2, 16)
    r = GradCAM("features.3", targets=[0, 3], evidence_steps=None).explain(model, x)
    for i in range(2):
        assert set(r.classes[i]) == {0, 3} - {int(r.pred[i])}
    only = GradCAM("features.3", targets="predicted", evidence_steps=None).explain(
        model, x, labels=[1, 1])
    assert only.classes is None and only.cam_true is not None  # the label keeps its map
    with pytest.raises(ValueError, match=r"targets: expected class indices in \[0, 5\)"):
        GradCAM("features.3", targets=9).explain(model, x)
