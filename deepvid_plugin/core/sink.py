"""The sink protocol: *where* records go, kept apart from *what* is explained (ignite-style).

A sink takes records of any registered kind (:class:`~deepvid_plugin.core.record.Record`
envelopes, or typed views with ``to_record()`` such as DeepVID's ``ExplanationRecord``) and
persists them; what a kind stores once per subject and how it is summarised comes from
:mod:`deepvid_plugin.core.kinds`. The TensorBoard sink (:class:`deepvid_plugin.tensorboard.summary.TensorBoardSink`) and the MLflow sink
(:class:`deepvid_plugin.mlflow.sink.MLflowSink`) implement it and pass one shared test suite
(``tests/test_sink_contract.py``), once per registered kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Sink(Protocol):
    """Anything that can persist explanation records.

    ``write`` may buffer; ``flush`` makes everything written so far visible to readers;
    ``close`` flushes and releases resources, and is idempotent.

    A sink may also take the run's own scalar metrics, ``log_metrics({name: value}, step)``
    (test accuracy, loss), so the UI can show them beside the explanations on the same steps;
    the callbacks call it where it exists (:func:`logs_metrics`).
    """

    def write(self, record: Any, step: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def logs_metrics(sink: Any) -> bool:
    """Whether ``sink`` takes the run's scalar metrics (an optional ``log_metrics``)."""
    return callable(getattr(sink, "log_metrics", None))


#: metric names a user may not log: DeepVID's own numbers live there, and readers leave them out.
RESERVED_PREFIX = "deepvid/"


def scalar_metrics(values: Any) -> dict[str, float]:
    """``values`` for ``log_metrics``, checked: metric names (non-empty, not under ``deepvid/``)
    to numbers (a 0-d tensor's ``.item()`` too)."""
    if not isinstance(values, Mapping):
        raise TypeError(f"values: expected a mapping of metric name -> number, got "
                        f"{type(values).__name__}")
    out = {}
    for name, value in values.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"values: expected non-empty str metric names, got {name!r}")
        if name.startswith(RESERVED_PREFIX):
            raise ValueError(f"values: metric {name!r}: names under {RESERVED_PREFIX!r} are "
                             "DeepVID's own; pick another name")
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"values[{name!r}]: expected a number, got {type(value).__name__}")
        out[name] = float(value)
    return out
