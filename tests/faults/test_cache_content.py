"""Row 1: a per-instance cache keyed by id alone explained a second batch on the first batch's
neighbours (default ids "0".."3" both times): weights 50-96% off, no warning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepvid_plugin.explain import DeepVID
from tests.callbacks.helpers import N_NEIGHBOURS, fitted_vae, small_cnn, tracked


def _engine(vae):
    return DeepVID(vae, n_neighbours=N_NEIGHBOURS, refine_steps=2)


def test_a_new_image_under_a_known_id_is_resampled_not_served_stale():
    torch.set_num_threads(1)
    vae, model = fitted_vae(), small_cnn().eval()
    x, _ = tracked(8)
    used = _engine(vae)
    first = used.explain(model, x[:4])  # ids "0".."3"
    with pytest.warns(UserWarning, match=r"ids: \['0', '1', '2', '3'\] were explained before "
                                         r"with other images"):
        again = used.explain(model, x[4:8])  # the same default ids, other images
    fresh = _engine(vae).explain(model, x[4:8])
    for a, b, old in zip(again, fresh, first, strict=True):
        # the same answer as an engine that never saw batch 1, to float tolerance ...
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(a.neighbours, b.neighbours)
        assert a.fidelity["deletion_auc"] == pytest.approx(b.fidelity["deletion_auc"])
        # ... and not batch 1's neighbours (the stale cache served exactly those)
        assert not np.array_equal(a.neighbours, old.neighbours)


def test_the_same_image_under_its_id_keeps_its_neighbours():
    # The point of the cache: fixed neighbours across epochs (no resampling, no warning).
    vae, model = fitted_vae(), small_cnn().eval()
    x, _ = tracked(2)
    engine = _engine(vae)
    a = engine.explain(model, x)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b = engine.explain(model, x.clone(), step=1)
    assert not [w for w in caught if "explained before" in str(w.message)]
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ra.neighbours, rb.neighbours)
