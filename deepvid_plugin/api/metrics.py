"""The ``metrics`` route: the run's own scalar metrics (test accuracy, loss), so the UI can show
the first clue (the accuracy drops) above the explanations, on the same step axis.

Every store serves them from what the user logged: TensorBoard's scalars (the callback's
``log_metrics`` or the user's own ``SummaryWriter``), MLflow's metrics (``mlflow.log_metric``),
the metrics a snapshot was built with. DeepVID's own numbers (``deepvid/...``) are left out:
they are what the views draw already.
"""

from __future__ import annotations

import math
from typing import Any

from deepvid_plugin.api.params import ApiError
from deepvid_plugin.core.store import MetricSeries, NoDataError, RecordStore

#: points per series at most; a longer series keeps evenly spaced points and its last one, as
#: TensorBoard's own reservoir keeps a chart's shape.
MAX_POINTS = 1000
#: series per run at most (a run logging hundreds of metrics gets its first ones by name).
MAX_SERIES = 64


def thin(steps: list[int], values: list[float], limit: int = MAX_POINTS) -> tuple[list, list]:
    """At most ``limit`` points of a series, evenly spaced, first and last kept."""
    n = len(steps)
    if n <= limit:
        return list(steps), list(values)
    picks = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return [steps[i] for i in picks], [values[i] for i in picks]


def _series_json(m: MetricSeries) -> dict[str, Any] | None:
    points = sorted((int(s), float(v)) for s, v in zip(m.steps, m.values, strict=False)
                    if isinstance(v, (int, float)) and math.isfinite(float(v)))
    by_step = dict(points)  # a step logged twice: the last value, as TensorBoard draws it
    if not by_step:
        return None
    steps, values = thin(list(by_step), [float(f"{v:.5g}") for v in by_step.values()])
    return {"name": m.name, "steps": steps, "values": values}


def metrics_impl(store: RecordStore, run: str) -> dict[str, Any]:
    """``{"run", "metrics": [{"name", "steps", "values"}], "warnings"}``, sorted by name."""
    read = getattr(store, "metrics", None)
    warns: list[str] = []
    if read is None:  # a store written before the metrics route: no metrics, not an error
        return {"run": run, "metrics": [], "warnings": warns}
    try:
        series = read(run)
    except NoDataError:
        series = []
    except KeyError:
        raise ApiError(404, f"run {run!r} not found") from None
    out = [j for j in (_series_json(m) for m in sorted(series, key=lambda m: m.name)) if j]
    if len(out) > MAX_SERIES:
        warns.append(f"run {run!r} logs {len(out)} metrics; showing the first {MAX_SERIES} "
                     "by name")
        out = out[:MAX_SERIES]
    return {"run": run, "metrics": out, "warnings": warns}


__all__ = ["MAX_POINTS", "metrics_impl", "thin"]
