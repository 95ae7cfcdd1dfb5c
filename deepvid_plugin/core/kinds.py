"""The registry of explanation kinds: what each kind's records hold and how they are summarised.

Every layer of the pipeline (sinks, readers, the API) is generic over kinds and asks this
registry, never a kind's name, what to do. A kind declares (:class:`Kind`):

- its arrays and the dtype each is stored with, and which of them a record may leave out;
- which arrays are fixed per subject (DeepVID's neighbour images, Grad-CAM's instance image):
  sinks store those once per subject and readers put them back;
- its step summary (what the overview draws, computed once by the writer), including a
  ``headline`` number that generic charts can plot;
- its validation, and optionally a typed view of its records (DeepVID's is
  :class:`~deepvid_plugin.methods.deepvid.record.ExplanationRecord`).

Adding a kind = its folder ``deepvid_plugin/methods/<kind>/`` whose ``kind.py`` calls
:func:`register` (named in :data:`BUILTIN`, or imported by the user for a third-party kind), and
one frontend view (``docs/architecture.md`` walks through an example). What a backend does with a
kind beyond this description (MLflow's metric names and step images, the API's record JSON and
compare maps) is registered with that backend (:mod:`deepvid_plugin.mlflow.hooks`,
:mod:`deepvid_plugin.api.hooks`), not here.

Conventions the generic readers rely on: an instance kind puts ``class_names`` and ``label`` in
``meta`` and the instance as an ``image`` array ``(C, H, W)``; the overview's row header (label,
image) comes from them. Step summaries carry ``predicted`` when the kind has a prediction, so the
readers can mark steps where it changed.

This module imports only numpy, :mod:`deepvid_plugin.core.record` and
:mod:`deepvid_plugin.core.summaries` at import time (the TensorBoard plugin's entry point must
stay light); the built-in kind modules are imported on first use, by name (the registry never
imports a kind statically: kinds sit above it).
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from deepvid_plugin.core import summaries
from deepvid_plugin.core.record import (
    SCHEMA_VERSION,
    Record,
    RecordDecodeError,
    UnsupportedKindError,
)
from deepvid_plugin.core.summaries import SummaryError

#: the kinds that ship with deepvid-plugin: one line per kind (each module calls register()).
BUILTIN = (
    "deepvid_plugin.methods.deepvid.kind",
    "deepvid_plugin.methods.gradcam.kind",
    "deepvid_plugin.methods.cam_agreement.kind",
    "deepvid_plugin.methods.netdissect.kind",
    "deepvid_plugin.methods.summit.kind",
    "deepvid_plugin.methods.attribution.kind",
    "deepvid_plugin.methods.alert.kind",
)
SUBJECTS = ("instance", "layer", "class", "model")


@dataclasses.dataclass(frozen=True)
class Kind:
    """What the pipeline needs to know about one explanation kind.

    Attributes:
        name: the kind's name: in records, TensorBoard tags and MLflow paths (``[a-z0-9_]+``).
        version: the newest ``kind_version`` its module reads and writes.
        subject: what one record explains: ``instance``, ``layer``, ``class`` or ``model``.
        arrays: array name -> stored dtype (``"<f2"``, ``"<f4"``, ``"<i2"``, ...).
        summarize: ``(record, previous_summary or None) -> dict``: the step summary the overview
            draws, with a ``headline`` number (``None`` when unknown). ``previous_summary`` is
            the subject's summary at its previous logged step.
        validate: raises ``ValueError``/``TypeError`` naming the problem; gets a record with
            every array already cast to its declared dtype (once-per-subject arrays may be
            absent: they are stored apart).
        headline: what the headline number is, for chart titles (e.g. ``"deletion AUC"``).
        higher_is_better: the headline's direction.
        optional: arrays a record may leave out.
        per_subject: arrays fixed per subject, stored once per subject by sinks.
        view: ``record -> typed view`` the stores hand out (default: the envelope itself).
        upgrade_summary: fills in what older writers' summaries lack (default: nothing).
        summary_fields: the kind's own summary fields and their types (see
            :mod:`deepvid_plugin.core.summaries`), checked by both readers beside the common
            ones (``predicted``, ``probs``, ``thumb``, ...); a summary that fails is skipped.
    """

    name: str
    version: int
    subject: str
    arrays: Mapping[str, str]
    summarize: Callable[[Record, Mapping[str, Any] | None], dict[str, Any]]
    validate: Callable[[Record], None]
    headline: str
    higher_is_better: bool
    optional: frozenset[str] = frozenset()
    per_subject: tuple[str, ...] = ()
    view: Callable[[Record], Any] | None = None
    upgrade_summary: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    summary_fields: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or not all(
                c.islower() or c.isdigit() or c == "_" for c in self.name):
            raise ValueError(f"name: expected a non-empty [a-z0-9_] name, got {self.name!r}")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"version: expected an int >= 1, got {self.version!r}")
        if self.subject not in SUBJECTS:
            raise ValueError(f"subject: expected one of {list(SUBJECTS)}, got {self.subject!r}")
        for name, dtype in self.arrays.items():
            if np.dtype(dtype).hasobject:
                raise ValueError(f"arrays[{name!r}]: expected a numeric dtype, got {dtype!r}")
        for what in ("optional", "per_subject"):
            unknown = sorted(set(getattr(self, what)) - set(self.arrays))
            if unknown:
                raise ValueError(f"{what}: expected names among arrays {sorted(self.arrays)}, "
                                 f"got {unknown}")
        summaries.check_fields(self.summary_fields)
        object.__setattr__(self, "optional", frozenset(self.optional))
        object.__setattr__(self, "per_subject", tuple(self.per_subject))

    def record(self, subject: str, step: int, arrays: Mapping[str, Any], *,
               meta: Mapping[str, Any] | None = None,
               settings: Mapping[str, Any] | None = None) -> Record:
        """A validated record of this kind: the one way every explainer builds its records
        (arrays cast to their declared dtypes, the kind's validation run)."""
        record = Record(kind=self.name, subject=subject, step=step, arrays=dict(arrays),
                        meta=dict(meta or {}), settings=dict(settings or {}),
                        kind_version=self.version)
        return prepare(record)[1]


_registry: dict[str, Kind] = {}
_lock = threading.RLock()
_loaded = False


def register(kind: Kind) -> Kind:
    """Add ``kind`` to the registry (a kind module calls it once, at import); returns it."""
    if not isinstance(kind, Kind):
        raise TypeError(f"kind: expected a deepvid_plugin.core.kinds.Kind, got {type(kind).__name__}")
    with _lock:
        old = _registry.get(kind.name)
        if old is not None and old is not kind:
            raise ValueError(f"kind: {kind.name!r} is already registered")
        _registry[kind.name] = kind
    return kind


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if not _loaded:
            for module in BUILTIN:
                importlib.import_module(module)
            _loaded = True


def names() -> tuple[str, ...]:
    """Every registered kind's name: built-ins first, in :data:`BUILTIN`'s order, then the
    others in the order they registered."""
    _load_builtins()
    builtin = [m.rsplit(".", 2)[-2] for m in BUILTIN]  # methods.<kind>.kind -> <kind>
    rank = {name: i for i, name in enumerate(builtin)}
    order = {name: len(builtin) + i for i, name in enumerate(_registry)}
    return tuple(sorted(_registry, key=lambda n: rank.get(n, order[n])))


def get(name: str) -> Kind:
    """The registered kind ``name``.

    Raises:
        UnsupportedKindError: no kind of that name is registered.
    """
    _load_builtins()
    kind = _registry.get(name)
    if kind is None:
        raise UnsupportedKindError(
            f"kind: {name!r} is not a kind this deepvid-plugin knows (it knows "
            f"{sorted(_registry)}); upgrade deepvid-plugin, or import the module that registers it")
    return kind


def as_record(obj: Any) -> Record:
    """``obj`` as an envelope: a :class:`Record` as it is, a typed view through its
    ``to_record()`` (DeepVID's ``ExplanationRecord`` has one)."""
    if isinstance(obj, Record):
        return obj
    if callable(getattr(obj, "to_record", None)):
        record = obj.to_record()
        if isinstance(record, Record):
            return record
    raise TypeError(f"record: expected a deepvid_plugin.core.record.Record (or a typed view with "
                    f"to_record(), such as DeepVID's ExplanationRecord), got "
                    f"{type(obj).__name__}")


def check(record: Record) -> Kind:
    """The kind of ``record``, when this package can read it.

    Raises:
        UnsupportedKindError: unknown kind, or a ``kind_version`` newer than its module reads.
    """
    kind = get(record.kind)
    if record.kind_version > kind.version:
        raise UnsupportedKindError(
            f"record has {kind.name} kind_version {record.kind_version}, but this "
            f"deepvid-plugin reads up to {kind.version}; upgrade deepvid-plugin to read it")
    return kind


def prepare(obj: Any) -> tuple[Kind, Record]:
    """What a sink writes: ``obj`` as an envelope of a known kind, arrays cast to the kind's
    dtypes, validated.

    Raises:
        TypeError: ``obj`` is not a record.
        UnsupportedKindError: unknown kind or newer kind_version.
        ValueError: the record breaks its kind's rules (message names the array or field).
    """
    record = as_record(obj)
    kind = check(record)
    arrays = {}
    for name, value in record.arrays.items():
        dtype = kind.arrays.get(name)
        if dtype is None:
            raise ValueError(f"arrays: {kind.name} records hold {sorted(kind.arrays)}, got an "
                             f"unknown array {name!r}")
        arrays[name] = np.ascontiguousarray(value, dtype=dtype)
    missing = sorted(set(kind.arrays) - set(arrays) - kind.optional - set(kind.per_subject))
    if missing:
        raise ValueError(f"arrays: {kind.name} records need {missing}, got {sorted(arrays)}")
    record = dataclasses.replace(record, arrays=arrays)
    kind.validate(record)
    return kind, record


def validated(record: Record) -> Record:
    """A stored record as readers serve it: of a known kind and version, arrays cast, its
    kind's validation passed.

    Raises:
        UnsupportedKindError: unknown kind or newer kind_version.
        RecordDecodeError: the record decodes but breaks its kind's rules (a hand-made or
            damaged record); the API answers 404 naming it, as for any corrupt record.
    """
    check(record)
    try:
        return prepare(record)[1]
    except (ValueError, TypeError) as e:
        raise RecordDecodeError(f"{record.kind} record of {record.subject!r} at step "
                                f"{record.step} breaks its kind's rules: {e}") from e


def summarize(record: Record, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The step summary of ``record``: its kind's summary plus ``step`` and ``schema_version``
    (and ``kind_version`` when not 1: absent means 1, which keeps the overview small)."""
    kind = check(record)
    summary = dict(kind.summarize(record, previous))
    if "headline" not in summary:
        raise ValueError(f"kind {kind.name!r}: its summarize() must return a 'headline' "
                         f"(a number or None), got keys {sorted(summary)}")
    summary["step"] = record.step
    # written now, so in the current schema (a record claiming a newer one keeps its number)
    summary["schema_version"] = max(record.schema_version, SCHEMA_VERSION)
    if record.kind_version != 1:
        summary["kind_version"] = record.kind_version
    return summary


def read_summary(kind: Kind, summary: dict[str, Any],
                 n_classes: int | None = None) -> dict[str, Any]:
    """A stored summary as this version serves it (``upgrade_summary`` fills in what older
    writers left out, e.g. DeepVID's ``headline``), its fields checked (classes against
    ``n_classes`` when known): the one check both readers make.

    Raises:
        SummaryError: a field has the wrong type or is out of range (the message names it);
            readers skip the summary with a warning.
    """
    if kind.upgrade_summary is not None:
        summary = kind.upgrade_summary(summary)
    summaries.check_summary(summary, kind.summary_fields, n_classes)
    return summary


def read_label(label: Any, class_names: list[str]) -> Any:
    """A subject's stored true label, checked against ``class_names`` (``SummaryError``)."""
    return summaries.check_label(label, len(class_names) or None)


def summary_problem(kind: Kind, summary: Mapping[str, Any]) -> str | None:
    """Why a stored step summary must be skipped (newer schema or kind_version), or ``None``."""
    version = summary.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        return (f"written with schema_version {version!r}, this deepvid-plugin reads up to "
                f"{SCHEMA_VERSION}; upgrade deepvid-plugin to read it")
    kv = summary.get("kind_version", 1)
    if not isinstance(kv, int) or kv > kind.version:
        return (f"written with {kind.name} kind_version {kv!r}, this deepvid-plugin reads up "
                f"to {kind.version}; upgrade deepvid-plugin to read it")
    return None


def view(record: Record) -> Any:
    """The typed view the stores hand out for ``record`` (the envelope for kinds without one)."""
    kind = check(record)
    return kind.view(record) if kind.view is not None else record


def meta_class_names(meta: Mapping[str, Any]) -> list[str]:
    """``meta["class_names"]`` checked for a kind's validation (the convention every instance and
    class kind follows): a non-empty list of str, else a ValueError naming the field."""
    names = meta.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(c, str) for c in names):
        raise ValueError(f"meta['class_names']: expected a non-empty list of str, got {names!r}")
    return names


def subject_header(record: Record) -> dict[str, Any]:
    """What the overview row of ``record``'s subject shows once: ``class_names``, ``label`` and
    the ``image`` array (``None`` when the kind has none)."""
    meta = record.meta
    return {"class_names": [str(c) for c in meta.get("class_names", [])],
            "label": meta.get("label"), "image": record.arrays.get("image")}


__all__ = ["BUILTIN", "SUBJECTS", "Kind", "SummaryError", "as_record", "check", "get",
           "meta_class_names", "names", "prepare", "read_label", "read_summary", "register",
           "subject_header", "summarize", "summary_problem", "validated", "view"]
