"""The ``compare`` route: one instance's maps in two runs, step by step, and their difference.

Which class each side shows is the request's ``class`` (A's prediction by default, B's, each
run's own, the true label or a class index); what a record shows for a class is its kind's
``class_map`` hook (:mod:`.hooks`), so compare is generic over instance kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deepvid_plugin.api import hooks
from deepvid_plugin.api.impl import find, overview, read_many, resolve_kind, warn
from deepvid_plugin.api.params import CLASS_MODES, ApiError
from deepvid_plugin.core import kinds
from deepvid_plugin.core.encode import encode_image, encode_map
from deepvid_plugin.core.record import Record
from deepvid_plugin.core.store import RecordStore


def class_map(env: Record, cls: int) -> np.ndarray | None:
    """What ``env`` shows for class ``cls`` as one ``(H, W)`` map, or ``None`` when it has
    none: its kind's ``class_map`` hook, else the first per-step 2-d array when the record
    predicts ``cls``."""
    custom = hooks.of(env.kind).class_map
    if custom is not None:
        found = custom(env, cls)
        return None if found is None else np.asarray(found, np.float64)
    if kinds.summarize(env, None).get("predicted") != cls:
        return None
    per_subject = set(kinds.get(env.kind).per_subject)
    for name, value in env.arrays.items():
        if name not in per_subject and np.ndim(value) == 2:
            return np.asarray(value, np.float64)
    return None


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
                 kind: str | None = None, cls: str | int = "a") -> dict[str, Any]:
    """Run A's and run B's maps of ``instance`` step by step, and ``B - A``.

    ``cls`` picks the class each side shows: ``"a"`` (A's prediction at that step, the
    default), ``"b"`` (B's), ``"label"`` (the true label), ``"own"`` (each run its own
    prediction; ``diff`` is ``None`` where they differ) or a class index."""
    if len(runs) != 2 or runs[0] == runs[1]:
        raise ApiError(400, f"runs: expected exactly two distinct runs (A, B), got {list(runs)!r}")
    if not (isinstance(cls, int) and not isinstance(cls, bool)) and cls not in CLASS_MODES:
        raise ApiError(400, f"query parameter 'class': expected one of {', '.join(CLASS_MODES)} "
                       f"or a class index (an integer), got {cls!r}")
    kind = resolve_kind(store, runs, kind)
    names = dict(store.runs())
    overviews = {r: overview(store, r, kind) for r in runs}
    warns = [w for r in runs for w in overviews[r].warnings]
    ids = {r: [i.id for i in overviews[r].instances] for r in runs}
    shared = set.intersection(*(set(v) for v in ids.values()))
    common = [i for i in ids[runs[0]] if i in shared]
    for r in runs:
        if instance not in ids[r]:
            raise ApiError(404, f"instance {instance!r} not found in run {r!r}")
    insts = {r: find(overviews[r], r, instance) for r in runs}
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
    wanted = []  # the steps whose classes are known, with the classes each side shows
    for step in steps:
        pred = [by_step[r][step].get("predicted") for r in runs]
        ca, cb, why = _sides(cls, *(None if p is None else int(p) for p in pred), label)
        if ca is None or cb is None:
            missing.append({"step": step, "reason": why})
        else:
            wanted.append((step, ca, cb))
    # every record in one go: a store that can overlaps its reads (TensorBoard's RustBoard)
    got = read_many(store, [(r, instance, step) for step, _, _ in wanted for r in (a_run, b_run)],
                    kind)
    for i, (step, ca, cb) in enumerate(wanted):
        got_a, got_b = got[2 * i], got[2 * i + 1]
        failed = [g for g in (got_a, got_b) if isinstance(g, ApiError)]
        if failed:  # one unreadable step must not hide the others
            warns.extend(e.message for e in failed)
            continue
        rec_a = kinds.as_record(got_a)
        a = class_map(rec_a, ca)
        b = class_map(kinds.as_record(got_b), cb)
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
            image = rec_a.arrays.get("image")
        maps.append({"step": step, "class": ca, "class_a": ca, "class_b": cb,
                     "a": encode_map(a), "b": encode_map(b),
                     # a difference of two classes' maps would mean nothing
                     "diff": encode_map(b - a) if ca == cb else None})
    only_in = {r: [i for i in ids[r] if i not in shared] for r in runs}
    note = None
    if any(only_in.values()):
        note = f"runs track different instance sets; comparing the {len(common)} they share"
    warn(warns)
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


__all__ = ["class_map", "compare_impl"]
