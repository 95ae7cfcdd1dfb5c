"""DeepVID (Wang et al., IEEE TVCG 2019), the core kind: a generator (a VAE) makes meaningful
neighbours of a tracked instance, the user's model labels them, and a linear student distilled
from those labels is the explanation, with its fidelity.

Exports load lazily, so ``methods.deepvid.kind`` imports without torch."""

from deepvid_plugin.core.lazy import exports

_EXPORTS = {"DeepVID": "engine", "DEFAULT_JITTER": "engine", "DEFAULT_N_NEIGHBOURS": "engine",
            "DeepVIDExplainer": "explainer", "VAE": "vae", "FitReport": "vae",
            "Generator": "generator", "PixelGenerator": "generator",
            "ExplanationRecord": "record", "randomization_check": "sanity",
            "RandomizationResult": "sanity"}
__all__ = sorted(_EXPORTS)
__getattr__ = exports(__name__, _EXPORTS)
