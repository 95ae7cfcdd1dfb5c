"""CAMAgreement: teacher-vs-student CAMs and their agreement, on small GAP networks whose maps
we can reason about (identical networks agree perfectly; a spatially shifted student does not,
although a GAP head makes its logits identical)."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from torch import nn

from deepvid_plugin.core import card, kinds
from deepvid_plugin.core.explainer import ExplainContext
from deepvid_plugin.core.record import Record
from deepvid_plugin.methods.cam_agreement.explainer import CAMAgreement, pearson, top_iou
from deepvid_plugin.methods.cam_agreement.loss import CAMDistillLoss
from deepvid_plugin.mlflow import hooks as mlflow_hooks

N_CLASSES = 5


class Roll(nn.Module):
    """Shift feature maps circularly: moves a CAM without changing a GAP head's logits."""

    def __init__(self, shift: int):
        super().__init__()
        self.shift = shift

    def forward(self, x):
        return torch.roll(x, shifts=(self.shift, self.shift), dims=(2, 3))


class Net(nn.Module):
    """conv -> ReLU -> roll (the CAM layer ``features``) -> GAP -> Linear with non-negative
    weights, so every class's CAM is non-negative and not constant."""

    def __init__(self, shift: int = 0, seed: int = 0, channels: int = 1, fail: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(),
                                      nn.Dropout(0.5), Roll(shift))
        self.fc = nn.Linear(6, N_CLASSES)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            self.fc.weight.abs_()
        self.fail = fail

    def forward(self, x):
        f = self.features(x)
        if self.fail:
            raise RuntimeError("boom")
        return self.fc(f.mean(dim=(2, 3)))


def images(k: int = 6, size: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.rand((k, 1, size, size), generator=torch.Generator().manual_seed(seed))


def context(x: torch.Tensor, labels=None) -> ExplainContext:
    return ExplainContext(x=x, ids=tuple(f"i{k}" for k in range(x.shape[0])), labels=labels,
                          class_names=tuple(f"c{c}" for c in range(N_CLASSES)))


def explain(teacher, student, x, step=0, **kw):
    ex = CAMAgreement(teacher, "features", "features", evidence_steps=4, **kw)
    ex.prepare(context(x))
    return ex, ex.explain(student, step)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def test_identical_networks_agree_perfectly():
    teacher = Net()
    _, recs = explain(teacher, copy.deepcopy(teacher), images())
    assert len(recs) == 6
    for rec in recs:
        assert rec.kind == "cam_agreement"
        assert rec.arrays["cam_teacher"].shape == (3, 12, 12) == rec.arrays["cam_student"].shape
        assert rec.meta["pearson"] == pytest.approx([1.0] * 3, abs=1e-5)
        assert rec.meta["iou"] == [1.0] * 3
        assert rec.meta["agree"] is True
        np.testing.assert_allclose(rec.arrays["cam_teacher"], rec.arrays["cam_student"])
        assert kinds.summarize(rec)["headline"] == pytest.approx(1.0, abs=1e-5)


def test_a_shifted_student_agrees_less_although_its_logits_are_the_same():
    teacher = Net()
    student = Net(shift=3)  # same weights (same seed), maps rolled by 3 pixels
    _, recs = explain(teacher, student, images())
    assert len(recs) == 6
    for rec in recs:
        # GAP is blind to the roll: same prediction, same probabilities...
        assert rec.meta["agree"] is True
        np.testing.assert_allclose(rec.arrays["teacher_probs"], rec.arrays["student_probs"],
                                   atol=1e-5)
        # ...but the student looks elsewhere
        assert rec.meta["pearson"][0] is not None and rec.meta["pearson"][0] < 0.9
        assert rec.meta["iou"][0] < 0.8
    # the maps are the teacher's, rolled (up to the bilinear resize, which is the identity here)
    rec = recs[0]
    np.testing.assert_allclose(np.roll(rec.arrays["cam_teacher"], (3, 3), axis=(1, 2)),
                               rec.arrays["cam_student"], atol=1e-5)


def test_top_classes_are_the_teachers_and_disagreement_is_recorded():
    teacher, student = Net(seed=0), Net(seed=7)
    x = images()
    _, recs = explain(teacher, student, x, top_k=4)
    with torch.no_grad():
        t_top = teacher.eval()(x).topk(4, dim=1).indices
        s_pred = student.eval()(x).argmax(1)
    assert len(recs) == 6
    for i, rec in enumerate(recs):
        assert rec.arrays["classes"].tolist() == t_top[i].tolist()
        assert rec.meta["teacher_pred"] == int(t_top[i, 0]) and rec.meta["pred"] == int(s_pred[i])
        assert rec.meta["agree"] is (int(t_top[i, 0]) == int(s_pred[i]))
    assert any(not r.meta["agree"] for r in recs), "the seeds should give some disagreement"


def test_the_students_evidence_is_for_the_teachers_top_class():
    from deepvid_plugin.core import faithfulness

    teacher, student = Net(), Net(seed=3)
    x = images()
    _, recs = explain(teacher, student, x)
    maps = torch.as_tensor(np.stack([r.arrays["cam_student"][0] for r in recs]))
    target = torch.as_tensor([r.meta["teacher_pred"] for r in recs])
    with torch.no_grad():
        student.eval()
        want = faithfulness.evidence(student, x, maps, target, [f"i{k}" for k in range(6)],
                                     steps=4)
    assert [r.meta["evidence"]["deletion_auc"] for r in recs] == pytest.approx(
        [w["deletion_auc"] for w in want], abs=1e-5)


def test_networks_rng_grads_and_modes_are_left_as_found():
    teacher, student = Net(), Net(shift=2)
    teacher.train()
    student.train()
    student.features[0].eval()  # a mixed state must come back as it was
    modes = [m.training for m in (*teacher.modules(), *student.modules())]
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    explain(teacher, student, images())
    assert [m.training for m in (*teacher.modules(), *student.modules())] == modes
    assert torch.equal(torch.get_rng_state(), states[0])
    assert random.getstate() == states[1]
    assert np.array_equal(np.random.get_state()[1], states[2])
    assert all(p.grad is None for p in (*teacher.parameters(), *student.parameters()))
    assert _hooks(teacher) == 0 and _hooks(student) == 0


def test_no_hook_is_left_when_the_student_raises():
    teacher = Net()
    student = Net()
    ex, _ = explain(teacher, student, images())  # verified and cached, then the student fails
    student.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        ex.explain(student, 1)
    assert _hooks(teacher) == 0 and _hooks(student) == 0
    assert teacher.training and student.training


def test_history_accumulates_and_resumes():
    teacher = Net()
    student = Net(shift=1)
    x = images(k=2)
    ex, first = explain(teacher, student, x, step=0)
    second = ex.explain(student, 2)
    hist = second[0].meta["history"]
    assert [h["step"] for h in hist] == [0, 2]
    assert hist[0]["pearson"] == pytest.approx(first[0].meta["pearson"][0])
    # a resumed explainer continues the history
    again = CAMAgreement(teacher, "features", "features", evidence_steps=None)
    again.load_state_dict(ex.state_dict())
    again.prepare(context(x))
    assert [h["step"] for h in again.explain(student, 4)[1].meta["history"]] == [0, 2, 4]
    # re-explaining a step replaces its entry instead of duplicating it
    assert [h["step"] for h in again.explain(student, 4)[1].meta["history"]] == [0, 2, 4]


def test_records_round_trip_through_the_envelope():
    _, recs = explain(Net(), Net(shift=2), images(k=2))
    assert recs
    for rec in recs:
        back = Record.decode(rec.encode())
        assert back == rec
        assert kinds.prepare(back)[1] == rec


def test_from_loss_uses_the_losses_teacher_layers_and_top_k():
    teacher, student = Net(), Net(shift=2)
    loss = CAMDistillLoss(teacher, student, "features", "features.3", top_k=4)
    ex = CAMAgreement.from_loss(loss, evidence_steps=None)
    assert ex.teacher is teacher and ex.top_k == 4
    assert (ex.teacher_layer, ex.student_layer) == ("features", "features.3")
    ex.prepare(context(images(k=2)))
    recs = ex.explain(student, 0)
    assert recs[0].arrays["classes"].shape == (4,)
    assert recs[0].meta["evidence"] is None


def test_bad_arguments_name_what_was_expected():
    with pytest.raises(ValueError, match=r"top_k: expected an int >= 1, got 0"):
        CAMAgreement(Net(), "features", "features", top_k=0)
    with pytest.raises(TypeError, match="teacher: expected a torch.nn.Module"):
        CAMAgreement("net", "features", "features")
    ex = CAMAgreement(Net(), "features", "featurs")
    ex.prepare(context(images(k=2)))
    with pytest.raises(ValueError, match=r"student_layer: .*close matches: \['features"):
        ex.explain(Net(), 0)
    with pytest.raises(RuntimeError, match="prepare"):
        CAMAgreement(Net(), "features", "features").explain(Net(), 0)


def test_pearson_and_iou_on_known_maps():
    a = np.zeros((10, 10))
    a[:2] = 1.0  # top 20% = the first two rows
    assert top_iou(a, a) == 1.0
    assert top_iou(a, np.roll(a, 5, axis=0)) == 0.0
    assert pearson(a, a) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    assert pearson(a, np.zeros((10, 10))) is None  # a constant map has no correlation


def test_the_kind_refuses_inconsistent_records():
    _, recs = explain(Net(), Net(shift=2), images(k=1))
    rec = recs[0]
    bad = Record(kind=rec.kind, subject=rec.subject, step=rec.step, arrays=dict(rec.arrays),
                 meta={**rec.meta, "agree": not rec.meta["agree"]}, settings=rec.settings)
    with pytest.raises(ValueError, match=r"meta\['agree'\]: expected pred == teacher_pred"):
        kinds.prepare(bad)
    bad = Record(kind=rec.kind, subject=rec.subject, step=rec.step,
                 arrays={**rec.arrays, "cam_student": rec.arrays["cam_student"][:2]},
                 meta=rec.meta, settings=rec.settings)
    with pytest.raises(ValueError, match=r"cam_student: expected shape \(3, 12, 12\)"):
        kinds.prepare(bad)


def test_step_image_draws_both_maps_side_by_side():
    draw = mlflow_hooks.of(kinds.get("cam_agreement")).step_image
    _, same = explain(Net(), Net(), images(k=1))
    _, shifted = explain(Net(), Net(shift=3), images(k=1))
    img = draw(same[0])
    assert img.dtype == np.uint8 and img.shape == (card.HEIGHT, card.WIDTH, 3)  # a step card

    def panels(a):  # the two map panels of the card (core/card.py's geometry), keys cut off
        slot = (card.WIDTH - card.TEXT_W - 2 * card.PAD) // 2
        side = min(slot - card.PAD, card.HEIGHT - 3 * card.TEXT_PX - 4 * card.PAD)
        y0 = card.PAD + card.TEXT_PX + 6
        x = [card.TEXT_W + card.PAD + i * slot + (slot - side) // 2 for i in (0, 1)]
        return [a[y0 + 1:y0 + side - 1, x0 + 1:x0 + side - 1] for x0 in x]

    left, right = panels(img)
    assert left.std() > 0  # a map is drawn there, not blank card
    assert np.array_equal(left, right)  # identical networks: identical maps
    left, right = panels(draw(shifted[0]))
    assert not np.array_equal(left, right)


def test_a_wrapper_holding_both_networks_as_lightning_does():
    class Wrapper(nn.Module):  # a LightningModule's shape: the student and the teacher inside
        def __init__(self):
            super().__init__()
            self.student = Net(shift=2)
            self.teacher = Net()

        def forward(self, x):
            return self.student(x)

    wrapper = Wrapper()
    ex = CAMAgreement(wrapper.teacher, "features", "student.features", evidence_steps=None,
                      student_head="student.fc")
    ex.prepare(context(images(k=2)))
    got = ex.explain(wrapper, 0)
    _, direct = explain(Net(), Net(shift=2), images(k=2))
    assert len(got) == len(direct) == 2
    for a, b in zip(got, direct, strict=True):
        assert a.meta["pearson"] == pytest.approx(b.meta["pearson"], abs=1e-6)
    # without naming the head, the last Linear is the teacher's, which the student never runs
    ex = CAMAgreement(wrapper.teacher, "features", "student.features", evidence_steps=None)
    ex.prepare(context(images(k=2)))
    with pytest.raises(ValueError, match="student_head"):
        ex.explain(wrapper, 0)
