"""A teacher that only sees a planted region must get explanations whose weight sits in it.

The teachers multiply their input by a fixed mask (25% of the pixels) before a CNN or an MLP, so
nothing outside the region can move them. The explainer runs with its DEFAULT settings and the
default generator (a VAE fitted on the digits), and the threshold is fixed: at least 60% of the
student's absolute weight mass (all classes) inside the region. The old pure-VAE neighbourhood
must fail that same threshold on the CNN (measured 0.41 for both regions, against 0.76-0.78 for
the default), so the test can tell the two apart.
"""

import numpy as np
import pytest
import torch
from torch import nn

from deepvid_plugin.demo.digits import DigitsCNN, train_epoch
from deepvid_plugin.explain import DeepVID

MASS_THRESHOLD = 0.6
K = 16


def _mask(region: str) -> torch.Tensor:
    m = torch.zeros(1, 1, 8, 8)
    if region == "quadrant":
        m[..., :4, :4] = 1.0
    else:  # central vertical stripe: columns 3 and 4 of 8
        m[..., :, 3:5] = 1.0
    return m


class Masked(nn.Module):
    def __init__(self, inner: nn.Module, mask: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.register_buffer("mask", mask)

    def forward(self, x):
        return self.inner(x * self.mask)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.net(x)


def _region_mass(records, mask: torch.Tensor) -> float:
    assert records
    inside = mask[0, 0].numpy().astype(bool)
    mass = np.stack([np.abs(r.weights.astype(np.float64)).sum((0, 1)) for r in records])  # (K, H, W)
    return float(mass[:, inside].sum() / mass.sum())


@pytest.fixture(scope="module")
def teachers(digits):
    out = {}
    for arch in ("cnn", "mlp"):
        for region in ("quadrant", "stripe"):
            torch.manual_seed(0)
            model = Masked(DigitsCNN() if arch == "cnn" else MLP(), _mask(region))
            opt = torch.optim.Adam(model.parameters(), lr=3e-3)
            gen = torch.Generator().manual_seed(0)
            for _ in range(6):
                train_epoch(model, opt, digits.x_train, digits.y_train, generator=gen)
            out[arch, region] = model.eval()
    return out


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
@pytest.mark.parametrize("region", ["quadrant", "stripe"])
def test_default_explanations_sit_in_the_planted_region(digits, digits_vae, teachers, arch, region):
    explainer = DeepVID(digits_vae)  # the defaults at 8x8: VAE neighbours plus pixel jitter
    records = explainer.explain(teachers[arch, region], digits.x_test[:K])
    assert len(records) == K
    assert records[0].settings["features"] == "pixels"
    assert records[0].settings["neighbourhood"] == "vae+jitter"
    mass = _region_mass(records, _mask(region))
    assert mass >= MASS_THRESHOLD, (arch, region, mass)
    agreement = np.mean([r.fidelity["top1_agreement"] for r in records])
    assert agreement >= 0.9, agreement


@pytest.mark.parametrize("region", ["quadrant", "stripe"])
def test_pure_vae_neighbourhood_fails_the_same_threshold(digits, digits_vae, teachers, region):
    """The old behaviour: decoded neighbours only vary inside the VAE's latent subspace, so the
    student spreads weight over every pixel that co-varies there."""
    records = DeepVID(digits_vae, neighbourhood="vae").explain(teachers["cnn", region],
                                                               digits.x_test[:K])
    mass = _region_mass(records, _mask(region))
    assert mass < MASS_THRESHOLD, (region, mass)
