"""The attribution kind: any fn(model, x, targets) -> maps gets Grad-CAM's records, evidence and
trust rule; the user's model is left as found even when fn calls backward() or leaves hooks."""

import numpy as np
import pytest
import torch

from deepvid_plugin.core import faithfulness, kinds
from deepvid_plugin.explain import Attribution, AttributionExplainer
from deepvid_plugin.methods.attribution.explainer import records
from tests.models import zoo


def input_x_gradient(model, x, targets):
    x = x.clone().requires_grad_(True)
    score = model(x).gather(1, targets[:, None]).sum()
    return torch.autograd.grad(score, x)[0] * x


def test_maps_are_the_functions_own_for_each_class():
    model, x = zoo.small_cnn(), zoo.images(3, 16)
    r = Attribution(input_x_gradient, evidence_steps=4).explain(model, x, labels=[0, 1, 2],
                                                               ids=["a", "b", "c"])
    assert r.method == "input_x_gradient"
    pred = model(x).argmax(1)
    np.testing.assert_array_equal(r.pred, pred.numpy())
    np.testing.assert_allclose(r.map_pred, input_x_gradient(model, x, pred).sum(1).detach(),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r.map_true, input_x_gradient(
        model, x, torch.tensor([0, 1, 2])).sum(1).detach(), rtol=1e-5, atol=1e-7)
    want = faithfulness.evidence(model, x, torch.as_tensor(r.map_pred), pred, ["a", "b", "c"],
                                 steps=4)
    assert [e["deletion_auc"] for e in r.evidence] == pytest.approx(
        [e["deletion_auc"] for e in want])


def test_captum_and_pytorch_grad_cam_plug_in():
    from captum.attr import IntegratedGradients
    from pytorch_grad_cam import GradCAM as ReferenceGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = zoo.resnet18(), zoo.images(2, 64)

    def integrated_gradients(m, xb, targets):
        return IntegratedGradients(m).attribute(xb, target=targets, n_steps=4)

    def gradcam(m, xb, targets):
        with ReferenceGradCAM(model=m, target_layers=[m.layer4[-1]]) as cam:
            return cam(input_tensor=xb, targets=[ClassifierOutputTarget(int(t)) for t in targets])

    ig = Attribution(integrated_gradients, evidence_steps=3).explain(model, x)
    assert ig.map_pred.shape == (2, 64, 64) and np.abs(ig.map_pred).max() > 0
    gc = Attribution(gradcam, evidence_steps=None).explain(model, x)
    with ReferenceGradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in gc.pred])
    np.testing.assert_allclose(gc.map_pred, ref, rtol=1e-4, atol=1e-6)


def test_gradients_hooks_modes_and_rng_are_left_as_found():
    model = zoo.small_cnn().train()
    model.fc.weight.grad = torch.full_like(model.fc.weight, 0.5)  # the user's own gradient

    def messy(m, x, targets):  # calls backward() and leaves a hook behind
        m.features[0].register_forward_hook(lambda *a: None)
        m(x).gather(1, targets[:, None]).sum().backward()
        return x.abs()

    state = torch.random.get_rng_state()
    Attribution(messy, evidence_steps=3).explain(model, zoo.images(2, 16), labels=[0, 1])
    assert torch.equal(model.fc.weight.grad, torch.full_like(model.fc.weight, 0.5))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "fc.weight")
    assert all(not m._forward_hooks for m in model.modules())
    assert all(m.training for m in model.modules())
    assert torch.equal(torch.random.get_rng_state(), state)


def test_outputs_of_any_kind_and_multi_label():
    r = Attribution(input_x_gradient, evidence_steps=None).explain(zoo.dict_output(),
                                                                  zoo.images(2, 16))
    ref = Attribution(input_x_gradient, evidence_steps=None).explain(zoo.dict_output().net,
                                                                    zoo.images(2, 16))
    np.testing.assert_allclose(r.map_pred, ref.map_pred, rtol=1e-5, atol=1e-7)
    model = zoo.multi_label()
    labels = torch.tensor([[0, 0, 1, 0], [0, 0, 0, 1]])
    m = Attribution(input_x_gradient, outputs="sigmoid", evidence_steps=3).explain(
        model, zoo.images(2, 16), labels=labels)
    np.testing.assert_allclose(m.probs, torch.sigmoid(model(zoo.images(2, 16))).detach(),
                               rtol=1e-5)
    assert 2 in m.classes[0] and 3 in m.classes[1]  # the true classes have maps
    assert m.label_sets == ((2,), (3,))


@pytest.mark.parametrize("fn, match", [
    (lambda m, x, t: "map", r"fn: expected maps \(a tensor or numpy array"),
    (lambda m, x, t: torch.ones(1, 16, 16), r"fn: expected maps of shape \(2, H, W\)"),
    (lambda m, x, t: torch.full((2, 16, 16), float("nan")), r"fn: expected finite maps"),
])
def test_bad_maps_name_fn(fn, match):
    with pytest.raises((TypeError, ValueError), match=match):
        Attribution(fn, evidence_steps=None).explain(zoo.small_cnn(), zoo.images(2, 16))


def test_low_resolution_maps_are_upsampled_and_absolute_is_honoured():
    fn = lambda m, x, t: -torch.ones(len(x), 3, 4, 4)  # noqa: E731
    r = Attribution(fn, evidence_steps=None).explain(zoo.small_cnn(), zoo.images(1, 16))
    np.testing.assert_allclose(r.map_pred, -3.0)
    r = Attribution(fn, absolute=True, evidence_steps=None).explain(zoo.small_cnn(),
                                                                    zoo.images(1, 16))
    np.testing.assert_allclose(r.map_pred, 3.0)


def test_records_summaries_and_class_maps():
    from deepvid_plugin.api.compare import class_map

    model, x = zoo.small_cnn(), zoo.images(2, 16)
    result = Attribution(input_x_gradient, targets=[0, 4], evidence_steps=3).explain(
        model, x, labels=[1, 2], ids=["p", "q"])
    recs = records(result, 3, [f"c{i}" for i in range(5)], images=x,
                   settings={"method": "attribution"})
    assert [(r.kind, r.subject, r.step) for r in recs] == [("attribution", "p", 3),
                                                          ("attribution", "q", 3)]
    summary = kinds.summarize(recs[0])
    assert summary["headline"] == result.evidence[0]["deletion_auc"]
    assert summary["trustworthy"] == result.evidence[0]["better_than_random"]
    for i, rec in enumerate(recs):
        np.testing.assert_allclose(class_map(rec, int(result.pred[i])), result.map_pred[i])
        np.testing.assert_allclose(class_map(rec, [1, 2][i]), result.map_true[i])
        for j, c in enumerate(result.classes[i]):
            np.testing.assert_allclose(class_map(rec, c), result.maps[i][j])
    with pytest.raises(TypeError, match="engine: expected a deepvid_plugin.explain.Attribution"):
        AttributionExplainer(input_x_gradient)
