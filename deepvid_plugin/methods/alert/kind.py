"""The ``alert`` kind: the explanation-drift alerts raised at one step (subject: the run).

Written by :class:`~deepvid_plugin.methods.alert.monitor.AlertMonitor` only at steps where a
detector fired, through the same sinks as every kind. No arrays; ``meta["alerts"]`` is a list of
``{"detector", "kind", "subject", "message", "evidence"}`` (see ``http_api.md``, ``GET alerts``).

Headline: the number of alerts at the step (lower is better). MLflow: the metric
``deepvid/alerts`` (per step) and the run tag ``deepvid.alerts`` (the latest alert's sentence).

Nothing here imports torch: readers load this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepvid_plugin.core import kinds
from deepvid_plugin.core.record import Record
from deepvid_plugin.mlflow import hooks as mlflow_hooks

NAME = "alert"
VERSION = 1
#: the subject of every alert record: alerts are about the run, not one instance.
SUBJECT = "run"
DETECTORS = ("hot_spot", "map_drift", "concept_shift", "graph_shift")
_FIELDS = ("detector", "kind", "subject", "message")


def _validate(record: Record) -> None:
    alerts = record.meta.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise ValueError(f"meta['alerts']: expected a non-empty list of alerts, got {alerts!r}")
    for i, a in enumerate(alerts):
        if not isinstance(a, dict) or not all(isinstance(a.get(f), str) and a.get(f)
                                               for f in _FIELDS):
            raise ValueError(f"meta['alerts'][{i}]: expected a dict with non-empty str "
                             f"{list(_FIELDS)}, got {a!r}")
        if a["detector"] not in DETECTORS:
            raise ValueError(f"meta['alerts'][{i}]['detector']: expected one of "
                             f"{list(DETECTORS)}, got {a['detector']!r}")
        if not isinstance(a.get("evidence", {}), dict):
            raise ValueError(f"meta['alerts'][{i}]['evidence']: expected a dict, got "
                             f"{a.get('evidence')!r}")


def _summarize(record: Record, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    # The alerts themselves are small (a sentence and a few links each): the overview carries
    # them whole, so the alerts route and the timeline's markers need no record reads.
    alerts = [dict(a) for a in record.meta["alerts"]]
    return {"alerts": alerts, "headline": float(len(alerts))}


KIND = kinds.register(kinds.Kind(
    name=NAME,
    version=VERSION,
    subject="model",
    arrays={},
    summarize=_summarize,
    validate=_validate,
    headline="explanation-drift alerts at the step",
    higher_is_better=False,
))


def _metrics(record: Record, summary: Mapping[str, Any]) -> dict[str, Any]:
    return {"alerts": float(len(record.meta["alerts"]))}


def _tags(record: Record) -> dict[str, str]:
    last = record.meta["alerts"][-1]
    return {"deepvid.alerts": f"step {record.step}: {last['message']}"[:4900]}


mlflow_hooks.register(NAME, mlflow_hooks.MLflowHooks(metrics=_metrics, headline_metric="alerts",
                                                     tags=_tags, run_metrics=True))

__all__ = ["DETECTORS", "KIND", "NAME", "SUBJECT", "VERSION"]
