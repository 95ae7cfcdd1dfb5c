"""Network Dissection, Summit, Exp-KD's CAMs and DeepVID on the models people train today:
where each method applies it works, elsewhere it refuses naming the layer or the argument."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepvid_plugin.explain import (
    CAMDistillLoss,
    ConceptSet,
    DeepVID,
    NetDissect,
    PixelGenerator,
    Summit,
)
from tests.models import zoo


@pytest.fixture(scope="module")
def probes():
    return ConceptSet.synthetic(n=12, size=32, seed=0)


def _to(size):
    return lambda x: F.interpolate((x - zoo.MEAN) / zoo.STD, size=(size, size), mode="bilinear",
                                   align_corners=False)


# ---- Network Dissection ----------------------------------------------------------------------
@pytest.mark.parametrize("build, size, layer, units, grid", [
    (zoo.resnet18, 64, "layer3", 256, (4, 4)),
    (zoo.mobilenet, 64, "features.8", 48, (4, 4)),
    (zoo.convnext_atto, 64, "stages.2", 160, (4, 4)),
    (zoo.vit_tiny, 224, "blocks.11.norm1", 192, (14, 14)),  # tokens: the class token dropped
    (zoo.swin_small_config, 224, "layers.2", 96, (14, 14)),  # (N, h, w, C)
    (zoo.dict_output, 32, "net.features.3", 16, (32, 32)),
])
def test_netdissect_per_family(probes, build, size, layer, units, grid):
    [r] = NetDissect(probes, [layer], transform=_to(size), batch_size=6).dissect(build())
    assert r.shape == (units, *grid)
    assert len(r.units) == units and np.isfinite(r.iou).all()
    assert np.isfinite(r.thresholds).all()
    assert 0 < r.mask_fraction.mean() < 0.05  # each unit's mask: its top activations, upsampled


def test_netdissect_token_layer_matches_a_manual_reshape(probes):
    model = zoo.vit_tiny()
    manual = lambda t: t[:, 1:].reshape(t.shape[0], 14, 14, t.shape[2]).permute(0, 3, 1, 2)  # noqa: E731
    [a] = NetDissect(probes, ["blocks.6.norm1"], transform=_to(224)).dissect(model)
    [b] = NetDissect(probes, ["blocks.6.norm1"], transform=_to(224), reshape=manual).dissect(model)
    np.testing.assert_array_equal(a.iou, b.iou)
    np.testing.assert_array_equal(a.thresholds, b.thresholds)


# ---- Summit ------------------------------------------------------------------------------------
def _summit(layers, labels=None, n=10, size=32, **kw):
    labels = torch.arange(n) % 5 if labels is None else labels
    return Summit(zoo.images(n, size), labels, layers, per_class=2, **kw)


@pytest.mark.parametrize("build, size, layers, want", [
    (zoo.resnet18, 64, ["layer4.0", "layer4.1"], ("layer4.0", "layer4.1.conv1", "layer4.1")),
    (zoo.convnext_atto, 64, ["stages.3.blocks.0", "stages.3.blocks.1"],
     ("stages.3.blocks.0", "stages.3.blocks.1.conv_dw", "stages.3.blocks.1.mlp.fc1",
      "stages.3.blocks.1")),
    (zoo.dict_output, 32, ["net.features.0", "net.features.3"],
     ("net.features.0", "net.features.3")),
    (zoo.tuple_output, 32, ["net.features.0", "net.features.3"],
     ("net.features.0", "net.features.3")),
])
def test_summit_per_family(build, size, layers, want):
    result = _summit(layers, size=size).aggregate(build())
    assert result.layers == want
    assert result.group_sizes.tolist() == [2] * 5
    graph = result.graph(0)
    assert graph["nodes"] and {n["layer"] for n in graph["nodes"]} <= {*want, result.head}


def test_summit_convnext_linear_and_conv_mlps_count_the_same():
    # timm's ConvNeXt runs its MLP as 1x1 convs (conv_mlp=True) or as Linear layers on (N, h, w, C)
    conv, lin = zoo.convnext_atto(conv_mlp=True), zoo.convnext_atto(conv_mlp=False)
    state = {k: (v.reshape(v.shape[0], -1) if "mlp.fc" in k and k.endswith("weight") else v)
             for k, v in conv.state_dict().items()}
    lin.load_state_dict(state)
    x = zoo.images(1, 64)
    torch.testing.assert_close(lin(x), conv(x), rtol=1e-4, atol=1e-5)
    layers = ["stages.3.blocks.0", "stages.3.blocks.1"]
    a = _summit(layers, size=64).aggregate(conv)
    b = _summit(layers, size=64).aggregate(lin)
    for ia, ib in zip(a.influence, b.influence, strict=True):
        np.testing.assert_array_equal(ia.counts, ib.counts)
    for name in a.layers:
        np.testing.assert_array_equal(a.activation[name], b.activation[name])


@pytest.mark.parametrize("build, size, layers, match", [
    (zoo.vit_tiny, 224, ["blocks.10", "blocks.11"], r"'blocks.10' is a Block"),
    (zoo.mobilenet, 64, ["features.10", "features.11"], r"'features.10' is a InvertedResidual"),
])
def test_summit_refuses_what_has_no_kernel_naming_the_module(build, size, layers, match):
    with pytest.raises(ValueError, match=r"layers: expected names of nn.Conv2d modules.*" + match):
        _summit(layers, size=size).aggregate(build())


def test_summit_multi_label_counts_an_image_for_each_of_its_classes():
    labels = torch.tensor([[1, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1],
                           [1, 1, 1, 1]])
    model = zoo.multi_label()
    s = Summit(zoo.images(6, 16), labels, ["features.0", "features.3"], per_class=6,
               outputs="sigmoid")
    r = s.aggregate(model)
    assert r.group_sizes.tolist() == labels.sum(0).tolist()  # images per class, counted apart
    assert s.class_indices(2).tolist() == [0, 3, 5]
    predicted = Summit(zoo.images(6, 16), labels, ["features.0", "features.3"], per_class=6,
                       outputs="sigmoid", group_by="prediction").aggregate(model)
    probs = torch.sigmoid(model(zoo.images(6, 16)))
    assert predicted.group_sizes.tolist() == (probs > 0.5).sum(0).tolist()


# ---- Exp-KD's CAMs (CAMDistillLoss) -----------------------------------------------------------
def test_cam_distill_on_a_resnet_teacher_and_a_small_student():
    teacher, student = zoo.resnet18(), zoo.small_cnn()
    kd = CAMDistillLoss(teacher, student, "layer4", "features.5")
    logits, loss = kd(zoo.images(2, 64))
    loss.backward()
    assert logits.shape == (2, 5) and student.features[0].weight.grad.abs().sum() > 0
    assert kd.teacher_head_kind == kd.student_head_kind == "gap"


def test_cam_distill_on_token_layers_with_an_average_pooled_head():
    teacher = zoo.vit_tiny(global_pool="avg", fc_norm=False)  # the head averages the patches
    kd = CAMDistillLoss(teacher, zoo.small_cnn(), "norm", "features.5")
    maps = kd.maps(zoo.images(1, 224))
    assert maps.teacher.shape == (1, 5, 14, 14)
    # the CAM identity: the spatial mean of a class's map is its logit minus the bias
    torch.testing.assert_close(maps.teacher.mean((2, 3)) + teacher.head.bias,
                               maps.teacher_logits, rtol=1e-4, atol=1e-4)


def test_cam_distill_folds_the_layernorm_of_a_convnext_head():
    teacher = zoo.convnext_atto()  # pool -> LayerNorm2d -> Linear
    with torch.no_grad():  # a non-trivial affine norm, so the fold is really tested
        teacher.head.norm.weight.uniform_(0.5, 1.5)
        teacher.head.norm.bias.uniform_(-0.5, 0.5)
    kd = CAMDistillLoss(teacher, zoo.convnext_atto(), "stages.3", "stages.3", kd_weight=1.0)
    x = zoo.images(2, 64)
    maps = kd.maps(x)
    assert kd.teacher_head_kind == "gap_norm"
    # the CAM identity with the norm folded in: mean = logit - bias - W @ beta
    offset = teacher.head.fc.bias + teacher.head.fc.weight @ teacher.head.norm.bias
    torch.testing.assert_close(maps.teacher.mean((2, 3)) + offset, maps.teacher_logits,
                               rtol=1e-4, atol=1e-4)
    out = kd(x)
    out.loss.backward()
    assert kd.student.stages[3].blocks[1].conv_dw.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("build, size, layer, match", [
    (zoo.vit_tiny, 224, "blocks.11", r"teacher_head: .*'head'.*between them run .*'norm' "
                                     r"\(LayerNorm\)"),  # a class-token head
    (zoo.mobilenet, 64, "features", r"teacher_head: .*'classifier.3'"),  # an MLP head
])
def test_cam_distill_refuses_heads_it_cannot_read_and_says_why(build, size, layer, match):
    kd = CAMDistillLoss(build(), zoo.small_cnn(), layer, "features.5")
    with pytest.raises(ValueError, match=match + r".*Grad-CAM"):
        kd(zoo.images(1, size))


@pytest.mark.parametrize("build", [zoo.dict_output, zoo.tuple_output])
def test_cam_distill_reads_dict_and_tuple_outputs(build):
    teacher, student = build(), zoo.small_cnn()
    kd = CAMDistillLoss(teacher, student, "net.features.5", "features.5")
    plain = CAMDistillLoss(teacher.net, student, "features.5", "features.5")
    x = zoo.images(2, 16)
    torch.testing.assert_close(kd(x).loss, plain(x).loss)


def test_cam_distill_multi_label_compares_independent_classes():
    teacher, student = zoo.multi_label(), zoo.small_cnn(4)
    x = zoo.images(2, 16)
    kd = CAMDistillLoss(teacher, student, "features.5", "features.5", outputs="sigmoid",
                        kd_weight=1.0)
    out = kd(x)
    t, s = out.teacher_logits / 4.0, out.logits.detach() / 4.0
    p, q = torch.sigmoid(t), torch.sigmoid(s)
    bernoulli_kl = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).sum(1).mean() * 16
    torch.testing.assert_close(out.kd_loss.detach(), bernoulli_kl, rtol=1e-4, atol=1e-6)
    out.loss.backward()
    assert student.fc.weight.grad.abs().sum() > 0


# ---- DeepVID ------------------------------------------------------------------------------------
@pytest.mark.parametrize("build", [zoo.dict_output, zoo.tuple_output])
def test_deepvid_reads_dict_and_tuple_outputs(build):
    model = build()
    x = zoo.images(2, 8)
    dv = lambda: DeepVID(PixelGenerator((3, 8, 8)), n_neighbours=32, refine_steps=0)  # noqa: E731
    a = dv().explain(model, x)
    b = dv().explain(model.net, x)
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_allclose(ra.weights, rb.weights, rtol=1e-5, atol=1e-7)


def test_deepvid_refuses_sigmoid_and_sigmoid_looking_outputs():
    with pytest.raises(ValueError, match=r"outputs: DeepVID's student is a softmax over classes"
                                         r".*GradCAM\(outputs='sigmoid'\)"):
        DeepVID(PixelGenerator((3, 8, 8)), outputs="sigmoid")
    ends_in_sigmoid = torch.nn.Sequential(zoo.small_cnn(), torch.nn.Sigmoid())
    with pytest.raises(ValueError, match=r"model output: expected logits, got values all in "
                                         r"\[0, 1\].*a final sigmoid"):
        DeepVID(PixelGenerator((3, 8, 8)), n_neighbours=32).explain(ends_in_sigmoid,
                                                                    zoo.images(2, 8))
