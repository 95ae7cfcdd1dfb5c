"""The sink protocol: *where* records go, kept apart from *what* is explained (ignite-style).

A sink takes :class:`~deepvid_plugin.record.ExplanationRecord` objects and persists them. The
TensorBoard sink (:class:`deepvid_plugin.tensorboard.summary.TensorBoardSink`) and the MLflow sink
(:class:`deepvid_plugin.mlflow.logging.MLflowSink`) implement it and pass one shared test suite
(``tests/test_sink_contract.py``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from deepvid_plugin.record import ExplanationRecord


@runtime_checkable
class Sink(Protocol):
    """Anything that can persist explanation records.

    ``write`` may buffer; ``flush`` makes everything written so far visible to readers;
    ``close`` flushes and releases resources, and is idempotent.
    """

    def write(self, record: ExplanationRecord, step: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...
