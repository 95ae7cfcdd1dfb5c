"""Model-parameter randomization test (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018).

An explanation method that is faithful to the model must change when the model's weights are
replaced by random ones. We explain the same instances with the trained model and with a
re-initialised copy and report the Spearman rank correlation between the two absolute weight maps
of the trained model's predicted class. Low correlation = the explainer depends on the model
(good); high correlation = it mostly reflects the input or the generator.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from deepvid_plugin.core.sanity import randomize_model
from deepvid_plugin.methods.deepvid.record import ExplanationRecord


@dataclasses.dataclass(frozen=True)
class RandomizationResult:
    spearman: tuple[float, ...]  # one per instance

    @property
    def mean(self) -> float:
        return float(np.nanmean(self.spearman))  # NaN: a class the record did not keep

    def __str__(self) -> str:
        return (f"randomization check: mean Spearman {self.mean:.3f} between explanations of the "
                f"trained and a re-initialised model (low is good)")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two arrays (flattened)."""
    ra = np.argsort(np.argsort(a.ravel(), kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b.ravel(), kind="stable"), kind="stable").astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def map_similarity(a: list[ExplanationRecord], b: list[ExplanationRecord]) -> tuple[float, ...]:
    """Spearman between the |weights| of ``a``'s predicted class in ``a`` and in ``b`` (per
    pixel and channel, or per region); NaN where ``b`` did not keep that class."""
    out = []
    for ra, rb in zip(a, b, strict=True):
        wa, wb = ra.class_weights(ra.predicted), rb.class_weights(ra.predicted)
        out.append(float("nan") if wa is None or wb is None else
                   spearman(np.abs(wa.astype(np.float32)), np.abs(wb.astype(np.float32))))
    return tuple(out)


def randomization_check(explainer, model: torch.nn.Module, x: torch.Tensor, ids=None,
                        seed: int = 0) -> RandomizationResult:
    """Spearman correlation between explanations of ``model`` and of a re-initialised copy."""
    trained = explainer.explain(model, x, ids=ids)
    randomized = explainer.explain(randomize_model(model, seed), x, ids=ids)
    return RandomizationResult(map_similarity(trained, randomized))
