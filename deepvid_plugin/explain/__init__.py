"""The DeepVID method: generator, neighbours, student, fidelity. No I/O, no UI."""

from deepvid_plugin.explain.deepvid import DeepVID
from deepvid_plugin.explain.fidelity import (
    TRUST_MAX_MAE,
    TRUST_MIN_AGREEMENT,
    TRUST_MIN_R2,
    fidelity_metrics,
)
from deepvid_plugin.explain.generator import Generator, PixelGenerator
from deepvid_plugin.explain.sanity import RandomizationResult, randomization_check, randomize_model
from deepvid_plugin.explain.vae import VAE, FitReport

__all__ = [
    "DeepVID",
    "VAE",
    "FitReport",
    "Generator",
    "PixelGenerator",
    "RandomizationResult",
    "TRUST_MAX_MAE",
    "TRUST_MIN_AGREEMENT",
    "TRUST_MIN_R2",
    "fidelity_metrics",
    "randomization_check",
    "randomize_model",
]
