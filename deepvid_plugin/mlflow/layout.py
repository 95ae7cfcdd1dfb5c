"""Where the MLflow sink puts things in a run, shared by the writer and the readers.

Artifacts (layout 2), per explanation kind ``<kind>`` (``deepvid``, ``gradcam``, ...)::

    deepvid/<kind>/steps/<step>.json          per flush: every subject's step summary at that step
    deepvid/<kind>/records/<key>/<step>.dvid  Record.encode() without the per-subject arrays
    deepvid/<kind>/subjects/<key>.dvia        the kind's once-per-subject arrays (DeepVID's
                                              neighbour images), record.encode_arrays(), no pickle
    deepvid/<kind>/bundles/<key>.dvib         on close: all of the subject's records + its
                                              per-subject arrays in one file (:mod:`.bundle`), so
                                              a finished run is read with one request per subject
    deepvid/<kind>/index.json                 consolidation of steps/*.json, rewritten with the
                                              viewer
    deepvid/viewer.html                       the self-contained viewer (one per run)

Layout 1 (DeepVID only) kept ``steps/``, ``records/``, ``neighbours/<key>.npy``, ``bundles/`` and
``index.json`` directly under ``deepvid/``; :func:`paths` with ``legacy=True`` names them, and
the readers still read such runs as kind ``deepvid``.

Each subject entry of a step file, and each subject of the index (one per summary), names the
CRC-32 of the record written (``record_crc32``), so a reader can tell a bundle that still matches
the per-step files from one a later writer made stale.

Metrics, with step: each kind's numbers per subject (:func:`metric`) and the mean of its
headline (:func:`mean_metric`). DeepVID keeps its layout-1 names (``deepvid/fidelity/<key>``,
``deepvid/deletion_auc/<key>``, ``deepvid/insertion_auc/<key>``, ``deepvid/fidelity_mean``);
other kinds' live under ``deepvid/<kind>/``: ``deepvid/<kind>/<name>/<key>`` for instance kinds
(Grad-CAM's ``deepvid/gradcam/headline/<key>``), ``deepvid/<kind>/<key>/<name>`` for kinds whose
``subject_first_metrics`` is set (layer and class kinds by default, e.g.
``deepvid/netdissect/<layer>/unique_detectors``, ``deepvid/summit/<class>/stability``).
Step images: ``log_image(key=image_key(kind, key), step=step)`` for kinds that draw one.
Run tag ``deepvid.layout`` marks runs with DeepVID data (the app lists runs by it).

``<key>`` is the subject when it is already a safe MLflow name, otherwise a slug of it plus a
short hash: MLflow metric/image keys allow only ``[A-Za-z0-9_.-/ ]`` and artifact paths must not
escape their folder, while subjects may be any string. The real subject is kept in the JSON files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

ROOT = "deepvid"
LAYOUT_VERSION = 2
LAYOUT_TAG = "deepvid.layout"
#: the fidelity number plotted as a metric (fraction of held-out neighbours on which the student
#: agrees with the teacher).
FIDELITY_KEY = "top1_agreement"
MEAN_FIDELITY_METRIC = f"{ROOT}/fidelity_mean"
BUNDLE_SUFFIX = ".dvib"
SUBJECT_SUFFIX = ".dvia"
VIEWER_PATH = f"{ROOT}/viewer.html"

#: layout 1 held the records of one kind only (DeepVID's, before kinds existed); its paths and
#: metric names read as this kind.
LEGACY_KIND = "deepvid"

_SAFE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
#: names of layout 1 that a kind folder must not take
RESERVED = frozenset({"steps", "records", "neighbours", "bundles", "index.json", "viewer.html"})


@dataclasses.dataclass(frozen=True)
class Paths:
    """The artifact paths of one kind's data in a run (layout 2, or layout 1 for ``legacy``)."""

    kind: str
    legacy: bool = False

    @property
    def root(self) -> str:
        return ROOT if self.legacy else f"{ROOT}/{self.kind}"

    @property
    def steps(self) -> str:
        return f"{self.root}/steps"

    @property
    def records(self) -> str:
        return f"{self.root}/records"

    @property
    def subjects(self) -> str:
        """Folder of the once-per-subject arrays (layout 1: ``neighbours/``, ``.npy``)."""
        return f"{self.root}/neighbours" if self.legacy else f"{self.root}/subjects"

    @property
    def bundles(self) -> str:
        return f"{self.root}/bundles"

    @property
    def index(self) -> str:
        return f"{self.root}/index.json"

    def subject_file(self, key: str) -> str:
        return f"{key}.npy" if self.legacy else f"{key}{SUBJECT_SUFFIX}"


def paths(kind: str, legacy: bool = False) -> Paths:
    """Where ``kind``'s data lives; ``legacy`` (:data:`LEGACY_KIND` only) for runs written in
    layout 1."""
    if not isinstance(kind, str) or not re.fullmatch(r"[a-z0-9_]+", kind) or kind in RESERVED:
        raise ValueError(f"kind: expected a [a-z0-9_] kind name, got {kind!r}")
    if legacy and kind != LEGACY_KIND:
        raise ValueError(f"legacy: layout 1 held {LEGACY_KIND} data only, got kind {kind!r}")
    return Paths(kind, legacy)


# DeepVID's paths in the current layout (the names layout 1 exported, now under deepvid/deepvid/).
_DEEPVID = paths(LEGACY_KIND)
STEPS_DIR = _DEEPVID.steps
RECORDS_DIR = _DEEPVID.records
SUBJECTS_DIR = _DEEPVID.subjects
BUNDLES_DIR = _DEEPVID.bundles
INDEX_PATH = _DEEPVID.index


def instance_key(instance_id: str) -> str:
    """A stable name for ``instance_id`` usable in metric keys, image keys and artifact paths."""
    if not isinstance(instance_id, str) or not instance_id:
        raise TypeError(f"instance_id: expected a non-empty str, got {instance_id!r}")
    if _SAFE.fullmatch(instance_id) and ".." not in instance_id:
        return instance_id
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", instance_id).strip("_")[:40] or "instance"
    digest = hashlib.sha1(instance_id.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


def metric(kind: str, name: str, key: str, subject_first: bool = False) -> str:
    """MLflow metric of one subject's number ``name`` (DeepVID keeps its layout-1 names);
    ``subject_first``: the kind's ``MLflowHooks.subject_first_metrics`` (:mod:`.hooks`)."""
    if kind == LEGACY_KIND:  # its layout-1 names, which dashboards may already plot
        return f"{ROOT}/{name}/{key}"
    return f"{ROOT}/{kind}/{key}/{name}" if subject_first else f"{ROOT}/{kind}/{name}/{key}"


def run_metric(name: str) -> str:
    """MLflow metric of a number about the whole run (e.g. ``deepvid/alerts``)."""
    return f"{ROOT}/{name}"


def mean_metric(kind: str) -> str:
    """MLflow metric of the mean headline over subjects, per step."""
    return MEAN_FIDELITY_METRIC if kind == LEGACY_KIND else f"{ROOT}/{kind}/headline_mean"


def fidelity_metric(key: str) -> str:
    return metric(LEGACY_KIND, "fidelity", key)


def image_key(key: str, kind: str) -> str:
    return f"{ROOT}/{key}" if kind == LEGACY_KIND else f"{ROOT}/{kind}/{key}"


def step_file(step: int) -> str:
    return f"{int(step)}.json"


def record_file(key: str, step: int) -> str:
    return f"{key}/{int(step)}.dvid"


def neighbours_file(key: str) -> str:
    """Layout 1's neighbour images file (``deepvid/neighbours/<key>.npy``)."""
    return f"{key}.npy"


def bundle_file(key: str) -> str:
    return f"{key}{BUNDLE_SUFFIX}"
