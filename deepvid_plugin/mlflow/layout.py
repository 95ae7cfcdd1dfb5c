"""Where the MLflow sink puts things in a run, shared by the writer and the readers.

Artifacts, under ``deepvid/`` (the whole layout is versioned by ``LAYOUT_VERSION``)::

    deepvid/steps/<step>.json            per flush: every instance's step_summary at that step
    deepvid/records/<key>/<step>.dvid    ExplanationRecord.encode() without neighbour images
    deepvid/neighbours/<key>.npy         the instance's fixed neighbour images (float16, no pickle)
    deepvid/bundles/<key>.dvib           on close: all of the instance's records + neighbours in
                                         one file (:mod:`.bundle`), so a finished run is read
                                         with one request per instance, not one per step
    deepvid/index.json                   consolidation of steps/*.json, rewritten with the viewer
    deepvid/viewer.html                  the self-contained viewer

Each instance entry of a step file, and each instance of the index (one per summary), names
the CRC-32 of the record written (``record_crc32``), so a reader can tell a bundle that still
matches the per-step files from one a later writer made stale.

Metrics: ``deepvid/fidelity/<key>`` per instance and ``deepvid/fidelity_mean``, with step.
Step images: ``log_image(key="deepvid/<key>", step=step)``.
Run tag ``deepvid.layout`` marks runs with DeepVID data (the app lists runs by it).

``<key>`` is the instance id when it is already a safe MLflow name, otherwise a slug of it plus
a short hash: MLflow metric/image keys allow only ``[A-Za-z0-9_.-/ ]`` and artifact paths must not
escape their folder, while instance ids may be any string. The real id is kept in the JSON files.
"""

from __future__ import annotations

import hashlib
import re

ROOT = "deepvid"
LAYOUT_VERSION = 1
LAYOUT_TAG = "deepvid.layout"
#: the fidelity number plotted as a metric (fraction of held-out neighbours on which the student
#: agrees with the teacher).
FIDELITY_KEY = "top1_agreement"
MEAN_FIDELITY_METRIC = f"{ROOT}/fidelity_mean"

STEPS_DIR = f"{ROOT}/steps"
RECORDS_DIR = f"{ROOT}/records"
NEIGHBOURS_DIR = f"{ROOT}/neighbours"
BUNDLES_DIR = f"{ROOT}/bundles"
BUNDLE_SUFFIX = ".dvib"
INDEX_PATH = f"{ROOT}/index.json"
VIEWER_PATH = f"{ROOT}/viewer.html"

_SAFE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")


def instance_key(instance_id: str) -> str:
    """A stable name for ``instance_id`` usable in metric keys, image keys and artifact paths."""
    if not isinstance(instance_id, str) or not instance_id:
        raise TypeError(f"instance_id: expected a non-empty str, got {instance_id!r}")
    if _SAFE.fullmatch(instance_id) and ".." not in instance_id:
        return instance_id
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", instance_id).strip("_")[:40] or "instance"
    digest = hashlib.sha1(instance_id.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


def fidelity_metric(key: str) -> str:
    return f"{ROOT}/fidelity/{key}"


def image_key(key: str) -> str:
    return f"{ROOT}/{key}"


def step_file(step: int) -> str:
    return f"{int(step)}.json"


def record_file(key: str, step: int) -> str:
    return f"{key}/{int(step)}.dvid"


def neighbours_file(key: str) -> str:
    return f"{key}.npy"


def bundle_file(key: str) -> str:
    return f"{key}{BUNDLE_SUFFIX}"
