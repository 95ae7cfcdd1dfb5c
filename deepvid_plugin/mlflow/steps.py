"""What the MLflow sink sends of one step: its artifacts (records, the per-subject arrays the
first time, the step file of summaries), its metrics and its step images.

The one place that decides what MLflow gets of each kind besides the records: metrics from the
kind's hooks (:func:`.hooks.metrics`, plus the mean of the headline), step images from its
``step_image`` hook. The sink only hands the result to its spool (:mod:`.spool`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepvid_plugin.core.encode import encode_image
from deepvid_plugin.core.record import Record
from deepvid_plugin.mlflow import hooks, layout
from deepvid_plugin.mlflow.spool import Builder
from deepvid_plugin.mlflow.written import WrittenStore, record_relpath, subject_relpath

#: one written record: (its kind, the record, its step summary, whether this write stored the
#: subject's per-subject arrays for the first time)
Written = tuple[Any, Record, dict, bool]


def step_upload(step: int, buffered: Sequence[Written], builder: Builder, store: WrittenStore,
                imaged: set[tuple[str, str]], log_images: bool) -> tuple[list, list]:
    """Put ``step``'s artifacts into ``builder``; return its metrics (``[name, value,
    timestamp, step]``) and step images (specs the upload thread draws). ``imaged``: the
    ``(kind, subject)`` whose row picture was already handed over (updated)."""
    now = int(time.time() * 1000)
    metrics: list[list] = []
    images: list[dict] = []
    by_kind: dict[str, list[Written]] = {}
    for entry in buffered:
        by_kind.setdefault(entry[0].name, []).append(entry)
    for name, items in by_kind.items():
        kind, data = items[0][0], store.by_kind[name]
        backend = hooks.of(kind)
        entries, headlines = [], []
        for _, env, summary, first in items:
            subject = env.subject
            key = data.keys[subject]
            builder.add_file(record_relpath(name, key, step),
                             store.path(record_relpath(name, key, step)))
            entry = {"id": subject, "key": key, "label": data.labels[subject],
                     "summary": summary, "record_crc32": data.crcs[(subject, step)]}
            if (name, subject) not in imaged:  # the row's picture, once
                imaged.add((name, subject))
                if data.images[subject] is not None:
                    entry["image"] = encode_image(data.images[subject])
            if first:  # the per-subject arrays go with the subject's first step
                builder.add_file(subject_relpath(name, key),
                                 store.path(subject_relpath(name, key)))
            entries.append(entry)
            for metric_name, value in hooks.metrics(kind, env, summary).items():
                metrics.append([layout.metric(name, metric_name, key,
                                              backend.subject_first_metrics), value, now, step])
                if metric_name == backend.headline_metric:
                    headlines.append(value)
            if log_images and backend.step_image is not None:
                images.append({"key": layout.image_key(key, name), "kind": name,
                               "record": record_relpath(name, key, step),
                               "subject": subject_relpath(name, key)
                               if subject in data.with_subject else None,
                               "step": step, "timestamp": now})
        if headlines:
            metrics.append([layout.mean_metric(name), float(np.mean(headlines)), now, step])
        builder.write_bytes(f"{name}/steps/{layout.step_file(step)}", json.dumps(
            {"layout": layout.LAYOUT_VERSION, "kind": name, "step": step,
             "class_names": list(data.class_names), "instances": entries},
            separators=(",", ":"), allow_nan=False).encode("utf-8"))
    return metrics, images


__all__ = ["Written", "step_upload"]
