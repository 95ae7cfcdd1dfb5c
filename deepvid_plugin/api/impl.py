"""The work of the routes of ``http_api.md`` (``*_impl``, as TensorBoard's plugins name it): plain
arguments in, a JSON-able dict out, :class:`~.params.ApiError` for what cannot be answered.

Everything here is generic over kinds. ``kind=None`` (a request without ``kind=``) means the first
kind the run holds, in registry order: for a run written before kinds existed that is ``deepvid``,
so old links keep their meaning without any kind being a default of its own.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from deepvid_plugin.api import hooks
from deepvid_plugin.api.params import ApiError
from deepvid_plugin.core import kinds
from deepvid_plugin.core.encode import encode_image, encode_map, round_list
from deepvid_plugin.core.record import (
    NewerSchemaError,
    Record,
    RecordDecodeError,
    UnsupportedKindError,
)
from deepvid_plugin.core.store import InstanceOverview, NoDataError, RecordStore, RunOverview


def no_data_message(run: str, kind: str) -> str:
    return f"run {run!r} has no {kind} data"


def overview(store: RecordStore, run: str, kind: str,
             instance: str | None = None) -> RunOverview:
    """``store.overview`` with its failures turned into API errors."""
    try:
        return store.overview(run, kind=kind, instance=instance)
    except NoDataError as e:  # a KeyError too, so it must be caught first
        raise ApiError(404, str(e) if e.args else no_data_message(run, kind)) from None
    except KeyError:
        raise ApiError(404, f"run {run!r} not found") from None


def find(ov: RunOverview, run: str, instance: str) -> InstanceOverview:
    for inst in ov.instances:
        if inst.id == instance:
            return inst
    raise ApiError(404, f"instance {instance!r} not found in run {run!r}")


def warn(messages: Sequence[str]) -> None:
    for m in messages:
        warnings.warn(m, stacklevel=3)


def dedupe(messages: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(messages))


def held_kinds(store: RecordStore, run: str, warns: list[str]) -> list[str]:
    """The registered kinds ``run`` holds (``KeyError``: unknown run), in registry order;
    unknown ones are named in ``warns``."""
    held = set()
    for name in store.kinds(run):
        try:
            kinds.get(name)
        except UnsupportedKindError as e:
            warns.append(f"run {run!r} holds {name} data this version cannot show: {e}")
            continue
        held.add(name)
    return [k for k in kinds.names() if k in held]


def resolve_kind(store: RecordStore, runs: Sequence[str], kind: str | None) -> str:
    """``kind``, or when it is ``None`` the first kind every one of ``runs`` holds."""
    if kind is not None:
        return kind
    common: list[str] | None = None
    for run in runs:
        try:
            held = held_kinds(store, run, [])
        except KeyError:
            raise ApiError(404, f"run {run!r} not found") from None
        common = held if common is None else [k for k in common if k in held]
    if not common:
        which = f"run {runs[0]!r} has" if len(runs) == 1 else f"runs {list(runs)!r} have"
        raise ApiError(404, f"{which} no data of a kind this deepvid-plugin knows in common")
    return common[0]


def runs_impl(store: RecordStore) -> dict[str, Any]:
    """Every run with data of a registered kind; ``instances`` and ``steps`` count the data of
    the first kind the run holds."""
    out, warns = [], []
    started = getattr(store, "started", None)  # optional: when each run began
    for run, name in store.runs():
        try:
            held = held_kinds(store, run, warns)
            if not held:
                continue
            ov = store.overview(run, kind=held[0])
        except KeyError:  # vanished between listing and reading (e.g. a deleted run dir)
            continue
        warns.extend(ov.warnings)
        steps = {s["step"] for inst in ov.instances for s in inst.steps}
        # the kinds too, so a client knows what each run holds without a kinds request per run
        entry = {"run": run, "name": name, "instances": len(ov.instances),
                 "steps": len(steps), "kinds": list(held)}
        began = started(run) if started is not None else None
        if began is not None:  # the frontend compares the two oldest runs first
            entry["started"] = began
        out.append(entry)
    return {"runs": out, "warnings": dedupe(warns)}


def kinds_impl(store: RecordStore, run: str) -> dict[str, Any]:
    """The kinds of explanation ``run`` holds, with what a kind switch and a chart title need."""
    warns: list[str] = []
    try:
        held = held_kinds(store, run, warns)
    except KeyError:
        raise ApiError(404, f"run {run!r} not found") from None
    out = []
    for name in held:
        spec = kinds.get(name)
        try:
            ov = store.overview(run, kind=name)
        except KeyError as e:  # listed, but nothing of it could be read
            warns.append(str(e) if isinstance(e, NoDataError) else no_data_message(run, name))
            continue
        warns.extend(ov.warnings)
        steps = {s["step"] for inst in ov.instances for s in inst.steps}
        out.append({"kind": name, "subject": spec.subject, "headline": spec.headline,
                    "higher_is_better": spec.higher_is_better,
                    "subjects": len(ov.instances), "steps": len(steps)})
    return {"run": run, "kinds": out, "warnings": dedupe(warns)}


#: the step summary keys the overview (``instances``) leaves out: per-class probabilities, and
#: maps (``thumb``, ``thumb_teacher``, any encoded map) below. The grid draws them only for the
#: rows in view, from each row's ``timeline``; all of them for 64 instances x 200 steps would
#: be ~8 MB of JSON that a page mostly never shows.
GRID_LEFT_OUT = frozenset({"probs"})
#: of ``fidelity``, the overview keeps the verdict only (the grid's low-trust marks).
GRID_FIDELITY = ("better_than_random",)


def _is_encoded(value: Any) -> bool:
    return isinstance(value, dict) and "data" in value and "shape" in value


def grid_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """What the overview grid needs of a step summary before its row is in view: everything but
    the maps, the per-class probabilities and the evidence beyond its verdict (``timeline``
    serves the whole summary). A kind's own scalars and lists (Dissection's detector counts,
    Summit's stability) are kept: the pages of those kinds chart every step at once."""
    out = {}
    for key, value in summary.items():
        if key in GRID_LEFT_OUT or _is_encoded(value):
            continue
        if key == "fidelity" and isinstance(value, dict):
            value = {k: value[k] for k in GRID_FIDELITY if k in value}
        out[key] = value
    return out


def _instance_json(inst: InstanceOverview, grid: bool = False) -> dict[str, Any]:
    return {"id": inst.id, "label": inst.label, "image": encode_image(inst.image),
            "steps": [grid_summary(s) for s in inst.steps] if grid else inst.steps}


def instances_impl(store: RecordStore, run: str, kind: str | None = None) -> dict[str, Any]:
    kind = resolve_kind(store, [run], kind)
    ov = overview(store, run, kind)
    # the maps the summaries hold (each row's timeline serves them), so the grid can offer them
    maps = sorted({k for i in ov.instances for s in i.steps[:1] for k, v in s.items()
                   if _is_encoded(v)})
    return {"run": run, "kind": kind, "class_names": list(ov.class_names), "maps": maps,
            "instances": [_instance_json(i, grid=True) for i in ov.instances],
            "warnings": list(ov.warnings)}


def timeline_impl(store: RecordStore, run: str, instance: str,
                  kind: str | None = None) -> dict[str, Any]:
    kind = resolve_kind(store, [run], kind)
    ov = overview(store, run, kind, instance)
    inst = find(ov, run, instance)
    return {"run": run, "kind": kind, "instance": instance, "class_names": list(ov.class_names),
            "label": inst.label, "image": encode_image(inst.image), "steps": inst.steps,
            "warnings": list(ov.warnings)}


def _read_error(e: Exception, run: str, instance: str, step: int, kind: str) -> ApiError:
    """What a store's failure to read a record means to the API (a skipped record is a 404);
    anything else is a real fault and is raised as it is."""
    if isinstance(e, ApiError):  # the store already said what it means (RustBoard's keys)
        return e
    what = f"{kind} record"
    if isinstance(e, (NewerSchemaError, UnsupportedKindError)):
        return ApiError(404, f"{what} {instance!r} at step {step} in run {run!r} was skipped: "
                        f"{e}")
    if isinstance(e, RecordDecodeError):
        return ApiError(404, f"{what} {instance!r} at step {step} in run {run!r} is corrupt "
                        f"and was skipped: {e}")
    if isinstance(e, KeyError):
        return ApiError(404, f"no {what} for instance {instance!r} at step {step} in run "
                        f"{run!r}")
    raise e


def read(store: RecordStore, run: str, instance: str, step: int, kind: str) -> Any:
    """store.record with its failures turned into API errors (a skipped record is a 404)."""
    try:
        return store.record(run, instance, step, kind=kind)
    except (NewerSchemaError, UnsupportedKindError, RecordDecodeError, KeyError) as e:
        raise _read_error(e, run, instance, step, kind) from None


def read_many(store: RecordStore, wanted: Sequence[tuple[str, str, int]],
              kind: str) -> list[Any]:
    """:func:`read` of each ``(run, instance, step)``: the record, or the :class:`ApiError`
    saying why it cannot be served. A store with a ``records`` method reads them in one go
    (the TensorBoard store overlaps its reads); others are asked one record at a time."""
    batch = getattr(store, "records", None)
    if batch is None:
        out: list[Any] = []
        for run, instance, step in wanted:
            try:
                out.append(read(store, run, instance, step, kind))
            except ApiError as e:
                out.append(e)
        return out
    got = batch(list(wanted), kind=kind)
    return [_read_error(g, *w, kind) if isinstance(g, Exception) else g
            for g, w in zip(got, wanted, strict=True)]


#: meta keys the generic record JSON lifts to the top level (the rest stays under ``meta``).
_LIFTED_META = ("class_names", "label", "evidence", "fidelity")


def envelope_json(env: Record, run: str, instance: str) -> dict[str, Any]:
    """The record JSON of every kind without a ``record_json`` hook: generic over the envelope.

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
        arrays[name] = encode_map(a) if a.ndim >= 2 else round_list(a.reshape(-1))
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
                kind: str | None = None) -> dict[str, Any]:
    kind = resolve_kind(store, [run], kind)
    rec = read(store, run, instance, step, kind)
    custom = hooks.of(kind).record_json
    if custom is not None:
        return custom(rec, run, instance)
    return envelope_json(kinds.as_record(rec), run, instance)


def alerts_impl(store: RecordStore, run: str) -> dict[str, Any]:
    """Every alert of ``run``, by step: the ``alerts`` lists of the step summaries of every kind
    the run holds (the drift detectors' kind writes them; the route names no kind)."""
    warns: list[str] = []
    try:
        held = held_kinds(store, run, warns)
    except KeyError:
        raise ApiError(404, f"run {run!r} not found") from None
    out = []
    for name in held:
        try:
            ov = store.overview(run, kind=name)
        except KeyError:
            continue
        warns.extend(ov.warnings)
        for inst in ov.instances:
            for s in inst.steps:
                for alert in s.get("alerts") or ():
                    if isinstance(alert, dict):
                        out.append({"step": s["step"], **alert})
    out.sort(key=lambda a: a["step"])
    return {"run": run, "alerts": out, "warnings": dedupe(warns)}


__all__ = ["alerts_impl", "envelope_json", "instances_impl", "kinds_impl", "record_impl", "resolve_kind",
           "runs_impl", "timeline_impl"]
