"""What the MLflow sink logs at each step beyond the artifacts: which metrics and which images.

MLflow's UI lists every metric key of a run on its page and gives each a chart, and every image
key a card; the sink used to log a few numbers per subject (110 keys in the demo's experiment,
27 chart sections) and an image per subject at every step. So by default:

- **metrics**: run-level summaries only, a handful per kind, each with a name that says what it
  is: the mean of the kind's headline (``deepvid/fidelity_mean``,
  ``deepvid/gradcam/deletion_auc_mean``, ``deepvid/summit/stability_mean``), the mean deletion
  AUC where the kind has faithfulness evidence, and the share of subjects whose explanation can
  be trusted (``deepvid/trusted_share``, ``deepvid/gradcam/trusted_share``). At most 10 keys for
  the demo's distilled run, which holds every kind. Per-subject numbers
  (``deepvid/fidelity/<key>``, ...) are opt-in: ``MLflowSink(subject_metrics=True)``.
- **images**: a subject's step image at its first step, wherever its prediction changes, and at
  its last step (drawn at ``close``), not at every step: MLflow's slider then steps through the
  moments that matter. ``log_images="all"`` keeps every step.

Imports nothing of MLflow: the sink builds ``Metric`` objects from what this returns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from deepvid_plugin.core import kinds
from deepvid_plugin.core.record import Record
from deepvid_plugin.mlflow import hooks, layout

#: ``log_images`` values: every step, or the first, changed and last steps (default).
IMAGE_MODES = ("changes", "all")


def run_metric_names(kind: kinds.Kind) -> list[str]:
    """The run-level metrics ``kind`` logs (names within its ``deepvid/<kind>/``): the mean of
    its headline, the mean deletion AUC when the headline is another number, and the share of
    trusted subjects for instance kinds (the others have no trust verdict)."""
    backend = hooks.of(kind)
    if backend.run_metrics:  # its records are about the run already: nothing to average
        return []
    names = [f"{backend.headline_metric}_mean"]
    if kind.subject == "instance":
        if backend.headline_metric != "deletion_auc":
            names.append("deletion_auc_mean")
        names.append("trusted_share")
    return names


def step_metrics(items: Iterable[tuple[kinds.Kind, Record, Mapping[str, Any], str]],
                 subject_metrics: bool = False) -> dict[str, float]:
    """``{metric key: value}`` of one step from its buffered ``(kind, record, summary, key)``s:
    the run-level summaries of every kind, plus each subject's numbers when
    ``subject_metrics``."""
    out: dict[str, float] = {}
    by_kind: dict[str, list[tuple[kinds.Kind, Record, Mapping[str, Any], str]]] = {}
    for item in items:
        by_kind.setdefault(item[0].name, []).append(item)
    for name, group in by_kind.items():
        kind = group[0][0]
        backend = hooks.of(kind)
        values: dict[str, list[float]] = {}
        verdicts: list[bool] = []
        for _, env, summary, key in group:
            numbers = hooks.metrics(kind, env, summary)
            if backend.run_metrics:  # e.g. deepvid/alerts: one number about the whole run
                out.update({layout.run_metric(layout.LEGACY_KIND, n): v
                            for n, v in numbers.items()})
                continue
            for metric_name, value in numbers.items():
                values.setdefault(metric_name, []).append(value)
                if subject_metrics:
                    out[layout.metric(name, metric_name, key,
                                      backend.subject_first_metrics)] = value
            if isinstance(summary.get("trustworthy"), bool):
                verdicts.append(summary["trustworthy"])
        for run_name in run_metric_names(kind):
            if run_name == "trusted_share":
                value = float(np.mean(verdicts)) if verdicts else None
            else:
                found = values.get(run_name[:-len("_mean")], [])
                value = float(np.mean(found)) if found else None
            if value is not None and math.isfinite(value):
                out[layout.run_metric(name, run_name)] = value
    return out


class ImagePlan:
    """Which steps of each subject get a step image: its first, wherever its prediction changed,
    and its last (drawn at ``close``, from the record kept here until then), or every step."""

    def __init__(self, mode: str = "changes"):
        if mode not in IMAGE_MODES:
            raise ValueError(f"log_images: expected True, False or one of {IMAGE_MODES}, "
                             f"got {mode!r}")
        self.mode = mode
        self._seen: set[tuple[str, str]] = set()
        self._last: dict[tuple[str, str], tuple[int, Record, bool]] = {}

    def due(self, kind: str, subject: str, step: int, env: Record,
            summary: Mapping[str, Any]) -> bool:
        """Whether to draw this step now; otherwise it is kept as the subject's latest."""
        key = (kind, subject)
        now = self.mode == "all" or key not in self._seen or bool(summary.get("changed"))
        self._seen.add(key)
        self._last[key] = (step, env, now)
        return now

    def at_close(self) -> list[tuple[str, str, int, Record]]:
        """The last step of each subject whose image was not drawn yet."""
        out = [(kind, subject, step, env) for (kind, subject), (step, env, drawn)
               in self._last.items() if not drawn]
        self._last = {k: (s, e, True) for k, (s, e, _) in self._last.items()}
        return out


__all__ = ["IMAGE_MODES", "ImagePlan", "run_metric_names", "step_metrics"]
