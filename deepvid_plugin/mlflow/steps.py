"""What the MLflow sink sends of one step: its artifacts (records, the per-subject arrays the
first time, the step file of summaries), its metrics and its step images.

What MLflow gets of each kind besides the records: metrics and step images as
:mod:`.selection` picks them from the kind's hooks (:mod:`.hooks`). The sink only hands the
result to its spool (:mod:`.spool`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from deepvid_plugin.core.encode import encode_image
from deepvid_plugin.core.record import Record
from deepvid_plugin.mlflow import hooks, layout, selection
from deepvid_plugin.mlflow.spool import Builder
from deepvid_plugin.mlflow.written import WrittenStore, record_relpath, subject_relpath

#: one written record: (its kind, the record, its step summary, whether this write stored the
#: subject's per-subject arrays for the first time)
Written = tuple[Any, Record, dict, bool]


def image_spec(store: WrittenStore, name: str, subject: str, step: int, now: int) -> dict:
    """What the upload thread needs to draw ``subject``'s step card at ``step``."""
    data = store.by_kind[name]
    key = data.keys[subject]
    return {"key": layout.image_key(key, name), "kind": name,
            "record": record_relpath(name, key, step),
            "subject": subject_relpath(name, key) if subject in data.with_subject else None,
            "step": step, "timestamp": now}


def step_upload(step: int, buffered: Sequence[Written], builder: Builder, store: WrittenStore,
                imaged: set[tuple[str, str]], images_plan: selection.ImagePlan | None,
                subject_metrics: bool = False) -> tuple[list, list, dict[str, str]]:
    """Put ``step``'s artifacts into ``builder``; return its metrics (``[name, value,
    timestamp, step]``) and step images (specs the upload thread draws). ``imaged``: the
    ``(kind, subject)`` whose row picture was already handed over (updated);
    ``images_plan``: which steps get a step card (None: none). Also returns the run tags the
    step's records set (the alert kind's latest sentence)."""
    now = int(time.time() * 1000)
    selected: list[tuple[Any, Record, dict, str]] = []
    images: list[dict] = []
    tags: dict[str, str] = {}
    by_kind: dict[str, list[Written]] = {}
    for entry in buffered:
        by_kind.setdefault(entry[0].name, []).append(entry)
    for name, items in by_kind.items():
        kind, data = items[0][0], store.by_kind[name]
        backend = hooks.of(kind)
        entries = []
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
            selected.append((kind, env, summary, key))
            if backend.tags is not None:
                tags.update(backend.tags(env))
            if images_plan is not None and backend.step_image is not None and \
                    images_plan.due(name, subject, step, env, summary):
                images.append(image_spec(store, name, subject, step, now))
        builder.write_bytes(f"{name}/steps/{layout.step_file(step)}", json.dumps(
            {"layout": layout.LAYOUT_VERSION, "kind": name, "step": step,
             "class_names": list(data.class_names), "instances": entries},
            separators=(",", ":"), allow_nan=False).encode("utf-8"))
    metrics = [[k, v, now, step] for k, v in selection.step_metrics(
        selected, subject_metrics=subject_metrics).items()]
    return metrics, images, tags


__all__ = ["Written", "image_spec", "step_upload"]
