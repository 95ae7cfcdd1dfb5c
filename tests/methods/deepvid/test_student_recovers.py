"""The student really mimics the teacher: known ground truths it must recover."""

import numpy as np
import torch
from torch import nn

from deepvid_plugin.demo.digits import DigitsCNN, train_epoch
from deepvid_plugin.explain import DeepVID, PixelGenerator


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_linear_teacher_weights_recovered(linear_teacher):
    w, _, teacher = linear_teacher
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    records = DeepVID(PixelGenerator((1, 8, 8)), radius=0.5).explain(teacher, x)
    assert len(records) == 6
    for r in records:
        student = r.weights.reshape(10, -1).astype(np.float64)
        student = student - student.mean(0, keepdims=True)
        cosines = [_cos(student[c], w[c].numpy()) for c in range(10)]
        assert min(cosines) >= 0.95, cosines
        assert r.fidelity["top1_agreement"] >= 0.99
        assert r.trustworthy


def _quadrant_mass(records):
    mass = np.stack([np.abs(r.weights.astype(np.float64)) for r in records])  # (K, C, 1, 8, 8)
    return mass[..., :4, :4].sum() / mass.sum()


MASK = torch.zeros(1, 1, 8, 8)
MASK[..., :4, :4] = 1.0


class Masked(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x * MASK)


def _train(digits, masked: bool, epochs=6):
    torch.manual_seed(0)
    cnn = DigitsCNN()
    model = Masked(cnn) if masked else cnn
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        train_epoch(model, opt, digits.x_train, digits.y_train,
                    generator=torch.Generator().manual_seed(0))
    return model.eval()


def test_quadrant_teacher_with_pixel_noise(digits):
    """Independent pixel noise: nothing outside the quadrant moves the teacher, so >= 90% of the
    student's absolute weight mass must sit inside it. Small noise keeps the CNN locally linear,
    and 2048 neighbours keep the spurious weights of the 48 irrelevant pixels small (measured
    mass: 0.94; 0.88 with 512 neighbours)."""
    model = _train(digits, masked=True)
    explainer = DeepVID(PixelGenerator((1, 8, 8)), n_neighbours=2048, radius=0.1)
    records = explainer.explain(model, digits.x_test[:8])
    assert _quadrant_mass(records) >= 0.9


def test_trust_rule_tolerates_a_flat_confident_teacher():
    """A teacher that is 99-100% sure on every neighbour leaves R^2 measuring noise; a student that
    matches its probabilities closely is still trustworthy, one that does not is not."""
    from deepvid_plugin.explain import fidelity_metrics

    g = torch.Generator().manual_seed(0)
    teacher = torch.full((1, 50, 3), 0.0005, dtype=torch.float64)
    teacher[..., 0] = 0.99 + 0.01 * torch.rand(1, 50, generator=g, dtype=torch.float64)
    close = teacher.clone()
    close[..., 0] = 0.995
    far = teacher.clone()
    far[..., 0] = 0.6
    top, agree = torch.zeros(1, dtype=torch.long), torch.ones(1, dtype=torch.bool)
    (m_close,) = fidelity_metrics(teacher, close, top, agree)
    (m_far,) = fidelity_metrics(teacher, far, top, agree)
    assert m_close["r2_top"] < 0.5 and m_close["mae_top"] <= 0.02 and m_close["trustworthy"]
    assert m_far["mae_top"] > 0.02 and not m_far["trustworthy"]
