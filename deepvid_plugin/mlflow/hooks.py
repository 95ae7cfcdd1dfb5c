"""What the MLflow sink does with each kind beyond the registry's description: its metrics and
its step image. A kind registers its hooks here (from its own ``kind.py``); a kind that registers
none gets the defaults below. The registry (:mod:`deepvid_plugin.core.kinds`) describes data,
not backends, so a new MLflow feature changes this module, never every kind.

Imports nothing of MLflow (kind modules import this one, and the TensorBoard reader loads kinds).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from deepvid_plugin.core import kinds
from deepvid_plugin.core.hooks import HookTable
from deepvid_plugin.core.record import Record


@dataclasses.dataclass(frozen=True)
class MLflowHooks:
    """One kind's MLflow hooks.

    Attributes:
        metrics: ``(record, summary) -> {name: number}`` logged per subject; default: the
            summary's ``headline``.
        headline_metric: which of ``metrics`` is the headline at full precision (the summary
            rounds it); the sink also logs its mean over subjects.
        step_image: ``record -> (H, W, 3) uint8`` picture for MLflow's image slider (``None``:
            the kind logs no images).
        subject_first_metrics: metric names put the subject before the number,
            ``deepvid/<kind>/<subject>/<name>``; ``None`` means: for layer, class and model kinds
            (a few named subjects, each gathering its numbers), not for instance kinds (one
            number's many instances sit together).
        tags: ``record -> {tag: value}`` run tags the record sets (the alert kind's latest
            sentence); default: none.
        run_metrics: the kind's records describe the whole run (the alert kind's): its metrics
            are named ``deepvid/<name>``, with no subject and no mean over subjects.
    """

    metrics: Callable[[Record, Mapping[str, Any]], Mapping[str, Any]] | None = None
    headline_metric: str = "headline"
    step_image: Callable[[Record], np.ndarray] | None = None
    subject_first_metrics: bool | None = None
    tags: Callable[[Record], Mapping[str, str]] | None = None
    run_metrics: bool = False


_table: HookTable[MLflowHooks] = HookTable("MLflow hooks", MLflowHooks)


def register(kind: str, hooks: MLflowHooks) -> MLflowHooks:
    """Set the MLflow hooks of ``kind`` (its ``kind.py`` calls this once, at import)."""
    return _table.register(kind, hooks)


def of(kind: kinds.Kind) -> MLflowHooks:
    """The hooks of ``kind``, defaults filled in."""
    hooks = _table.get(kind.name) or MLflowHooks()
    if hooks.subject_first_metrics is None:
        hooks = dataclasses.replace(hooks, subject_first_metrics=kind.subject != "instance")
    return hooks


def metrics(kind: kinds.Kind, record: Record, summary: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of ``record`` its kind logs as MLflow metrics."""
    hooks = of(kind)
    raw = hooks.metrics(record, summary) if hooks.metrics is not None \
        else {"headline": summary.get("headline")}
    return {name: float(v) for name, v in raw.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


__all__ = ["MLflowHooks", "metrics", "of", "register"]
