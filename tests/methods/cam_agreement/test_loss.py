"""CAMDistillLoss (Exp-KD): gradients, exactness, per-sample averaging, CAM identity, hooks, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from deepvid_plugin.methods.cam_agreement.loss import (
    CAMDistillLoss,
    DistillOutput,
    _cam_loss_per_sample,
    class_activation_maps,
    hinton_kd_loss,
)

N_CLASSES = 5


class GapNet(nn.Module):
    """conv features -> global average pool -> Linear. ``pool`` halves the map (8x8 -> 4x4)."""

    def __init__(self, width: int = 8, pool: bool = False, bn: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1)]
        layers += [nn.BatchNorm2d(width)] if bn else []
        layers += [nn.ReLU(), nn.MaxPool2d(2)] if pool else [nn.ReLU()]
        layers += [nn.Conv2d(width, 12, 3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(12, N_CLASSES)
        self.fail = False  # set to make forward raise after the feature layer ran

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        if self.fail:
            raise RuntimeError("boom inside the model")
        return self.fc(self.drop(self.pool(f).flatten(1)))


class FlatNet(nn.Module):
    """conv features (4x4 on an 8x8 input) -> flatten -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 7, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(7 * 4 * 4, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


class MLPHeadNet(GapNet):
    """GAP -> Linear -> ReLU -> Linear: the CAM cannot be read from one weight matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, N_CLASSES))


class LogSoftmaxNet(GapNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).log_softmax(dim=1)


def _x(n: int = 6, seed: int = 0, hw: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, hw, hw, generator=torch.Generator().manual_seed(seed))


def _nets(seed: int = 0, **kw) -> GapNet:
    torch.manual_seed(seed)
    return GapNet(**kw)


def _no_hooks(*models: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks
               for model in models for m in model.modules())


def test_student_gets_a_gradient_and_the_teacher_none():
    teacher, student = _nets(0, bn=True), _nets(1)
    teacher.train()  # left in train mode by the user: must run frozen, and stay in train mode
    bn = teacher.features[1]
    stats = bn.running_mean.clone()
    kd = CAMDistillLoss(teacher, student, "features", "features", top_k=3)
    out = kd(_x())
    assert isinstance(out, DistillOutput)
    logits, loss = out
    assert logits.shape == (6, N_CLASSES) and loss.item() > 0
    loss.backward()
    conv_grad = student.features[0].weight.grad
    assert conv_grad is not None and conv_grad.abs().sum() > 0  # from the CAM term alone
    assert student.fc.weight.grad.abs().sum() > 0  # the CAMs depend on the class weights too
    params = list(teacher.parameters())
    assert params and all(p.grad is None for p in params)
    assert teacher.training and bn.training
    assert torch.equal(bn.running_mean, stats)  # BatchNorm statistics did not move


def test_identical_networks_give_zero_and_a_different_student_does_not():
    teacher = _nets(0)
    kd = CAMDistillLoss(teacher, copy.deepcopy(teacher), "features", "features", top_k=4,
                        kd_weight=1.0)
    out = kd(_x())
    assert out.cam_loss.item() == pytest.approx(0.0, abs=1e-12)
    assert out.kd_loss.item() == pytest.approx(0.0, abs=1e-6)
    other = CAMDistillLoss(teacher, _nets(1), "features", "features", top_k=4)
    assert other(_x()).cam_loss.item() > 1e-4


def test_batch_loss_is_the_mean_of_per_sample_losses():
    teacher, student = _nets(0), _nets(1, pool=True)
    kd = CAMDistillLoss(teacher, student, "features", "features", top_k=3, temperature=0.5)
    x = _x(7, seed=3)
    batch = kd(x).cam_loss.item()
    singles = [kd(x[i:i + 1]).cam_loss.item() for i in range(len(x))]
    assert len(singles) == 7 and min(singles) > 0
    assert max(singles) - min(singles) > 1e-6  # the samples differ, so the mean is informative
    assert batch == pytest.approx(sum(singles) / len(singles), rel=1e-5)


def test_the_public_formula_is_the_constant_one_over_b_with_no_gradient():
    # Exp-KD's public get_loss_cam: the student's maps go through a softmax over dim 0 (the batch)
    # and a mean. Every other index sums to 1 over the batch, so the mean is 1/B whatever the maps.
    b, k, h, w = 4, 3, 4, 4
    gen = torch.Generator().manual_seed(0)
    cam_t = torch.rand(b, k, h, w, generator=gen)
    values = []
    for seed in (1, 2):
        cam_s = (torch.rand(b, k, h, w, generator=torch.Generator().manual_seed(seed)) * 10
                 ).requires_grad_()
        student_term = (cam_s / 4.0).softmax(dim=0).mean()
        assert student_term.item() == pytest.approx(1 / b, abs=1e-7)
        loss = ((student_term - (cam_t / 4.0).softmax(dim=0)) ** 2).sum()
        loss.backward()
        assert cam_s.grad.abs().max().item() < 1e-7
        values.append(loss.item())
        # Ours, on the same maps: a real gradient.
        leaf = cam_s.detach().requires_grad_()
        ours = _cam_loss_per_sample(cam_t, leaf, 1.0, (h, w)).mean()
        ours.backward()
        assert leaf.grad.abs().max().item() > 1e-4
    assert values[0] == pytest.approx(values[1], rel=1e-6)  # does not depend on the student


@pytest.mark.parametrize("net,kind,reduce", [(GapNet, "gap", "mean"), (FlatNet, "flatten", "sum")])
def test_cam_identity(net, kind, reduce):
    torch.manual_seed(0)
    model = net()
    kd = CAMDistillLoss(model, copy.deepcopy(model), "features", "features", top_k=2)
    maps = kd.maps(_x())
    assert kd.teacher_head_kind == kind and maps.teacher_head_kind == kind
    cam = maps.teacher
    spatial = cam.mean(dim=(2, 3)) if reduce == "mean" else cam.sum(dim=(2, 3))
    torch.testing.assert_close(spatial, maps.teacher_logits - model.fc.bias, rtol=1e-4, atol=1e-5)
    assert cam.abs().max() > 0
    # Selecting classes gives the same maps as indexing all of them.
    feat = model.features(_x())
    idx = torch.tensor([[0, 3], [4, 1]] * 3)
    sel = class_activation_maps(feat, model.fc, kind, idx)
    full = class_activation_maps(feat, model.fc, kind)
    torch.testing.assert_close(sel, full.gather(1, idx[:, :, None, None].expand(-1, -1, *
                                                                                 full.shape[2:])))


def test_feature_maps_of_different_sizes():
    teacher, student = _nets(0), _nets(1, pool=True)  # 8x8 vs 4x4
    kd = CAMDistillLoss(teacher, student, "features", "features")
    maps = kd.maps(_x())
    assert maps.teacher.shape[2:] == (8, 8) and maps.student.shape[2:] == (4, 4)
    default = kd(_x()).cam_loss
    at_8 = CAMDistillLoss(teacher, student, "features", "features", size=8)(_x()).cam_loss
    at_4 = CAMDistillLoss(teacher, student, "features", "features", size=(4, 4))(_x()).cam_loss
    assert torch.isfinite(default) and default.item() > 0
    assert default.item() == pytest.approx(at_8.item(), rel=1e-6)  # default: the larger size
    assert abs(default.item() - at_4.item()) > 1e-7
    default.backward()
    assert student.features[0].weight.grad.abs().sum() > 0


def test_flatten_student_against_gap_teacher():
    torch.manual_seed(0)
    teacher, student = GapNet(), FlatNet()
    kd = CAMDistillLoss(teacher, student, "features", "features")
    out = kd(_x())
    assert (kd.teacher_head_kind, kd.student_head_kind) == ("gap", "flatten")
    out.loss.backward()
    assert student.features[0].weight.grad.abs().sum() > 0


def test_no_hook_left_after_a_call_or_an_exception():
    teacher, student = _nets(0, bn=True), _nets(1)
    teacher.train()
    kd = CAMDistillLoss(teacher, student, "features", "features")
    kd(_x())
    kd.maps(_x())
    assert _no_hooks(teacher, student)
    student.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        kd(_x())
    assert _no_hooks(teacher, student)
    student.fail, teacher.fail = False, True
    with pytest.raises(RuntimeError, match="boom"):
        kd(_x())
    assert _no_hooks(teacher, student)
    assert teacher.training and all(m.training for m in teacher.modules())


def test_exception_during_the_first_call_check_leaves_no_hook():
    teacher, student = _nets(0), _nets(1)
    student.fail = True
    kd = CAMDistillLoss(teacher, student, "features", "features")
    with pytest.raises(RuntimeError, match="boom"):
        kd(_x())
    assert _no_hooks(teacher, student)


def test_bad_layer_name_lists_close_matches():
    teacher, student = _nets(0), _nets(1)
    with pytest.raises(ValueError, match=r"student_layer: no module named 'feature\.3'") as e:
        CAMDistillLoss(teacher, student, "features", "feature.3")
    assert "'features.3'" in str(e.value) and "close matches" in str(e.value)
    with pytest.raises(ValueError, match="teacher_head: no module named 'fcc'.*'fc'"):
        CAMDistillLoss(teacher, student, "features", "features", teacher_head="fcc")
    with pytest.raises(ValueError, match="teacher_layer: expected a submodule of teacher"):
        CAMDistillLoss(teacher, student, student.features, "features")


def test_unreadable_heads_get_the_gradcam_hint():
    torch.manual_seed(0)
    kd = CAMDistillLoss(GapNet(), MLPHeadNet(), "features", "features")
    with pytest.raises(ValueError, match="student_head.*Grad-CAM"):
        kd(_x())
    # A layer that does not feed the head directly (the head reads a later layer).
    teacher = _nets(0)
    kd = CAMDistillLoss(teacher, _nets(1), "features.1", "features")
    with pytest.raises(ValueError, match="teacher_head: expected 'fc''s input to be the global "
                                         "average .*Grad-CAM"):
        kd(_x())
    # Something runs after the head (here a log-softmax), so the CAMs would not explain the output.
    kd = CAMDistillLoss(teacher, LogSoftmaxNet(), "features", "features")
    with pytest.raises(ValueError, match="student_head.*something runs after it"):
        kd(_x())
    with pytest.raises(ValueError, match="student_head: expected an nn.Linear"):
        CAMDistillLoss(teacher, _nets(1), "features", "features", student_head="features.0")


def test_dropout_before_the_head_in_training_mode_is_accepted():
    teacher, student = _nets(0), _nets(1, dropout=0.5)
    student.train()
    kd = CAMDistillLoss(teacher, student, "features", "features")
    kd(_x()).loss.backward()
    assert kd.student_head_kind == "gap" and student.training


def test_weights_and_kd_term():
    teacher, student = _nets(0), _nets(1)
    kd = CAMDistillLoss(teacher, student, "features", "features", cam_weight=2.0,
                        kd_weight=0.5, kd_temperature=3.0)
    out = kd(_x())
    assert out.kd_loss.item() > 0
    expected = 2.0 * out.cam_loss + 0.5 * out.kd_loss
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(out.parts) == {"loss", "cam", "kd"}
    torch.testing.assert_close(out.kd_loss, hinton_kd_loss(out.logits, out.teacher_logits, 3.0))
    assert out.top_classes.shape == (6, 3)
    torch.testing.assert_close(out.top_classes, out.teacher_logits.topk(3, dim=1).indices)


@pytest.mark.parametrize("kwargs,match", [
    ({"top_k": 1}, "top_k: expected an int in \\[2, 5\\]"),
    ({"top_k": 6}, "top_k: expected an int in \\[2, 5\\]"),
    ({"temperature": 0}, "temperature: expected a finite number > 0"),
    ({"kd_weight": -1.0}, "kd_weight: expected a finite number >= 0"),
    ({"size": (4, 0)}, "size: expected None, a positive int"),
])
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CAMDistillLoss(_nets(0), _nets(1), "features", "features", **kwargs)


def test_class_count_mismatch_and_non_module():
    student = _nets(1)
    student.fc = nn.Linear(12, N_CLASSES + 1)
    with pytest.raises(ValueError, match="student_head: expected 5 classes"):
        CAMDistillLoss(_nets(0), student, "features", "features")
    with pytest.raises(TypeError, match="teacher: expected a torch.nn.Module, got function"):
        CAMDistillLoss(lambda x: x, student, "features", "features")
