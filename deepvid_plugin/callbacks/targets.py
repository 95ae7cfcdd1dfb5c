"""*Where* a callback writes: its sinks and the explainers' artifact store (files such as a fitted
VAE go into every log directory and every MLflow run)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from deepvid_plugin.callbacks.safety import ErrorPolicy
from deepvid_plugin.core.sink import Sink


def check_writable_dir(name: str, path: Any) -> str:
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".deepvid-write-check-"):
            pass
    except OSError as e:
        raise ValueError(f"{name}: expected a directory that can be written, got {path!r} "
                         f"({type(e).__name__}: {e})") from e
    return path


class TargetArtifacts:
    """The explainers' artifact store over a callback's targets: files go into every log
    directory and into every MLflow run (through its sink's ``save_artifact``, so a file waits
    on disk like the records do while the server is away), each under the policy."""

    def __init__(self, dirs: Sequence[str], mlflow_sinks: Sequence[tuple[str, Any]],
                 policy: ErrorPolicy):
        self.dirs = list(dirs)
        self.mlflow_sinks = list(mlflow_sinks)  # (sink name, MLflowSink)
        self.policy = policy

    def find(self, name: str) -> str | None:
        for d in self.dirs:
            path = os.path.join(d, name)
            if os.path.exists(path):
                return path
        return None

    def save(self, name: str, write: Callable[[str], None], folder: str) -> None:
        for d in self.dirs:
            self.policy.call("save_artifact", write, os.path.join(d, name))
        for owner, sink in self.mlflow_sinks:
            self.policy.buffering.add(owner)  # the file waits in the sink's spool if need be
            self.policy.call(f"{owner}.save_artifact", sink.save_artifact, name, write, folder,
                             owner=owner, while_off=True)


def check_sinks(sinks: Any) -> None:
    """``sinks`` must be None or a list of objects implementing the Sink protocol."""
    if sinks is None:
        return
    if isinstance(sinks, (str, bytes)) or not isinstance(sinks, Sequence):
        raise TypeError(f"sinks: expected a list of Sink objects, got {type(sinks).__name__}")
    for s in sinks:
        if not isinstance(s, Sink):
            raise TypeError(f"sinks: expected objects with write(record, step), flush() and "
                            f"close(), got {type(s).__name__}")


__all__ = ["TargetArtifacts", "check_sinks", "check_writable_dir"]
