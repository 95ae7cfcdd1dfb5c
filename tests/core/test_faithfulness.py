"""Deletion/insertion evidence (RISE): correctness on models whose true ranking is known."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from deepvid_plugin.core import faithfulness as F


class MaskModel(nn.Module):
    """Two classes: logit0 = scale * sum(weight * x) - shift, logit1 = 0.

    Class 0's probability depends only on the pixels where ``weight`` is non-zero, so the true
    ranking of pixels is ``weight`` itself.
    """

    def __init__(self, weight: torch.Tensor, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        self.register_buffer("weight", weight.clone())
        self.scale, self.shift = scale, shift

    def forward(self, x):
        s = (x * self.weight).flatten(1).sum(1) * self.scale - self.shift
        return torch.stack([s, torch.zeros_like(s)], 1)


def _region_mask(h=8, w=8):
    m = torch.zeros(1, h, w)
    m[:, 2:5, 3:7] = 1.0  # 12 of 64 pixels
    return m


def _reference_curves(model, x, sal, target, steps, baseline=0.0):
    """Naive one-image-at-a-time reimplementation, written from the paper's description."""
    k_n, _, h, w = x.shape
    n = h * w
    dele = np.zeros((k_n, steps + 1))
    ins = np.zeros((k_n, steps + 1))
    with torch.no_grad():
        for k in range(k_n):
            flat = sal[k].reshape(-1).tolist()
            order = sorted(range(n), key=lambda p: (-flat[p], p))  # highest first, ties by index
            for i in range(steps + 1):
                top = order[: (i * n) // steps]
                removed = x[k].clone().reshape(x.shape[1], -1)
                removed[:, top] = baseline
                inserted = torch.full_like(x[k], baseline).reshape(x.shape[1], -1)
                inserted[:, top] = x[k].reshape(x.shape[1], -1)[:, top]
                for arr, img in ((dele, removed), (ins, inserted)):
                    p = torch.softmax(model(img.reshape(1, *x.shape[1:])), 1)[0, target[k]]
                    arr[k, i] = float(p)
    return dele, ins


def test_faithful_map_beats_random_on_known_region():
    mask = _region_mask()
    model = MaskModel(mask, scale=1.0, shift=6.0)
    g = torch.Generator().manual_seed(1)
    x = 0.5 + 0.5 * torch.rand(6, 1, 8, 8, generator=g)
    target = torch.zeros(6, dtype=torch.long)
    sal = mask.expand(6, 8, 8) + 0.01 * torch.rand(6, 8, 8, generator=g)
    ids = [f"img{k}" for k in range(6)]
    ev = F.evidence(model, x, sal, target, ids, steps=16)
    assert len(ev) == 6
    for e in ev:
        assert e["deletion_auc"] < e["random_deletion_auc"] - 0.05
        assert e["insertion_auc"] > e["random_insertion_auc"] + 0.05
        assert e["better_than_random"] is True
    # And the random map itself is, by construction, not better than the random map.
    rand = F.random_saliency(ids, (8, 8), seed=0)
    ev_rand = F.evidence(model, x, rand, target, ids, steps=16)
    assert not any(e["better_than_random"] for e in ev_rand)


def test_models_own_weights_beat_reversed_map():
    g = torch.Generator().manual_seed(2)
    weight = torch.rand(1, 6, 6, generator=g)  # graded, all positive: a full true ranking
    model = MaskModel(weight, scale=1.0, shift=weight.sum().item() * 0.5)
    x = torch.ones(3, 1, 6, 6)
    target = torch.zeros(3, dtype=torch.long)
    good = F.deletion_insertion(model, x, weight.expand(3, 6, 6), target, steps=9)
    bad = F.deletion_insertion(model, x, -weight.expand(3, 6, 6), target, steps=9)
    assert np.all(good.deletion_auc < bad.deletion_auc - 0.05)
    assert np.all(good.insertion_auc > bad.insertion_auc + 0.05)


@pytest.mark.parametrize("steps", [4, 3])
def test_auc_equals_hand_computation(steps):
    # 2x2 image of ones, logit0 = a * (number of pixels present): the probability after removing
    # n pixels is sigmoid(a * (4 - n)), so both curves and their trapezoid areas are known exactly.
    a = 0.7
    model = MaskModel(torch.ones(1, 2, 2), scale=a)
    x = torch.ones(1, 1, 2, 2)
    sal = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])
    curves = F.deletion_insertion(model, x, sal, torch.tensor([0]), steps=steps)

    def sig(v):
        return 1.0 / (1.0 + math.exp(-v))

    counts = [(i * 4) // steps for i in range(steps + 1)]  # steps=3 -> 0, 1, 2, 4
    fr = [c / 4 for c in counts]
    dele = [sig(a * (4 - c)) for c in counts]
    ins = [sig(a * c) for c in counts]
    d_auc = sum((fr[i + 1] - fr[i]) * (dele[i] + dele[i + 1]) / 2 for i in range(steps))
    i_auc = sum((fr[i + 1] - fr[i]) * (ins[i] + ins[i + 1]) / 2 for i in range(steps))
    np.testing.assert_allclose(curves.deletion[0], dele, rtol=1e-6)
    np.testing.assert_allclose(curves.insertion[0], ins, rtol=1e-6)
    np.testing.assert_allclose(curves.fractions, fr)
    assert curves.deletion_auc[0] == pytest.approx(d_auc, rel=1e-6)
    assert curves.insertion_auc[0] == pytest.approx(i_auc, rel=1e-6)


@pytest.mark.parametrize("baseline", [0.0, 0.3])
def test_curve_endpoints(baseline):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 25, 5))
    x = torch.rand(4, 3, 5, 5)
    target = torch.tensor([0, 1, 4, 2])
    curves = F.deletion_insertion(model, x, torch.randn(4, 3, 5, 5), target, steps=16,
                                  baseline=baseline)
    assert curves.deletion.shape == (4, 17) and curves.insertion.shape == (4, 17)
    with torch.no_grad():
        p_x = torch.softmax(model(x), 1)[torch.arange(4), target].numpy()
        p_blank = torch.softmax(model(torch.full_like(x, baseline)), 1)[torch.arange(4), target]
    np.testing.assert_allclose(curves.deletion[:, 0], p_x, rtol=1e-5)
    np.testing.assert_allclose(curves.insertion[:, -1], p_x, rtol=1e-5)
    np.testing.assert_allclose(curves.deletion[:, -1], p_blank.numpy(), rtol=1e-5)
    np.testing.assert_allclose(curves.insertion[:, 0], p_blank.numpy(), rtol=1e-5)


def test_matches_naive_reference_at_any_batch_size():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 36, 16), nn.Tanh(), nn.Linear(16, 4))
    x = torch.rand(3, 2, 6, 6)
    sal = torch.randn(3, 2, 6, 6)
    sal[0, :, :2] = 0.0  # ties: broken by flat pixel index
    target = torch.tensor([3, 0, 1])
    ref_d, ref_i = _reference_curves(model, x, sal.sum(1), target, steps=7)
    for bs in (1, 5, 512):
        c = F.deletion_insertion(model, x, sal, target, steps=7, batch_size=bs)
        np.testing.assert_allclose(c.deletion, ref_d, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(c.insertion, ref_i, rtol=1e-5, atol=1e-7)


def test_ties_are_broken_by_pixel_index():
    # The model only reads pixel 0; a constant map must remove pixel 0 first, every time.
    w = torch.zeros(1, 4, 4)
    w[0, 0, 0] = 10.0
    model = MaskModel(w)
    x = torch.ones(1, 1, 4, 4)
    c = F.deletion_insertion(model, x, torch.zeros(1, 4, 4), torch.tensor([0]), steps=16)
    assert c.deletion[0, 0] > 0.99 and c.deletion[0, 1] == pytest.approx(0.5)
    assert c.insertion[0, 1] > 0.99


def test_evidence_matches_deletion_insertion_and_random_map():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x = torch.rand(3, 1, 8, 8)
    sal = torch.randn(3, 8, 8)
    target = torch.tensor([1, 2, 3])
    ids = ["a", "b", "c"]
    ev = F.evidence(model, x, sal, target, ids, seed=5, steps=6)
    mine = F.deletion_insertion(model, x, sal, target, steps=6)
    rand = F.deletion_insertion(model, x, F.random_saliency(ids, (8, 8), 5), target, steps=6)
    assert len(ev) == 3
    for k, e in enumerate(ev):
        assert set(e) == {"deletion_auc", "insertion_auc", "random_deletion_auc",
                          "random_insertion_auc", "deletion_curve", "insertion_curve",
                          "evidence_steps", "better_than_random"}
        assert e["evidence_steps"] == 6 and len(e["deletion_curve"]) == 7
        assert e["deletion_auc"] == pytest.approx(mine.deletion_auc[k], rel=1e-9)
        assert e["insertion_auc"] == pytest.approx(mine.insertion_auc[k], rel=1e-9)
        assert e["random_deletion_auc"] == pytest.approx(rand.deletion_auc[k], rel=1e-9)
        assert e["random_insertion_auc"] == pytest.approx(rand.insertion_auc[k], rel=1e-9)
        np.testing.assert_allclose(e["insertion_curve"], mine.insertion[k])
        assert e["better_than_random"] == (e["deletion_auc"] < e["random_deletion_auc"]
                                           and e["insertion_auc"] > e["random_insertion_auc"])


def test_evidence_forward_count_fits_the_budget():
    calls = []

    def model(imgs):
        calls.append(len(imgs))
        return torch.zeros(len(imgs), 3)

    F.evidence(model, torch.rand(2, 1, 8, 8), torch.randn(2, 8, 8), [0, 1], ["a", "b"])
    per_instance = sum(calls) / 2
    assert per_instance == 4 * (F.DEFAULT_STEPS - 1) + 2
    assert per_instance <= 0.10 * 512
    assert len(calls) == 1  # one batched pass at the default batch size


def test_region_maps_are_scored_against_random_regions():
    """With ``segments`` the random baseline is random per region (like for like): constant on
    each region, fixed per id, and the evidence equals deletion/insertion of that map."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x = torch.rand(2, 1, 8, 8)
    seg = torch.stack([(torch.arange(64) // 16).view(8, 8),  # 4 row bands
                       (torch.arange(64) % 8 // 2).view(8, 8)])  # 4 column bands
    sal = torch.randn(2, 4)[torch.arange(2)[:, None, None], seg]
    ids, target = ["a", "b"], torch.tensor([1, 2])
    rand = F.random_region_saliency(ids, seg, seed=5)
    for k in range(2):  # one value per region
        for r in range(4):
            assert rand[k][seg[k] == r].unique().numel() == 1
    assert torch.equal(F.random_region_saliency(["b"], seg[1:], 5)[0], rand[1])  # per id
    ev = F.evidence(model, x, sal, target, ids, seed=5, steps=6, segments=seg)
    want = F.deletion_insertion(model, x, rand, target, steps=6)
    for k, e in enumerate(ev):
        assert e["random_map"] == "regions"
        assert e["random_deletion_auc"] == pytest.approx(want.deletion_auc[k], rel=1e-9)
        assert e["random_insertion_auc"] == pytest.approx(want.insertion_auc[k], rel=1e-9)
    assert "random_map" not in F.evidence(model, x, sal, target, ids, seed=5, steps=6)[0]
    with pytest.raises(ValueError, match=r"segments: expected \(2, 8, 8\) integer region indices"):
        F.evidence(model, x, sal, target, ids, segments=seg.float())


def test_random_saliency_is_fixed_per_id():
    a = F.random_saliency(["x1", "x2"], (5, 7), seed=0)
    b = F.random_saliency(["x2", "x1", "x3"], (5, 7), seed=0)
    assert a.shape == (2, 5, 7)
    assert torch.equal(a[0], b[1]) and torch.equal(a[1], b[0])
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], F.random_saliency(["x1"], (5, 7), seed=1)[0])


def test_model_state_grad_and_rng_untouched():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 3))
    model.train()
    model[1].eval()  # a mixed state must come back exactly
    flags = [m.training for m in model.modules()]
    stats = model[1].running_mean.clone()
    x, sal = torch.rand(2, 1, 4, 4), torch.randn(2, 4, 4)
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    F.evidence(model, x, sal, [0, 2], ["p", "q"], steps=4)
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(model[1].running_mean, stats)
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)


def test_flags_restored_when_model_raises():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(1)

        def forward(self, x):
            raise RuntimeError("boom")

    model = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        F.deletion_insertion(model, torch.rand(1, 1, 3, 3), torch.rand(1, 3, 3), [0], steps=2)
    assert model.training and model.bn.training


@pytest.mark.parametrize("kwargs, arg", [
    (dict(x=torch.rand(1, 8, 8)), "x:"),
    (dict(x=torch.zeros(2, 1, 8, 8, dtype=torch.long)), "x:"),
    (dict(saliency=torch.rand(2, 7, 8)), "saliency:"),
    (dict(saliency=torch.full((2, 8, 8), float("nan"))), "saliency: instance 0 has 64"),
    (dict(target=[0]), "target:"),
    (dict(target=[0, 10]), r"target: expected class indices in \[0, 10\)"),
    (dict(target=[0, -1]), "target:"),
    (dict(target=[0.0, 1.0]), "target:"),
    (dict(steps=1), "steps:"),
    (dict(steps=2.5), "steps:"),
    (dict(batch_size=0), "batch_size:"),
    (dict(ids=["a"]), "ids:"),
])
def test_bad_input_names_the_argument(kwargs, arg):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    args = dict(x=torch.rand(2, 1, 8, 8), saliency=torch.rand(2, 8, 8), target=[0, 1],
                ids=["a", "b"], steps=4, batch_size=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=arg):
        F.evidence(model, args["x"], args["saliency"], args["target"], args["ids"],
                   steps=args["steps"], batch_size=args["batch_size"])


def test_bad_baseline_and_ids_type():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="baseline:"):
        F.deletion_insertion(model, torch.rand(1, 1, 2, 2), torch.rand(1, 2, 2), [0],
                             baseline=float("inf"))
    with pytest.raises(TypeError, match="ids:"):
        F.random_saliency("abc", (2, 2), 0)
    with pytest.raises(ValueError, match="shape:"):
        F.random_saliency(["a"], (2,), 0)


def test_probability_outputs_are_used_as_given():
    torch.manual_seed(6)
    logits_model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    probs_model = nn.Sequential(logits_model, nn.Softmax(dim=1))
    x, sal, target = torch.rand(2, 1, 4, 4), torch.randn(2, 4, 4), [0, 2]
    a = F.deletion_insertion(logits_model, x, sal, target, steps=4)
    b = F.deletion_insertion(probs_model, x, sal, target, steps=4, outputs="probs")
    np.testing.assert_allclose(a.deletion, b.deletion, rtol=1e-5)
    np.testing.assert_allclose(a.insertion_auc, b.insertion_auc, rtol=1e-5)
    with pytest.raises(ValueError, match=r"outputs: expected one of \['logits', 'probs', 'sigmoid'\], got 'prob'"):
        F.evidence(logits_model, x, sal, target, ["a", "b"], outputs="prob")
