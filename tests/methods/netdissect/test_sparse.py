"""Network Dissection's live-maps-only upsampling gives the same dissection, bit for bit, as
upsampling every map; and the bound that decides which maps can be skipped is safe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deepvid_plugin.methods.netdissect import ConceptSet, NetDissect
from deepvid_plugin.methods.netdissect import batch as dissect_mod


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _net() -> nn.Module:
    """64-unit layers at 8x8, 4x4 and 2x2 (upsampled to the 32x32 labels), one of them taken
    before its ReLU so that maps and thresholds can be negative."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=4, padding=1), nn.ReLU(),        # 1: 8x8, >= 0
        nn.Conv2d(64, 64, 3, stride=2, padding=1),                   # 2: 4x4, signed
        nn.ReLU(), nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),  # 5: 2x2
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


@pytest.mark.filterwarnings("ignore:layer '5'")  # 2x2 maps: the small-map warning
@pytest.mark.parametrize("quantile", [0.005, 0.2])  # few live maps, and many
def test_live_maps_only_equals_upsampling_every_map(monkeypatch, quantile):
    probe = ConceptSet.synthetic(150, 32, seed=2)
    model = _net()
    layers = ["1", "2", "5"]
    calls = []
    real = dissect_mod._upsampled_live

    def spy(*args, **kwargs):
        calls.append(args[2].float().mean().item())  # share of live maps in the chunk
        return real(*args, **kwargs)

    monkeypatch.setattr(dissect_mod, "_upsampled_live", spy)
    fast = NetDissect(probe, layers, quantile=quantile, batch_size=40).dissect(model)
    assert len(calls) == 3 * 4  # every upsampled layer, every batch, took the sparse path
    assert 0 < min(calls) and max(calls) < 1  # and some maps were skipped, some were not
    monkeypatch.setattr(dissect_mod, "_sparse_upsample", lambda a, units: False)
    full = NetDissect(probe, layers, quantile=quantile, batch_size=40).dissect(model)
    assert len(calls) == 12
    assert [r.layer for r in fast] == [r.layer for r in full] == layers
    for a, b in zip(fast, full, strict=True):
        np.testing.assert_array_equal(a.thresholds, b.thresholds)
        np.testing.assert_array_equal(a.iou, b.iou)
        np.testing.assert_array_equal(a.mask_fraction, b.mask_fraction)
        np.testing.assert_array_equal(a.top_images, b.top_images)
        assert a.units == b.units and a.unique_detectors == b.unique_detectors
        assert a.mask_fraction.max() > 0


def test_a_map_judged_below_its_threshold_never_exceeds_it_upsampled():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 64, 4, 4, generator=g)
    a[:4].clamp_(max=0)  # all-non-positive maps
    peak = a.amax((2, 3))
    up = F.interpolate(a, size=(32, 32), mode="bilinear", align_corners=False).amax((2, 3))
    # thresholds at, just above and well above each unit's peak in image 0..15
    for thr_of in (lambda p: p, lambda p: p + p.abs() * 2e-5, lambda p: p * 0.9,
                   lambda p: torch.zeros_like(p)):
        for img in range(16):
            thr = thr_of(peak[img])
            live = dissect_mod._may_exceed(peak, thr)
            assert not ((up > thr[None, :]) & ~live).any()
    # a threshold equal to the peak keeps the map live: rounding could lift a sample over it
    assert dissect_mod._may_exceed(peak, peak[5])[5].all()
