"""The JSON API of ``http_api.md``, computed once for every backend.

Backends (the TensorBoard plugin, the MLflow app, the self-contained viewer) only implement the
small :class:`RecordStore` protocol; every response shape is built here, so the frontend cannot
tell them apart. The TensorBoard plugin's layout is followed: a backend's ``*_route`` parses the
request with the ``parse_*`` helpers and calls the matching ``*_impl``, which does the work and
either returns a JSON-able dict or raises :class:`ApiError`.

Nothing here imports TensorBoard, MLflow or torch.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import re
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from deepvid_plugin.record import (
    SCHEMA_VERSION,
    ExplanationRecord,
    NewerSchemaError,
    Record,
    RecordDecodeError,
    UnsupportedKindError,
)

logger = logging.getLogger(__name__)

#: thumbnails in the overview are at most this many pixels on each side.
THUMB_SIZE = 16
#: significant digits kept for probabilities in step summaries (the overview stays small).
_PROB_DIGITS = 5
#: significant digits kept for fidelity and faithfulness numbers in step summaries: the UI shows
#: two or three decimals, and full float reprs would cost ~12 bytes each in every overview cell.
_FIDELITY_DIGITS = 3
#: fidelity entries a step summary leaves out: the curves are per-step detail (the record route
#: carries them), their step count and the held-out count are the same at every step, and
#: ``trustworthy`` is already a field of the summary itself.
_DETAIL_ONLY_FIDELITY = frozenset({"deletion_curve", "insertion_curve", "evidence_steps",
                                   "n_holdout", "trustworthy"})
#: the faithfulness evidence DeepVID adds to ``record.fidelity`` (older records lack all of them).
EVIDENCE_KEYS = ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
                 "deletion_curve", "insertion_curve", "evidence_steps", "better_than_random")


class NoDataError(KeyError):
    """Raised by :meth:`RecordStore.overview` when the run exists but holds no DeepVID data, so
    the API can say so instead of "run not found" (a plain ``KeyError`` means an unknown run).
    Its message, shown to people as it is, names the run and says why."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is meant for people
        return str(self.args[0]) if self.args else "no DeepVID data"


class ApiError(Exception):
    """A request the API cannot answer: ``status`` 400 (bad parameter) or 404 (unknown thing)."""

    def __init__(self, status: int, message: str):
        if status not in (400, 404):
            raise ValueError(f"status: expected 400 or 404, got {status!r}")
        super().__init__(message)
        self.status = status
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"error": self.message}


# ---- encoders ---------------------------------------------------------------------------------
def encode_map(arr: Any) -> dict[str, Any]:
    """A signed map as ``{"shape", "scale", "data"}``: int8, base64, ``scale`` = max |value|.

    Symmetric quantisation keeps 0 exactly 0, so a diverging colour map can be centred on it.
    Non-finite values are drawn as 0 rather than poisoning the scale.
    """
    a = np.asarray(arr, dtype=np.float64)
    a = np.where(np.isfinite(a), a, 0.0)
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    q = np.zeros(a.shape, np.int8) if scale == 0.0 else np.rint(a / scale * 127).astype(np.int8)
    return {"shape": list(a.shape), "scale": scale,
            "data": base64.b64encode(q.tobytes()).decode("ascii")}


def decode_map(obj: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_map` (up to quantisation); used by tests and the compare view."""
    q = np.frombuffer(base64.b64decode(obj["data"]), dtype=np.int8)
    return q.reshape(obj["shape"]).astype(np.float64) / 127.0 * float(obj["scale"])


def encode_image(arr: Any) -> dict[str, Any]:
    """A ``(C, H, W)`` image as ``{"shape", "data"}``: uint8, base64, min-max scaled per image."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"arr: expected a (C, H, W) image, got shape {tuple(a.shape)}")
    a = np.where(np.isfinite(a), a, 0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if hi > lo:
        q = np.rint((a - lo) / (hi - lo) * 255).astype(np.uint8)
    else:  # a flat image carries no contrast to show
        q = np.zeros(a.shape, np.uint8)
    return {"shape": list(a.shape), "data": base64.b64encode(q.tobytes()).decode("ascii")}


def _block_mean(a: np.ndarray, size: int) -> np.ndarray:
    """Area-average a 2-d map down to at most ``size`` pixels per side (last block may be short)."""
    out = a
    for axis in (0, 1):
        n = out.shape[axis]
        f = max(1, math.ceil(n / size))
        if f == 1:
            continue
        starts = np.arange(0, n, f)
        counts = np.diff(np.append(starts, n))
        out = np.add.reduceat(out, starts, axis=axis)
        out = out / (counts[:, None] if axis == 0 else counts[None, :])
    return out


def channel_mean(weights: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W)``: what one weight map looks like on screen."""
    return np.asarray(weights, dtype=np.float64).mean(axis=0)


def _round(values: Iterable[float], digits: int = _PROB_DIGITS) -> list[float]:
    return [float(f"{float(v):.{digits}g}") for v in values]


def summary_fidelity(fidelity: Mapping[str, Any]) -> dict[str, Any]:
    """The compact copy of ``record.fidelity`` that step summaries carry.

    Floats keep :data:`_FIDELITY_DIGITS` significant digits; the deletion/insertion curves (and
    their step count), ``n_holdout``, ``trustworthy`` (the summary's own field) and ``None`` values
    (``trust_reason`` of a trustworthy explanation) are left out, so the faithfulness evidence
    adds ~60 bytes per step to the overview instead of ~700. Booleans, ints and strings are
    kept as they are.
    """
    out: dict[str, Any] = {}
    for key, value in fidelity.items():
        if key in _DETAIL_ONLY_FIDELITY or value is None or isinstance(value, (list, dict)):
            continue
        if isinstance(value, float):
            value = float(f"{value:.{_FIDELITY_DIGITS}g}") if math.isfinite(value) else None
            if value is None:  # JSON has no NaN; an unknown number is simply absent
                continue
        out[key] = value
    return out


def has_evidence(fidelity: Mapping[str, Any]) -> bool:
    """Whether a record's fidelity carries faithfulness evidence (records of older versions
    do not)."""
    return isinstance(fidelity.get("deletion_auc"), (int, float)) and isinstance(
        fidelity.get("random_deletion_auc"), (int, float))


def step_summary(record: ExplanationRecord, previous_predicted: int | None) -> dict[str, Any]:
    """DeepVID's per-step summary the overview and timeline are drawn from (``http_api.md``).

    Writers compute it once per step (the TensorBoard sink stores it as the ``summary`` tag, the
    MLflow sink in its step files), so the overview never decodes full records. The kind
    registry computes it (:func:`deepvid_plugin.kinds.summarize`, here for the ``deepvid``
    kind); it carries a ``headline`` number (DeepVID's: the held-out top-1 agreement).

    Args:
        record: the explanation at this step.
        previous_predicted: the predicted class at the instance's previous logged step, or
            ``None`` for the first one; sets ``changed``.
    """
    from deepvid_plugin import kinds

    if not isinstance(record, ExplanationRecord):
        raise TypeError(f"record: expected an ExplanationRecord, got {type(record).__name__}")
    if previous_predicted is not None and (
        isinstance(previous_predicted, bool) or not isinstance(previous_predicted, (int, np.integer))
    ):
        raise TypeError(f"previous_predicted: expected an int or None, got {previous_predicted!r}")
    previous = None if previous_predicted is None else {"predicted": int(previous_predicted)}
    return kinds.summarize(record.to_record(), previous)


def with_changed(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recompute ``changed`` over step summaries sorted by step, as a reader sees them.

    Readers call it because what is served can differ from what the writer saw: a resumed run, a
    skipped unreadable step, or downsampling.
    """
    previous = None
    for s in steps:
        s["changed"] = previous is not None and s.get("predicted") != previous
        previous = s.get("predicted")
    return steps


def json_loads_object(raw: bytes | str) -> dict[str, Any]:
    """A JSON object from stored bytes; ``ValueError`` for anything else."""
    try:
        value = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, TypeError, AttributeError) as e:
        raise ValueError(f"expected UTF-8 JSON, got {type(raw).__name__}: {e}") from e
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


# ---- the store protocol -----------------------------------------------------------------------
@dataclasses.dataclass
class InstanceOverview:
    """One tracked instance of a run: what the overview row needs."""

    id: str
    label: int | None
    image: np.ndarray  # (C, H, W), model input space
    steps: list[dict[str, Any]]  # step_summary dicts, sorted by step


@dataclasses.dataclass
class RunOverview:
    class_names: list[str]
    instances: list[InstanceOverview]
    warnings: list[str] = dataclasses.field(default_factory=list)


class RecordStore(Protocol):
    """Where a backend keeps records. Everything the API serves comes through these calls.

    Every store is generic over explanation kinds (:mod:`deepvid_plugin.kinds`): ``overview``
    and ``record`` take ``kind`` (default ``deepvid``, what the routes serve today) and
    ``kinds(run)`` lists what a run holds.
    """

    def runs(self) -> list[tuple[str, str]]:
        """``(run, display name)`` for every run that holds DeepVID data (of any kind)."""
        ...

    def kinds(self, run: str) -> list[str]:
        """The kinds ``run`` holds data of (registered ones first). ``KeyError``: unknown run."""
        ...

    def overview(self, run: str, instance: str | None = None,
                 kind: str = "deepvid") -> RunOverview:
        """Class names and every subject's step summaries of ``kind`` in ``run``.

        ``instance``, when given, is a hint: the store MAY return only that instance (the timeline
        route passes it), and must still include it when it exists.

        Raises:
            NoDataError: ``run`` exists but holds no data of ``kind``.
            KeyError: ``run`` is unknown.
        """
        ...

    def record(self, run: str, instance: str, step: int, kind: str = "deepvid") -> Any:
        """The full record as its kind's typed view (:class:`ExplanationRecord` for
        ``deepvid``, the :class:`~deepvid_plugin.record.Record` envelope for kinds without a
        view), with its once-per-subject arrays put back when the store has them.

        Raises:
            KeyError: the run, instance or step is unknown.
            NewerSchemaError, RecordDecodeError: the stored bytes cannot be read
                (``UnsupportedKindError``, a ``RecordDecodeError``: unknown kind or newer
                ``kind_version``).
        """
        ...


class MemoryStore:
    """A :class:`RecordStore` over records held in memory: ``{run: [record, ...]}``.

    Records may be of any registered kind: :class:`ExplanationRecord` objects or
    :class:`~deepvid_plugin.record.Record` envelopes. Used for tests and for building a viewer
    snapshot straight from records; it computes step summaries exactly as the sinks do.
    """

    def __init__(self, runs: Mapping[str, Iterable[Any]],
                 names: Mapping[str, str] | None = None):
        from deepvid_plugin import kinds

        # run -> kind -> (subject, step) -> envelope
        self._records: dict[str, dict[str, dict[tuple[str, int], Record]]] = {}
        for run, records in runs.items():
            by_kind: dict[str, dict[tuple[str, int], Record]] = {}
            for rec in records:
                try:
                    _, env = kinds.prepare(rec)
                except TypeError:
                    raise TypeError(f"runs[{run!r}]: expected ExplanationRecords or Records, "
                                    f"got {type(rec).__name__}") from None
                by_kind.setdefault(env.kind, {})[(env.subject, env.step)] = env
            self._records[str(run)] = by_kind
        self._names = dict(names or {})

    def runs(self) -> list[tuple[str, str]]:
        return [(r, self._names.get(r, r)) for r in self._records]

    def kinds(self, run: str) -> list[str]:
        """The kinds ``run`` holds records of."""
        return list(self._records[run])

    def overview(self, run: str, instance: str | None = None,
                 kind: str = "deepvid") -> RunOverview:
        from deepvid_plugin import kinds

        by_kind = self._records[run]
        records = by_kind.get(kind, {})
        if not records:
            if kind == "deepvid":
                raise NoDataError(f"run {run!r} has no DeepVID data (it was given no records)")
            raise NoDataError(f"run {run!r} has no {kind} data (it was given no {kind} records)")
        class_names: list[str] = []
        rows: dict[str, InstanceOverview] = {}
        previous: dict[str, dict] = {}
        for (iid, _step), env in sorted(records.items(), key=lambda kv: kv[0][1]):
            header = kinds.subject_header(env)
            class_names = class_names or header["class_names"]
            image = header["image"] if header["image"] is not None else np.zeros((1, 1, 1))
            row = rows.setdefault(iid, InstanceOverview(iid, header["label"], image, []))
            summary = kinds.summarize(env, previous.get(iid))
            row.steps.append(summary)
            previous[iid] = summary
        return RunOverview(class_names, list(rows.values()), [])

    def record(self, run: str, instance: str, step: int, kind: str = "deepvid") -> Any:
        """The typed view of the record (an :class:`ExplanationRecord` for ``deepvid``)."""
        from deepvid_plugin import kinds

        return kinds.view(self._records[run][kind][(instance, step)])


# ---- request parsing --------------------------------------------------------------------------
_INT_RE = re.compile(r"-?\d{1,18}")


def _param(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if value is None or value == "":
        raise ApiError(400, f"missing query parameter {name!r}")
    if not isinstance(value, str):
        raise ApiError(400, f"query parameter {name!r}: expected a string, got {value!r}")
    return value


def parse_run(args: Mapping[str, Any]) -> str:
    return _param(args, "run")


def parse_instance(args: Mapping[str, Any]) -> str:
    return _param(args, "instance")


def parse_step(args: Mapping[str, Any]) -> int:
    raw = _param(args, "step")
    if not _INT_RE.fullmatch(raw):
        raise ApiError(400, f"query parameter 'step': expected an integer, got {raw!r}")
    return int(raw)


def parse_runs(args: Mapping[str, Any]) -> list[str]:
    raw = _param(args, "runs")
    runs = raw.split(",")
    # Exactly two: the compare view draws A, B and B - A; a third run would be silently ignored.
    if any(not r for r in runs) or len(set(runs)) != len(runs) or len(runs) != 2:
        raise ApiError(
            400, f"query parameter 'runs': expected exactly two distinct comma-separated runs "
            f"(A,B), got {raw!r}")
    return runs


# ---- the routes' work -------------------------------------------------------------------------
def _overview(store: RecordStore, run: str, instance: str | None = None) -> RunOverview:
    try:
        if instance is None:
            return store.overview(run)
        return store.overview(run, instance=instance)
    except NoDataError as e:  # a KeyError too, so it must be caught first
        raise ApiError(404, str(e) if e.args else f"run {run!r} has no DeepVID data") from None
    except KeyError:
        raise ApiError(404, f"run {run!r} not found") from None


def _find(ov: RunOverview, run: str, instance: str) -> InstanceOverview:
    for inst in ov.instances:
        if inst.id == instance:
            return inst
    raise ApiError(404, f"instance {instance!r} not found in run {run!r}")


def _warn(messages: Sequence[str]) -> None:
    for m in messages:
        warnings.warn(m, stacklevel=3)


def runs_impl(store: RecordStore) -> dict[str, Any]:
    out, warns = [], []
    for run, name in store.runs():
        try:
            ov = store.overview(run)
        except KeyError:  # vanished between listing and reading (e.g. a deleted run dir)
            continue
        warns.extend(ov.warnings)
        steps = {s["step"] for inst in ov.instances for s in inst.steps}
        out.append({"run": run, "name": name, "instances": len(ov.instances),
                    "steps": len(steps)})
    return {"runs": out, "warnings": warns}


def _instance_json(inst: InstanceOverview) -> dict[str, Any]:
    return {"id": inst.id, "label": inst.label, "image": encode_image(inst.image),
            "steps": inst.steps}


def instances_impl(store: RecordStore, run: str) -> dict[str, Any]:
    ov = _overview(store, run)
    return {"run": run, "class_names": list(ov.class_names),
            "instances": [_instance_json(i) for i in ov.instances],
            "warnings": list(ov.warnings)}


def timeline_impl(store: RecordStore, run: str, instance: str) -> dict[str, Any]:
    ov = _overview(store, run, instance)
    inst = _find(ov, run, instance)
    return {"run": run, "instance": instance, "class_names": list(ov.class_names),
            "label": inst.label, "image": encode_image(inst.image), "steps": inst.steps,
            "warnings": list(ov.warnings)}


def _read(store: RecordStore, run: str, instance: str, step: int) -> ExplanationRecord:
    """store.record with its failures turned into API errors (a skipped record is a 404)."""
    try:
        return store.record(run, instance, step)
    except (NewerSchemaError, UnsupportedKindError) as e:
        raise ApiError(404, f"record {instance!r} at step {step} in run {run!r} was skipped: "
                       f"{e}") from None
    except RecordDecodeError as e:
        raise ApiError(404, f"record {instance!r} at step {step} in run {run!r} is corrupt "
                       f"and was skipped: {e}") from None
    except KeyError:
        raise ApiError(404, f"no record for instance {instance!r} at step {step} in run "
                       f"{run!r}") from None


def record_impl(store: RecordStore, run: str, instance: str, step: int) -> dict[str, Any]:
    rec = _read(store, run, instance, step)
    warns = []
    if not rec.has_neighbour_images:
        warns.append(f"neighbour images of instance {instance!r} in run {run!r} are missing "
                     "or unreadable; their labels are still shown")
        _warn(warns)
    return {
        "run": run, "instance": instance, "step": rec.step,
        "schema_version": rec.schema_version,
        "class_names": list(rec.class_names), "label": rec.label, "predicted": rec.predicted,
        "image": encode_image(rec.image),
        # The instance in the model's own input space, signed: the frontend multiplies it with
        # the weights to draw contributions (weight x input), per channel and summed.
        "input": encode_map(rec.image),
        "teacher_probs": _round(rec.teacher_probs), "student_probs": _round(rec.student_probs),
        "weights": [encode_map(w) for w in rec.weights],
        "bias": _round(rec.bias),
        "fidelity": dict(rec.fidelity), "trustworthy": rec.trustworthy,
        "neighbours": [encode_image(n) for n in rec.neighbours],
        "neighbour_teacher": [int(v) for v in rec.neighbour_teacher],
        "neighbour_student": [int(v) for v in rec.neighbour_student],
        "settings": dict(rec.settings),
        "warnings": warns,
    }


def compare_impl(store: RecordStore, instance: str, runs: Sequence[str]) -> dict[str, Any]:
    if len(runs) != 2 or runs[0] == runs[1]:
        raise ApiError(400, f"runs: expected exactly two distinct runs (A, B), got {list(runs)!r}")
    names = dict(store.runs())
    overviews = {r: _overview(store, r) for r in runs}
    warns = [w for r in runs for w in overviews[r].warnings]
    ids = {r: [i.id for i in overviews[r].instances] for r in runs}
    shared = set.intersection(*(set(v) for v in ids.values()))
    common = [i for i in ids[runs[0]] if i in shared]
    for r in runs:
        if instance not in ids[r]:
            raise ApiError(404, f"instance {instance!r} not found in run {r!r}")
    insts = {r: _find(overviews[r], r, instance) for r in runs}
    first = overviews[runs[0]]
    for r in runs[1:]:
        if list(overviews[r].class_names) != list(first.class_names):
            warns.append(f"runs {runs[0]!r} and {r!r} have different class names; "
                         f"showing those of {runs[0]!r}")
    by_step = {r: {s["step"]: s for s in insts[r].steps} for r in runs}
    steps = sorted(set.intersection(*(set(v) for v in by_step.values())))

    a_run, b_run = runs[0], runs[1]
    maps = []
    for step in steps:
        cls = int(by_step[a_run][step]["predicted"])
        try:
            a = channel_mean(_read(store, a_run, instance, step).weights[cls])
            b = channel_mean(_read(store, b_run, instance, step).weights[cls])
        except ApiError as e:  # one unreadable step must not hide the others
            warns.append(e.message)
            continue
        maps.append({"step": step, "class": cls, "a": encode_map(a), "b": encode_map(b),
                     "diff": encode_map(b - a)})
    only_in = {r: [i for i in ids[r] if i not in shared] for r in runs}
    note = None
    if any(only_in.values()):
        note = f"runs track different instance sets; comparing the {len(common)} they share"
    _warn(warns)
    return {
        "instance": instance, "runs": list(runs), "names": [names.get(r, r) for r in runs],
        "class_names": list(first.class_names), "label": insts[a_run].label,
        "steps": steps,
        "per_run": {r: [by_step[r][s] for s in steps] for r in runs},
        "maps": maps, "common_instances": common, "only_in": only_in, "note": note,
        "warnings": warns,
    }


# ---- snapshot (self-contained viewer) ---------------------------------------------------------
def snapshot_key(route: str, params: Mapping[str, str] | None = None) -> str:
    """The key a response is stored under in :func:`snapshot` (documented in ``http_api.md``)."""
    if not params:
        return route
    return route + "?" + urllib.parse.urlencode(sorted(params.items()), quote_via=_form_quote)


def _form_quote(value: str, safe: str = "", encoding=None, errors=None) -> str:
    # Exactly what JavaScript's URLSearchParams writes (WHATWG form encoding), so the frontend can
    # rebuild a key without a table of exceptions: it keeps "*" and escapes "~", unlike quote_plus.
    return urllib.parse.quote_plus(value, safe="*", encoding=encoding,
                                   errors=errors).replace("~", "%7E")


def snapshot(store: RecordStore, runs: Sequence[str] | None = None, *,
             include_record: Callable[[str, str, int], bool] | None = None,
             timelines: bool = True,
             pairs: Sequence[tuple[str, str]] | None = None) -> dict[str, dict]:
    """Every response the frontend could ask for, keyed by :func:`snapshot_key`.

    ``runs`` restricts the snapshot to those runs (default: all). Compare responses are included
    for every ordered pair of runs and every instance both track.

    Size controls (a full record is ~10-45 KB of JSON, so 16 instances x 100 steps of them do not
    fit a viewer artifact): ``include_record(run, instance, step)`` picks the full records to keep
    (default: all; a left-out one answers 404 in the viewer), ``timelines=False`` drops the
    timeline responses (the frontend draws from ``instances``), and ``pairs`` lists the ordered
    ``(A, B)`` run pairs to compare (default: all).
    """
    listing = runs_impl(store)
    wanted = [r["run"] for r in listing["runs"]] if runs is None else list(runs)
    known = {r["run"] for r in listing["runs"]}
    for r in wanted:
        if r not in known:
            raise ValueError(f"runs: {r!r} is not a run of this store; known: {sorted(known)}")
    listing["runs"] = [r for r in listing["runs"] if r["run"] in wanted]
    out: dict[str, dict] = {snapshot_key("runs"): listing}
    ids: dict[str, list[str]] = {}
    for run in wanted:
        inst = instances_impl(store, run)
        out[snapshot_key("instances", {"run": run})] = inst
        ids[run] = [i["id"] for i in inst["instances"]]
        for i in inst["instances"]:
            if timelines:
                out[snapshot_key("timeline", {"run": run, "instance": i["id"]})] = timeline_impl(
                    store, run, i["id"])
            for s in i["steps"]:
                if include_record is not None and not include_record(run, i["id"], s["step"]):
                    continue
                try:
                    rec = record_impl(store, run, i["id"], s["step"])
                except ApiError as e:  # unreadable: the viewer shows the same error the API would
                    inst["warnings"].append(e.message)
                    continue
                out[snapshot_key("record", {"run": run, "instance": i["id"],
                                            "step": str(s["step"])})] = rec
    if pairs is None:
        pairs = [(a, b) for a in wanted for b in wanted if a != b]
    for a, b in pairs:
        if a not in ids or b not in ids or a == b:
            raise ValueError(f"pairs: expected pairs of two different runs among {wanted}, "
                             f"got {(a, b)!r}")
        for i in ids[a]:
            if i in ids[b]:
                out[snapshot_key("compare", {"instance": i, "runs": f"{a},{b}"})] = (
                    compare_impl(store, i, [a, b]))
    return out


__all__ = [
    "EVIDENCE_KEYS", "SCHEMA_VERSION", "THUMB_SIZE", "ApiError", "InstanceOverview", "MemoryStore",
    "NoDataError", "RecordStore", "RunOverview", "channel_mean", "compare_impl", "decode_map",
    "encode_image", "encode_map", "has_evidence", "instances_impl", "parse_instance", "parse_run", "parse_runs",
    "parse_step", "record_impl", "runs_impl", "snapshot", "snapshot_key", "step_summary",
    "summary_fidelity", "timeline_impl",
]
