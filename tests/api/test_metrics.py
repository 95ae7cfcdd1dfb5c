"""The ``metrics`` route: the run's own scalars (test accuracy, loss) beside the explanations,
served by every store from what the user logged."""

from __future__ import annotations

import json
import math

import pytest

from deepvid_plugin import api
from deepvid_plugin.api.metrics import MAX_POINTS, thin
from deepvid_plugin.core.sink import scalar_metrics
from deepvid_plugin.core.store import MemoryStore, MetricSeries
from tests.factories import make_record


def _store(metrics):
    return MemoryStore({"r1": [make_record("a", 0)], "r2": [make_record("a", 0)]},
                       metrics={"r1": metrics})


def test_series_sorted_by_name_and_step_with_non_finite_points_left_out():
    store = _store([MetricSeries("train_loss", [2, 0, 1], [0.5, 2.0, float("nan")]),
                    MetricSeries("test_accuracy", [0, 1, 1], [0.1, 0.2, 0.93333333])])
    body, status = api.respond(store, "metrics", {"run": "r1"})
    assert status == 200 and body["run"] == "r1" and body["warnings"] == []
    assert body["metrics"] == [
        {"name": "test_accuracy", "steps": [0, 1], "values": [0.1, 0.93333]},  # last value wins
        {"name": "train_loss", "steps": [0, 2], "values": [2.0, 0.5]}]
    json.dumps(body, allow_nan=False)
    # a run without metrics has none; an unknown run is a 404 naming it
    assert api.respond(store, "metrics", {"run": "r2"})[0]["metrics"] == []
    body, status = api.respond(store, "metrics", {"run": "nope"})
    assert status == 404 and "'nope'" in body["error"]
    body, status = api.respond(store, "metrics", {})
    assert status == 400 and "'run'" in body["error"]


def test_long_series_are_thinned_keeping_both_ends():
    steps = list(range(5 * MAX_POINTS))
    kept, values = thin(steps, [float(s) for s in steps])
    assert len(kept) == MAX_POINTS and kept[0] == 0 and kept[-1] == steps[-1]
    assert values == [float(s) for s in kept] and kept == sorted(set(kept))
    assert thin([1, 2], [3.0, 4.0]) == ([1, 2], [3.0, 4.0])


def test_a_store_without_metrics_serves_none():
    class Old(MemoryStore):
        metrics = None  # a store written before the route

    store = Old({"r1": [make_record("a", 0)]})
    assert api.respond(store, "metrics", {"run": "r1"}) == (
        {"run": "r1", "metrics": [], "warnings": []}, 200)


def test_snapshot_carries_each_runs_metrics():
    store = _store([MetricSeries("test_accuracy", [0, 1], [0.5, 0.75])])
    snap = api.snapshot(store)
    assert snap["metrics?run=r1"]["metrics"][0]["values"] == [0.5, 0.75]
    assert snap["metrics?run=r2"]["metrics"] == []


def test_metric_values_are_checked():
    assert scalar_metrics({"acc": 1, "loss": 0.5}) == {"acc": 1.0, "loss": 0.5}
    with pytest.raises(ValueError, match="deepvid/fidelity"):
        scalar_metrics({"deepvid/fidelity": 1.0})
    with pytest.raises(TypeError, match=r"values\['acc'\]: expected a number, got str"):
        scalar_metrics({"acc": "high"})
    with pytest.raises(TypeError, match="non-empty str"):
        scalar_metrics({"": 1.0})
    with pytest.raises(TypeError, match="mapping"):
        scalar_metrics([("acc", 1.0)])
    assert math.isnan(scalar_metrics({"x": float("nan")})["x"])  # logged; readers skip it
    with pytest.raises(ValueError, match="metrics: run 'r9'"):
        MemoryStore({"r1": [make_record("a", 0)]}, metrics={"r9": []})
