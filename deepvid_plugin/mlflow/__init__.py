"""MLflow integration: :class:`MLflowSink` (write), :class:`MLflowStore` (read), the
``deepvid compare`` command and the ``mlflow server --app-name deepvid`` app.

Imports are lazy: importing this package never imports mlflow (``deepvid --help`` and
TensorBoard's plugin loader stay fast and safe).
"""

from __future__ import annotations

__all__ = ["MLflowSink", "MLflowStore"]


def __getattr__(name: str):
    if name == "MLflowSink":
        from deepvid_plugin.mlflow.sink import MLflowSink

        return MLflowSink
    if name == "MLflowStore":
        from deepvid_plugin.mlflow.store import MLflowStore

        return MLflowStore
    raise AttributeError(f"module 'deepvid_plugin.mlflow' has no attribute {name!r}")
