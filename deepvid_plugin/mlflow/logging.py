"""Deprecated alias of :mod:`deepvid_plugin.mlflow.sink`, the module's new name (``logging``
shadowed the standard library's module of that name for anyone reading or running code here).

Kept only while ``deepvid_plugin/kinds/deepvid.py`` still imports ``render_weight_map`` from here;
delete this file once that import names :mod:`deepvid_plugin.mlflow.sink`. New code imports
:mod:`deepvid_plugin.mlflow.sink` or ``from deepvid_plugin.mlflow import MLflowSink``.
"""

from deepvid_plugin.mlflow.sink import (
    MLflowSink,
    deletion_auc_metric,
    insertion_auc_metric,
    render_weight_map,
)

__all__ = ["MLflowSink", "deletion_auc_metric", "insertion_auc_metric", "render_weight_map"]
