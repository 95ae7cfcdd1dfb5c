"""What an MLflow sink has written, kept so it can rebuild the run's viewer, index and bundles
without reading anything back from the server."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepvid_plugin.core import kinds
from deepvid_plugin.core.record import Record
from deepvid_plugin.core.store import InstanceOverview, MetricSeries, RunOverview


class KindData:
    """What the sink wrote of one kind: summaries, encoded records and per-subject arrays."""

    def __init__(self) -> None:
        self.class_names: list[str] = []
        self.labels: dict[str, Any] = {}
        self.images: dict[str, np.ndarray | None] = {}
        self.summaries: dict[str, dict[int, dict]] = {}
        self.blobs: dict[tuple[str, int], bytes] = {}  # encoded without per-subject arrays
        self.once: dict[str, dict[str, np.ndarray]] = {}  # subject -> per-subject arrays


class WrittenStore:
    """A :class:`~deepvid_plugin.core.store.RecordStore` over what an :class:`MLflowSink` has
    written, so the viewer and the bundles can be rebuilt without reading anything back from the
    server.

    Records are kept as their encoded bytes (what was uploaded, reused for the bundles) and
    decoded only for the few the viewer carries in full.
    """

    def __init__(self, run: str, name: str):
        self.run, self.name = run, name
        self.by_kind: dict[str, KindData] = {}
        self.scalars: dict[str, dict[int, float]] = {}  # the run's own metrics, name -> step

    def add_metrics(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.scalars.setdefault(name, {})[int(step)] = float(value)

    def metrics(self, run: str) -> list[MetricSeries]:
        if run != self.run:
            raise KeyError(run)
        return [MetricSeries(n, sorted(v), [v[s] for s in sorted(v)])
                for n, v in sorted(self.scalars.items())]

    def add(self, env: Record, summary: dict, blob: bytes,
            once: dict[str, np.ndarray]) -> None:
        data = self.by_kind.setdefault(env.kind, KindData())
        subject = env.subject
        header = kinds.subject_header(env)
        data.class_names = data.class_names or header["class_names"]
        if subject not in data.labels:
            data.images[subject] = header["image"]
            data.labels[subject] = header["label"]
        if once and subject not in data.once:
            data.once[subject] = once
        data.summaries.setdefault(subject, {})[env.step] = summary
        data.blobs[(subject, env.step)] = blob

    def runs(self) -> list[tuple[str, str]]:
        return [(self.run, self.name)] if self.by_kind else []

    def kinds(self, run: str) -> list[str]:
        if run != self.run or not self.by_kind:
            raise KeyError(run)
        return list(self.by_kind)

    def overview(self, run: str, *, kind: str, instance: str | None = None) -> RunOverview:
        data = self.by_kind.get(kind)
        if run != self.run or data is None:
            raise KeyError(run)
        blank = np.zeros((1, 1, 1), np.float32)
        rows = [InstanceOverview(iid, data.labels[iid],
                                 data.images[iid] if data.images[iid] is not None else blank,
                                 [s for _, s in sorted(steps.items())])
                for iid, steps in data.summaries.items()
                if instance is None or iid == instance]
        return RunOverview(list(data.class_names), rows, [])

    def record(self, run: str, instance: str, step: int, *, kind: str) -> Any:
        data = self.by_kind.get(kind)
        if run != self.run or data is None:
            raise KeyError(run)
        env = Record.decode(data.blobs[(instance, step)])
        if instance in data.once:
            env = env.with_arrays(data.once[instance])
        return kinds.view(env)


__all__ = ["KindData", "WrittenStore"]
