"""The store protocol: what a backend implements so the API can serve it.

Backends (the TensorBoard data provider, MLflow artifacts, records in memory) implement
:class:`RecordStore`; :mod:`.routes` builds every response from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import numpy as np

from deepvid_plugin.core import kinds
from deepvid_plugin.core.record import Record


class NoDataError(KeyError):
    """Raised by :meth:`RecordStore.overview` when the run exists but holds no data of the kind
    asked for, so the API can say so instead of "run not found" (a plain ``KeyError`` means an
    unknown run). Its message, shown to people as it is, names the run and says why."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is meant for people
        return str(self.args[0]) if self.args else "no data of this kind"


@dataclasses.dataclass
class InstanceOverview:
    """One tracked instance of a run: what the overview row needs."""

    id: str
    label: int | None
    image: np.ndarray  # (C, H, W), model input space
    steps: list[dict[str, Any]]  # step_summary dicts, sorted by step


@dataclasses.dataclass
class MetricSeries:
    """One of a run's own scalar metrics (test accuracy, loss): what the user logged beside the
    explanations, not DeepVID's numbers. ``steps`` ascending, ``values`` finite."""

    name: str
    steps: list[int]
    values: list[float]


@dataclasses.dataclass
class RunOverview:
    class_names: list[str]
    instances: list[InstanceOverview]
    warnings: list[str] = dataclasses.field(default_factory=list)


class RecordStore(Protocol):
    """Where a backend keeps records. Everything the API serves comes through these calls.

    Every store is generic over explanation kinds (:mod:`deepvid_plugin.core.kinds`): ``overview``
    and ``record`` take the ``kind`` to read, and ``kinds(run)`` lists what a run holds.
    """

    def runs(self) -> list[tuple[str, str]]:
        """``(run, display name)`` for every run that holds DeepVID data (of any kind)."""
        ...

    def kinds(self, run: str) -> list[str]:
        """The kinds ``run`` holds data of (registered ones first). ``KeyError``: unknown run."""
        ...

    def overview(self, run: str, *, kind: str, instance: str | None = None) -> RunOverview:
        """Class names and every subject's step summaries of ``kind`` in ``run``.

        ``instance``, when given, is a hint: the store MAY return only that instance (the timeline
        route passes it), and must still include it when it exists.

        Raises:
            NoDataError: ``run`` exists but holds no data of ``kind``.
            KeyError: ``run`` is unknown.
        """
        ...

    def metrics(self, run: str) -> list[MetricSeries]:
        """The run's own scalar metrics (TensorBoard scalars, MLflow metrics), without DeepVID's
        own (``deepvid/...``), each series in step order. ``KeyError``: unknown run. A store
        that predates metrics may lack this method: the API then serves none."""
        ...

    def record(self, run: str, instance: str, step: int, *, kind: str) -> Any:
        """The full record as its kind's typed view (``Kind.view``; the
        :class:`~deepvid_plugin.core.record.Record` envelope for kinds without one), with its
        once-per-subject arrays put back when the store has them.

        Raises:
            KeyError: the run, instance or step is unknown.
            NewerSchemaError, RecordDecodeError: the stored bytes cannot be read
                (``UnsupportedKindError``, a ``RecordDecodeError``: unknown kind or newer
                ``kind_version``).
        """
        ...


class MemoryStore:
    """A :class:`RecordStore` over records held in memory: ``{run: [record, ...]}``.

    Records may be of any registered kind: :class:`~deepvid_plugin.core.record.Record`
    envelopes or typed views (DeepVID's ``ExplanationRecord``). Used for tests and for building a viewer
    snapshot straight from records; it computes step summaries exactly as the sinks do.

    Example::

        >>> import numpy as np
        >>> from deepvid_plugin.core.store import MemoryStore
        >>> from deepvid_plugin.core import kinds
        >>> rec = kinds.get("gradcam").record(
        ...     "a", 0, {"cam_pred": np.ones((4, 4)), "probs": [0.9, 0.1]},
        ...     meta={"class_names": ["cat", "dog"], "pred": 0, "layer": "conv"})
        >>> store = MemoryStore({"run1": [rec]})
        >>> store.kinds("run1"), store.overview("run1", kind="gradcam").instances[0].id
        (['gradcam'], 'a')
    """

    def __init__(self, runs: Mapping[str, Iterable[Any]],
                 names: Mapping[str, str] | None = None,
                 metrics: Mapping[str, Iterable[MetricSeries]] | None = None):
        # run -> kind -> (subject, step) -> envelope
        self._records: dict[str, dict[str, dict[tuple[str, int], Record]]] = {}
        for run, records in runs.items():
            by_kind: dict[str, dict[tuple[str, int], Record]] = {}
            for rec in records:
                try:
                    _, env = kinds.prepare(rec)
                except TypeError:
                    raise TypeError(f"runs[{run!r}]: expected Records (or typed views), "
                                    f"got {type(rec).__name__}") from None
                by_kind.setdefault(env.kind, {})[(env.subject, env.step)] = env
            self._records[str(run)] = by_kind
        self._names = dict(names or {})
        self._metrics = {str(r): list(m) for r, m in (metrics or {}).items()}
        for run in self._metrics:
            if run not in self._records:
                raise ValueError(f"metrics: run {run!r} is not one of the runs {sorted(self._records)}")

    def runs(self) -> list[tuple[str, str]]:
        return [(r, self._names.get(r, r)) for r in self._records]

    def kinds(self, run: str) -> list[str]:
        """The kinds ``run`` holds records of, in registry order (unknown ones cannot be held:
        the constructor validates every record)."""
        held = self._records[run]
        return [k for k in kinds.names() if held.get(k)]

    def overview(self, run: str, *, kind: str, instance: str | None = None) -> RunOverview:
        by_kind = self._records[run]
        records = by_kind.get(kind, {})
        if not records:
            raise NoDataError(f"run {run!r} has no {kind} data (it was given no {kind} records)")
        class_names: list[str] = []
        rows: dict[str, InstanceOverview] = {}
        previous: dict[str, dict] = {}
        for (iid, _step), env in sorted(records.items(), key=lambda kv: kv[0][1]):
            header = kinds.subject_header(env)
            class_names = class_names or header["class_names"]
            image = header["image"] if header["image"] is not None else np.zeros((1, 1, 1))
            row = rows.setdefault(iid, InstanceOverview(iid, header["label"], image, []))
            summary = kinds.summarize(env, previous.get(iid))
            row.steps.append(summary)
            previous[iid] = summary
        return RunOverview(class_names, list(rows.values()), [])

    def metrics(self, run: str) -> list[MetricSeries]:
        if run not in self._records:
            raise KeyError(run)
        return list(self._metrics.get(run, []))

    def record(self, run: str, instance: str, step: int, *, kind: str) -> Any:
        """The typed view of the record (its kind's ``view``)."""
        return kinds.view(self._records[run][kind][(instance, step)])
