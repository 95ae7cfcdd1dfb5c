"""The route table of ``http_api.md``: one entry per route, served by every backend.

A backend (the TensorBoard plugin, the MLflow app, the snapshot of a self-contained viewer) only
implements :class:`~.store.RecordStore` and serves :data:`ROUTES`: each :class:`Route` parses its
query parameters and does the work, returning a JSON-able dict or raising :class:`ApiError`. So a
new route is one entry here, and every backend serves it. The TensorBoard plugin's layout is
followed: ``*_impl`` functions do the work from plain arguments (tests call them directly).

Per-instance routes take ``kind=`` (default ``deepvid``, so older frontends and saved URLs keep
working); the registry (:mod:`deepvid_plugin.kinds`) says what each kind is.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from deepvid_plugin import kinds
from deepvid_plugin.api.encoders import _round, channel_mean, encode_image, encode_map
from deepvid_plugin.api.store import InstanceOverview, NoDataError, RecordStore, RunOverview
from deepvid_plugin.record import (
    ExplanationRecord,
    NewerSchemaError,
    Record,
    RecordDecodeError,
    UnsupportedKindError,
)

#: the kind the per-instance routes serve when ``kind`` is not given.
DEFAULT_KIND = "deepvid"


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


# ---- request parsing --------------------------------------------------------------------------
_INT_RE = re.compile(r"-?\d{1,18}")
_KIND_RE = re.compile(r"[a-z0-9_]{1,64}")


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


def parse_kind(args: Mapping[str, Any]) -> str:
    """``kind`` (default :data:`DEFAULT_KIND`): 400 when malformed, 404 when not registered."""
    raw = args.get("kind")
    if raw is None or raw == "":
        return DEFAULT_KIND
    if not isinstance(raw, str) or not _KIND_RE.fullmatch(raw):
        raise ApiError(400, f"query parameter 'kind': expected a kind name ([a-z0-9_]+), "
                       f"got {raw!r}")
    try:
        kinds.get(raw)
    except UnsupportedKindError as e:
        raise ApiError(404, f"query parameter 'kind': {e}") from None
    return raw


def kind_params(kind: str) -> dict[str, str]:
    """The ``kind`` query parameter as requests carry it: none for the default kind, so the
    default kind's URLs and snapshot keys are those of the API before kinds existed."""
    return {} if kind == DEFAULT_KIND else {"kind": kind}


# ---- the routes' work -------------------------------------------------------------------------
def _no_data_message(run: str, kind: str) -> str:
    return f"run {run!r} has no {'DeepVID' if kind == 'deepvid' else kind} data"


def _overview(store: RecordStore, run: str, instance: str | None = None,
              kind: str = DEFAULT_KIND) -> RunOverview:
    # The default kind is asked for without ``kind=``, so stores written before kinds existed
    # keep working.
    extra = kind_params(kind)
    try:
        if instance is None:
            return store.overview(run, **extra)
        return store.overview(run, instance=instance, **extra)
    except NoDataError as e:  # a KeyError too, so it must be caught first
        raise ApiError(404, str(e) if e.args else _no_data_message(run, kind)) from None
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


def _dedupe(messages: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(messages))


def _held_kinds(store: RecordStore, run: str, warns: list[str]) -> list[str]:
    """The registered kinds ``run`` holds (``KeyError``: unknown run); unknown ones are named in
    ``warns``."""
    held = []
    for name in store.kinds(run):
        try:
            kinds.get(name)
        except UnsupportedKindError as e:
            warns.append(f"run {run!r} holds {name} data this version cannot show: {e}")
            continue
        held.append(name)
    return held


def runs_impl(store: RecordStore) -> dict[str, Any]:
    """Every run with data of a registered kind; ``instances`` and ``steps`` count the default
    kind's data, or the first kind the run holds when it has none."""
    out, warns = [], []
    for run, name in store.runs():
        try:
            held = _held_kinds(store, run, warns)
            if not held:
                continue
            primary = DEFAULT_KIND if DEFAULT_KIND in held else held[0]
            ov = store.overview(run, **kind_params(primary))
        except KeyError:  # vanished between listing and reading (e.g. a deleted run dir)
            continue
        warns.extend(ov.warnings)
        steps = {s["step"] for inst in ov.instances for s in inst.steps}
        # the kinds too, so a client knows what each run holds without a kinds request per run
        out.append({"run": run, "name": name, "instances": len(ov.instances),
                    "steps": len(steps), "kinds": list(held)})
    return {"runs": out, "warnings": _dedupe(warns)}


def kinds_impl(store: RecordStore, run: str) -> dict[str, Any]:
    """The kinds of explanation ``run`` holds, with what a kind switch and a chart title need."""
    warns: list[str] = []
    try:
        held = _held_kinds(store, run, warns)
    except KeyError:
        raise ApiError(404, f"run {run!r} not found") from None
    out = []
    for name in held:
        spec = kinds.get(name)
        try:
            ov = store.overview(run, **kind_params(name))
        except KeyError as e:  # listed, but nothing of it could be read
            warns.append(str(e) if isinstance(e, NoDataError) else _no_data_message(run, name))
            continue
        warns.extend(ov.warnings)
        steps = {s["step"] for inst in ov.instances for s in inst.steps}
        out.append({"kind": name, "subject": spec.subject, "headline": spec.headline,
                    "higher_is_better": spec.higher_is_better,
                    "subjects": len(ov.instances), "steps": len(steps)})
    return {"run": run, "kinds": out, "warnings": _dedupe(warns)}


def _instance_json(inst: InstanceOverview) -> dict[str, Any]:
    return {"id": inst.id, "label": inst.label, "image": encode_image(inst.image),
            "steps": inst.steps}


def instances_impl(store: RecordStore, run: str, kind: str = DEFAULT_KIND) -> dict[str, Any]:
    ov = _overview(store, run, kind=kind)
    return {"run": run, "kind": kind, "class_names": list(ov.class_names),
            "instances": [_instance_json(i) for i in ov.instances],
            "warnings": list(ov.warnings)}


def timeline_impl(store: RecordStore, run: str, instance: str,
                  kind: str = DEFAULT_KIND) -> dict[str, Any]:
    ov = _overview(store, run, instance, kind=kind)
    inst = _find(ov, run, instance)
    return {"run": run, "kind": kind, "instance": instance, "class_names": list(ov.class_names),
            "label": inst.label, "image": encode_image(inst.image), "steps": inst.steps,
            "warnings": list(ov.warnings)}


def _read(store: RecordStore, run: str, instance: str, step: int,
          kind: str = DEFAULT_KIND) -> Any:
    """store.record with its failures turned into API errors (a skipped record is a 404)."""
    what = f"{kind} record" if kind != DEFAULT_KIND else "record"
    try:
        return store.record(run, instance, step, **kind_params(kind))
    except (NewerSchemaError, UnsupportedKindError) as e:
        raise ApiError(404, f"{what} {instance!r} at step {step} in run {run!r} was skipped: "
                       f"{e}") from None
    except RecordDecodeError as e:
        raise ApiError(404, f"{what} {instance!r} at step {step} in run {run!r} is corrupt "
                       f"and was skipped: {e}") from None
    except KeyError:
        raise ApiError(404, f"no {what} for instance {instance!r} at step {step} in run "
                       f"{run!r}") from None


def _deepvid_json(rec: ExplanationRecord, run: str, instance: str) -> dict[str, Any]:
    warns = []
    if not rec.has_neighbour_images:
        warns.append(f"neighbour images of instance {instance!r} in run {run!r} are missing "
                     "or unreadable; their labels are still shown")
        _warn(warns)
    return {
        "run": run, "kind": "deepvid", "instance": instance, "step": rec.step,
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


#: meta keys the generic record JSON lifts to the top level (the rest stays under ``meta``).
_LIFTED_META = ("class_names", "label", "evidence", "fidelity")


def _envelope_json(env: Record, run: str, instance: str) -> dict[str, Any]:
    """The record JSON of every kind without a typed view: generic over the envelope.

    ``image`` (and ``input``) when the kind has an instance image; every other array under
    ``arrays``: maps (2-d or more) encoded as weight maps are, vectors as rounded lists.
    ``predicted`` and ``trustworthy`` are the step summary's; ``fidelity`` is the kind's
    evidence (``meta["evidence"]``, or ``meta["fidelity"]``) in full, curves included.
    """
    summary = kinds.summarize(env, None)
    meta = dict(env.meta)
    arrays: dict[str, Any] = {}
    for name, value in env.arrays.items():
        if name == "image":
            continue
        a = np.asarray(value)
        arrays[name] = encode_map(a) if a.ndim >= 2 else _round(a.reshape(-1))
    image = env.arrays.get("image")
    fidelity = meta.get("evidence") if meta.get("evidence") is not None else meta.get("fidelity")
    warns = [] if image is not None else [
        f"the instance image of {instance!r} in run {run!r} is missing or unreadable"]
    return {
        "run": run, "kind": env.kind, "kind_version": env.kind_version, "instance": instance,
        "step": env.step, "schema_version": env.schema_version,
        "class_names": [str(c) for c in meta.get("class_names", [])],
        "label": meta.get("label"), "predicted": summary.get("predicted"),
        "image": None if image is None else encode_image(image),
        "input": None if image is None else encode_map(image),
        "arrays": arrays,
        "fidelity": dict(fidelity or {}), "trustworthy": summary.get("trustworthy"),
        "headline": summary.get("headline"),
        "meta": {k: v for k, v in meta.items() if k not in _LIFTED_META},
        "settings": dict(env.settings),
        "warnings": warns,
    }


def record_impl(store: RecordStore, run: str, instance: str, step: int,
                kind: str = DEFAULT_KIND) -> dict[str, Any]:
    rec = _read(store, run, instance, step, kind)
    if isinstance(rec, ExplanationRecord):
        return _deepvid_json(rec, run, instance)
    return _envelope_json(kinds.as_record(rec), run, instance)


def _class_map(rec: Any, cls: int) -> np.ndarray | None:
    """What ``rec`` shows for class ``cls`` as one ``(H, W)`` map, or ``None`` when it has none:
    DeepVID's channel-averaged weight map (it has one per class); other kinds' maps of the
    classes their registry entry's ``class_maps`` names (Grad-CAM: the prediction's
    ``cam_pred``, the true label's ``cam_true``), else the first per-step 2-d array when the
    record predicts ``cls``."""
    if isinstance(rec, ExplanationRecord):
        return channel_mean(rec.weights[cls]) if 0 <= cls < len(rec.weights) else None
    env = kinds.as_record(rec)
    spec = kinds.get(env.kind)
    if spec.class_maps is not None:
        found = spec.class_maps(env).get(cls)
        return None if found is None else np.asarray(found, np.float64)
    if kinds.summarize(env, None).get("predicted") != cls:
        return None
    per_subject = set(spec.per_subject)
    for name, value in env.arrays.items():
        if name not in per_subject and np.ndim(value) == 2:
            return np.asarray(value, np.float64)
    return None


#: the named values of compare's ``class`` parameter (an integer class index is the other form).
CLASS_MODES = ("a", "b", "own", "label")


def parse_class(args: Mapping[str, Any]) -> str | int:
    """compare's ``class``: whose class the maps show (default ``a``, run A's prediction)."""
    raw = args.get("class")
    if raw is None or raw == "":
        return "a"
    if isinstance(raw, str) and raw in CLASS_MODES:
        return raw
    if isinstance(raw, str) and _INT_RE.fullmatch(raw):
        return int(raw)
    raise ApiError(400, f"query parameter 'class': expected one of {', '.join(CLASS_MODES)} or "
                   f"a class index (an integer), got {raw!r}")


def _sides(mode: str | int, pred_a: int | None, pred_b: int | None,
           label: int | None) -> tuple[int | None, int | None, str]:
    """The classes runs A and B show at a step, and why when one is unknown."""
    if isinstance(mode, int):
        return mode, mode, ""
    if mode == "label":
        return label, label, "the instance has no true label"
    if mode == "own":
        return pred_a, pred_b, "one of the runs has no prediction at this step"
    pred = pred_a if mode == "a" else pred_b
    return pred, pred, f"run {mode.upper()} has no prediction at this step"


def _no_map(who: str, cls: int, kind: str, names: Sequence[str]) -> str:
    name = names[cls] if 0 <= cls < len(names) else str(cls)
    return (f"run {who}'s {kind} record holds no map of class {name!r} (it keeps the maps of "
            f"its prediction and, where known, of the true label only)")


def compare_impl(store: RecordStore, instance: str, runs: Sequence[str],
                 kind: str = DEFAULT_KIND, cls: str | int = "a") -> dict[str, Any]:
    """Run A's and run B's maps of ``instance`` step by step, and ``B - A``.

    ``cls`` picks the class each side shows: ``"a"`` (A's prediction at that step, the
    default), ``"b"`` (B's), ``"label"`` (the true label), ``"own"`` (each run its own
    prediction; ``diff`` is ``None`` where they differ) or a class index."""
    if len(runs) != 2 or runs[0] == runs[1]:
        raise ApiError(400, f"runs: expected exactly two distinct runs (A, B), got {list(runs)!r}")
    if not (isinstance(cls, int) and not isinstance(cls, bool)) and cls not in CLASS_MODES:
        raise ApiError(400, f"query parameter 'class': expected one of {', '.join(CLASS_MODES)} "
                       f"or a class index (an integer), got {cls!r}")
    names = dict(store.runs())
    overviews = {r: _overview(store, r, kind=kind) for r in runs}
    warns = [w for r in runs for w in overviews[r].warnings]
    ids = {r: [i.id for i in overviews[r].instances] for r in runs}
    shared = set.intersection(*(set(v) for v in ids.values()))
    common = [i for i in ids[runs[0]] if i in shared]
    for r in runs:
        if instance not in ids[r]:
            raise ApiError(404, f"instance {instance!r} not found in run {r!r}")
    insts = {r: _find(overviews[r], r, instance) for r in runs}
    first = overviews[runs[0]]
    class_names = list(first.class_names)
    if isinstance(cls, int) and not 0 <= cls < len(class_names):
        raise ApiError(400, f"query parameter 'class': expected a class index in "
                       f"[0, {len(class_names)}) (run {runs[0]!r} has {len(class_names)} "
                       f"classes), got {cls}")
    for r in runs[1:]:
        if list(overviews[r].class_names) != class_names:
            warns.append(f"runs {runs[0]!r} and {r!r} have different class names; "
                         f"showing those of {runs[0]!r}")
    by_step = {r: {s["step"]: s for s in insts[r].steps} for r in runs}
    steps = sorted(set.intersection(*(set(v) for v in by_step.values())))

    a_run, b_run = runs[0], runs[1]
    label = insts[a_run].label
    maps = []
    # Steps with no maps entry that could be read, and why (the frontend says it per step).
    missing: list[dict[str, Any]] = []
    image = None
    for step in steps:
        pred = [by_step[r][step].get("predicted") for r in runs]
        ca, cb, why = _sides(cls, *(None if p is None else int(p) for p in pred), label)
        if ca is None or cb is None:
            missing.append({"step": step, "reason": why})
            continue
        try:
            rec_a = _read(store, a_run, instance, step, kind)
            a = _class_map(rec_a, ca)
            b = _class_map(_read(store, b_run, instance, step, kind), cb)
        except ApiError as e:  # one unreadable step must not hide the others
            warns.append(e.message)
            continue
        if a is None or b is None:
            # e.g. Grad-CAM keeps only the maps of its prediction and the true label
            why = _no_map("A", ca, kind, class_names) if a is None else _no_map(
                "B", cb, kind, class_names)
            missing.append({"step": step, "reason": why})
            continue
        if a.shape != b.shape:
            missing.append({"step": step, "reason": f"the maps have different shapes "
                            f"({a.shape} in A, {b.shape} in B)"})
            continue
        if image is None:  # the instance, once: the maps are drawn over it
            image = _instance_image(rec_a)
        maps.append({"step": step, "class": ca, "class_a": ca, "class_b": cb,
                     "a": encode_map(a), "b": encode_map(b),
                     # a difference of two classes' maps would mean nothing
                     "diff": encode_map(b - a) if ca == cb else None})
    only_in = {r: [i for i in ids[r] if i not in shared] for r in runs}
    note = None
    if any(only_in.values()):
        note = f"runs track different instance sets; comparing the {len(common)} they share"
    _warn(warns)
    return {
        "instance": instance, "kind": kind, "runs": list(runs),
        "names": [names.get(r, r) for r in runs],
        "class_names": class_names, "label": label, "class": cls,
        "steps": steps,
        "per_run": {r: [by_step[r][s] for s in steps] for r in runs},
        "maps": maps, "missing": missing, "common_instances": common, "only_in": only_in,
        "note": note, "warnings": warns,
        "image": None if image is None else encode_image(image),
    }


def _instance_image(rec: Any) -> np.ndarray | None:
    """The instance a record explains, ``(C, H, W)``, or None when the kind keeps none."""
    if isinstance(rec, ExplanationRecord):
        return np.asarray(rec.image)
    image = kinds.as_record(rec).arrays.get("image")
    return None if image is None else np.asarray(image)


# ---- the table --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Catalog:
    """What a snapshot covers, for :attr:`Route.requests`: the runs, the kinds each holds, each
    ``(run, kind)``'s subjects with their steps, and the run pairs to compare."""

    runs: list[str]
    kinds: dict[str, list[str]]
    steps: dict[tuple[str, str], dict[str, list[int]]]
    pairs: list[tuple[str, str]]
    timelines: bool = True
    include_record: Callable[[str, str, int], bool] | None = None


@dataclasses.dataclass(frozen=True)
class Route:
    """One route of ``http_api.md``.

    Attributes:
        name: the path after the API base (``"instances"``).
        handle: ``(store, query args) -> body``; raises :class:`ApiError` for bad input.
        cache_name: for answers that depend only on one run's step summaries of one kind
            (``run``, ``kind``): ``args -> name`` the answer may be cached under, next to that
            run's overview (the TensorBoard plugin keeps their gzipped bytes). ``None``: not
            cacheable that way.
        requests: ``catalog -> query params`` of every request a self-contained viewer's
            snapshot answers (``None``: the route is not in snapshots).
    """

    name: str
    handle: Callable[[RecordStore, Mapping[str, Any]], dict[str, Any]]
    cache_name: Callable[[Mapping[str, Any]], str] | None = None
    requests: Callable[[Catalog], Iterable[dict[str, str]]] | None = None


def _instance_steps(c: Catalog) -> Iterable[tuple[str, str, str, list[int]]]:
    for run in c.runs:
        for kind in c.kinds[run]:
            for iid, steps in c.steps[(run, kind)].items():
                yield run, kind, iid, steps


def _timeline_requests(c: Catalog) -> Iterable[dict[str, str]]:
    if c.timelines:
        for run, kind, iid, _ in _instance_steps(c):
            yield {"run": run, "instance": iid, **kind_params(kind)}


def _record_requests(c: Catalog) -> Iterable[dict[str, str]]:
    for run, kind, iid, steps in _instance_steps(c):
        for step in steps:
            if c.include_record is None or c.include_record(run, iid, step):
                yield {"run": run, "instance": iid, "step": str(step), **kind_params(kind)}


def _compare_requests(c: Catalog) -> Iterable[dict[str, str]]:
    for a, b in c.pairs:
        for kind in c.kinds[a]:
            if kind not in c.kinds[b]:
                continue
            theirs = c.steps[(b, kind)]
            for iid in c.steps[(a, kind)]:
                if iid in theirs:
                    base = {"instance": iid, "runs": f"{a},{b}", **kind_params(kind)}
                    # The API's default (A's prediction) for older frontends and saved links,
                    # and each run's own prediction, which this frontend asks for by default.
                    yield base
                    yield {**base, "class": "own"}


def _cache_name(route: str, *params: str) -> Callable[[Mapping[str, Any]], str]:
    def name(args: Mapping[str, Any]) -> str:
        return "\0".join([route, *(_param(args, p) for p in params)])
    return name


ROUTES: dict[str, Route] = {r.name: r for r in (
    Route("runs", lambda s, a: runs_impl(s),
          requests=lambda c: [{}]),
    Route("kinds", lambda s, a: kinds_impl(s, parse_run(a)),
          requests=lambda c: ({"run": r} for r in c.runs)),
    Route("instances", lambda s, a: instances_impl(s, parse_run(a), parse_kind(a)),
          cache_name=_cache_name("instances"),
          requests=lambda c: ({"run": r, **kind_params(k)} for r in c.runs for k in c.kinds[r])),
    Route("timeline", lambda s, a: timeline_impl(s, parse_run(a), parse_instance(a),
                                                 parse_kind(a)),
          cache_name=_cache_name("timeline", "instance"), requests=_timeline_requests),
    Route("record", lambda s, a: record_impl(s, parse_run(a), parse_instance(a), parse_step(a),
                                             parse_kind(a)),
          requests=_record_requests),
    Route("compare", lambda s, a: compare_impl(s, parse_instance(a), parse_runs(a),
                                               parse_kind(a), parse_class(a)),
          requests=_compare_requests),
)}


def respond(store: RecordStore, route: str, args: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """``(body, status)`` of ``GET <route>?args``; bad input is a 400/404 body, never an
    exception. An unknown route is a 404 naming the known ones."""
    entry = ROUTES.get(route)
    if entry is None:
        return {"error": f"unknown route {route!r}; expected one of {', '.join(ROUTES)}"}, 404
    try:
        return entry.handle(store, args), 200
    except ApiError as e:
        return e.to_json(), e.status
