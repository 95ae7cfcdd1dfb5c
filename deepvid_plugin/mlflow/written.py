"""What an MLflow sink has written, kept so it can rebuild the run's viewer, index and bundles
without reading anything back from the server.

The encoded records and per-subject arrays live on disk (under the sink's spool, in the run's
own artifact layout: ``<kind>/records/<key>/<step>.dvid``, ``<kind>/subjects/<key>.dvia``), so a
long run costs disk, not memory; the summaries, labels and instance images stay in memory (the
overview needs them all anyway). Files are written once and replaced, never rewritten in place,
so an upload that links one keeps the bytes it was given.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from deepvid_plugin.core import kinds
from deepvid_plugin.core.record import Record, decode_arrays, encode_arrays
from deepvid_plugin.core.store import InstanceOverview, MetricSeries, RunOverview
from deepvid_plugin.mlflow import bundle, layout


def record_relpath(kind: str, key: str, step: int) -> str:
    """Where a record goes, relative to the run's ``deepvid/`` folder (and to the copy)."""
    return f"{kind}/records/{layout.record_file(key, step)}"


def subject_relpath(kind: str, key: str) -> str:
    return f"{kind}/subjects/{layout.paths(kind).subject_file(key)}"


class KindData:
    """What the sink wrote of one kind: summaries in memory, records' CRCs (bytes on disk)."""

    def __init__(self) -> None:
        self.class_names: list[str] = []
        self.labels: dict[str, Any] = {}
        self.images: dict[str, np.ndarray | None] = {}
        self.keys: dict[str, str] = {}  # subject -> layout key
        self.summaries: dict[str, dict[int, dict]] = {}
        self.crcs: dict[tuple[str, int], int] = {}  # (subject, step) -> CRC-32 of its record
        self.with_subject: set[str] = set()  # subjects whose per-subject arrays are on disk


class WrittenStore:
    """A :class:`~deepvid_plugin.core.store.RecordStore` over what an :class:`MLflowSink` has
    written (its copy under ``root``), so the viewer and the bundles can be rebuilt without
    reading anything back from the server."""

    def __init__(self, run: str, name: str, root: str):
        self.run, self.name, self.root = run, name, root
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

    def path(self, relpath: str) -> str:
        return os.path.join(self.root, relpath)

    def _save(self, relpath: str, data: bytes) -> None:
        path = self.path(relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # a new file: links to the old one keep their bytes

    def add(self, env: Record, key: str, summary: dict, blob: bytes,
            once: dict[str, np.ndarray]) -> bool:
        """Keep ``env`` (encoded as ``blob``, without its per-subject arrays ``once``); True
        when this call stored the subject's per-subject arrays for the first time."""
        data = self.by_kind.setdefault(env.kind, KindData())
        subject = env.subject
        header = kinds.subject_header(env)
        data.class_names = data.class_names or header["class_names"]
        if subject not in data.labels:
            data.images[subject] = header["image"]
            data.labels[subject] = header["label"]
            data.keys[subject] = key
        self._save(record_relpath(env.kind, key, env.step), blob)
        first = bool(once) and subject not in data.with_subject
        if first:
            self._save(subject_relpath(env.kind, key), encode_arrays(once))
            data.with_subject.add(subject)
        data.summaries.setdefault(subject, {})[env.step] = summary
        data.crcs[(subject, env.step)] = bundle.crc32(blob)
        return first

    def blob(self, kind: str, subject: str, step: int) -> bytes:
        data = self.by_kind[kind]
        with open(self.path(record_relpath(kind, data.keys[subject], step)), "rb") as f:
            return f.read()

    def subject_bytes(self, kind: str, subject: str) -> bytes | None:
        data = self.by_kind[kind]
        if subject not in data.with_subject:
            return None
        with open(self.path(subject_relpath(kind, data.keys[subject])), "rb") as f:
            return f.read()

    # ---- RecordStore -------------------------------------------------------------------------
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
        if run != self.run or data is None or (instance, step) not in data.crcs:
            raise KeyError((run, instance, step))
        env = Record.decode(self.blob(kind, instance, step))
        once = self.subject_bytes(kind, instance)
        if once is not None:
            env = env.with_arrays(decode_arrays(once))
        return kinds.view(env)


__all__ = ["KindData", "WrittenStore", "record_relpath", "subject_relpath"]
