"""Model-parameter randomization test (Adebayo et al. 2018) on the digits CNN."""

import numpy as np

from deepvid_plugin.explain import DeepVID, randomization_check
from deepvid_plugin.methods.deepvid.sanity import map_similarity, spearman


def test_spearman_basics():
    a = np.arange(10.0)
    assert spearman(a, a) == 1.0
    assert spearman(a, -a) == -1.0


def test_randomized_model_changes_explanations(digits, digits_cnn, digits_vae):
    x = digits.x_test[:12]
    ids = [f"t{i}" for i in range(12)]
    rand = randomization_check(DeepVID(digits_vae, seed=0), digits_cnn, x, ids=ids)
    # The same model explained with different neighbour samples: how stable the explainer is.
    again = map_similarity(DeepVID(digits_vae, seed=0).explain(digits_cnn, x, ids=ids),
                           DeepVID(digits_vae, seed=1).explain(digits_cnn, x, ids=ids))
    assert len(rand.spearman) == 12
    assert rand.mean < np.mean(again) - 0.2, (rand.mean, np.mean(again))
