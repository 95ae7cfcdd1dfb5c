"""The sink protocol: *where* records go, kept apart from *what* is explained (ignite-style).

A sink takes records of any registered kind (:class:`~deepvid_plugin.core.record.Record`
envelopes, or typed views with ``to_record()`` such as DeepVID's ``ExplanationRecord``) and
persists them; what a kind stores once per subject and how it is summarised comes from
:mod:`deepvid_plugin.core.kinds`. The TensorBoard sink (:class:`deepvid_plugin.tensorboard.summary.TensorBoardSink`) and the MLflow sink
(:class:`deepvid_plugin.mlflow.sink.MLflowSink`) implement it and pass one shared test suite
(``tests/test_sink_contract.py``), once per registered kind.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Sink(Protocol):
    """Anything that can persist explanation records.

    ``write`` may buffer; ``flush`` makes everything written so far visible to readers;
    ``close`` flushes and releases resources, and is idempotent.
    """

    def write(self, record: Any, step: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...
