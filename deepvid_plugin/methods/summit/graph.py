"""Personalised PageRank over an edge list, and the Jaccard index of two node sets.

PageRank follows networkx's definition exactly (weighted out-edges normalised per node,
dangling nodes redistributed by the personalisation vector, stopping when the L1 change is below
``N * tol``), so the tests can compare with networkx without the library depending on it.
"""

from __future__ import annotations

import numpy as np


def pagerank(n: int, sources: np.ndarray, targets: np.ndarray, weights: np.ndarray,
             personalization: np.ndarray, alpha: float = 0.85, max_iter: int = 100,
             tol: float = 1e-6) -> np.ndarray:
    """Personalised PageRank of ``n`` nodes over weighted directed edges ``source -> target``.

    Parallel edges add up. Raises ``ValueError`` for a personalisation without mass and
    ``RuntimeError`` when the power iteration does not converge in ``max_iter`` steps.
    """
    sources = np.asarray(sources, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    p = np.asarray(personalization, dtype=np.float64)
    if p.shape != (n,) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"personalization: expected {n} non-negative values with a positive sum, "
                         f"got shape {p.shape} and sum {p.sum() if p.size else 0}")
    if not (sources.shape == targets.shape == weights.shape):
        raise ValueError(f"edges: expected sources, targets and weights of one length, got "
                         f"{sources.shape}, {targets.shape}, {weights.shape}")
    p = p / p.sum()
    out_weight = np.bincount(sources, weights=weights, minlength=n)
    dangling = out_weight == 0
    norm = weights / np.where(out_weight[sources] > 0, out_weight[sources], 1.0)
    x = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        last = x
        spread = np.bincount(targets, weights=last[sources] * norm, minlength=n)
        x = alpha * (spread + last[dangling].sum() * p) + (1 - alpha) * p
        if np.abs(x - last).sum() < n * tol:
            return x
    raise RuntimeError(f"pagerank: power iteration did not converge in {max_iter} iterations")


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b|; two empty sets are identical (1.0)."""
    union = a | b
    return 1.0 if not union else len(a & b) / len(union)
