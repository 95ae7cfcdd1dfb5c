"""Checks of stored step summaries and subject labels, on read: both readers (TensorBoard's and
MLflow's) call them through :func:`deepvid_plugin.core.kinds.read_summary`.

A summary is written by this package, but what a reader finds was stored by someone: an older or
newer version, a hand-edited file, another tool. A field of the wrong type reached the API and
broke it (a ``"predicted": "zz"`` or a label ``"seven"`` made ``compare`` answer 500), so every
field a reader or the frontend relies on is checked here, and a summary that fails is skipped
with a warning naming the field, like any corrupt record.

The fields every kind's summaries may have, with a meaning shared by all readers, are
:data:`COMMON_FIELDS`; a kind declares its own in ``Kind.summary_fields``. Fields that no one
declared pass unchecked (a newer writer may add some). Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any


class SummaryError(ValueError):
    """A stored summary (or label) that cannot be served; the message names the field."""


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _class(v: Any, n: int | None) -> bool:
    return _int(v) and v >= 0 and (n is None or v < n)


def _map(v: Any) -> bool:
    """An encoded map (:func:`deepvid_plugin.core.encode.encode_map`)."""
    return (isinstance(v, dict) and isinstance(v.get("shape"), list)
            and all(_int(s) and s >= 0 for s in v["shape"]) and _number(v.get("scale"))
            and isinstance(v.get("data"), str))


def _optional(check: Callable[..., bool]) -> Callable[..., bool]:
    return lambda v, n: v is None or check(v, n)


#: field type -> ``(value, number of classes or None) -> ok``, with what the message says.
FIELD_TYPES: dict[str, tuple[Callable[[Any, int | None], bool], str]] = {
    "int": (lambda v, n: _int(v), "an int"),
    "count": (lambda v, n: _int(v) and v >= 0, "an int >= 0"),
    "number": (lambda v, n: _number(v), "a finite number"),
    "number?": (_optional(lambda v, n: _number(v)), "a finite number or null"),
    "bool": (lambda v, n: isinstance(v, bool), "true or false"),
    "bool?": (_optional(lambda v, n: isinstance(v, bool)), "true, false or null"),
    "class": (_class, "a class index"),
    "class?": (_optional(_class), "a class index or null"),
    "numbers": (lambda v, n: isinstance(v, list) and all(_number(x) for x in v),
                "a list of finite numbers"),
    "classes": (lambda v, n: isinstance(v, list) and all(_int(x) for x in v),
                "a list of ints"),
    "dict": (lambda v, n: isinstance(v, dict), "an object"),
    "dict?": (_optional(lambda v, n: isinstance(v, dict)), "an object or null"),
    "map": (lambda v, n: _map(v), "an encoded map {shape, scale, data}"),
    "list": (lambda v, n: isinstance(v, list), "a list"),
}

#: fields with one meaning in every kind's summaries (the API and the frontend's grid read them).
COMMON_FIELDS: dict[str, str] = {
    "step": "int", "schema_version": "int", "kind_version": "int", "headline": "number?",
    "predicted": "class?", "changed": "bool", "trustworthy": "bool?", "probs": "numbers",
    "fidelity": "dict", "thumb": "map",
}


def check_fields(fields: Mapping[str, str]) -> None:
    """``fields`` (a kind's ``summary_fields``) names only known field types."""
    for name, kind in fields.items():
        if kind not in FIELD_TYPES:
            raise ValueError(f"summary_fields[{name!r}]: expected one of {sorted(FIELD_TYPES)}, "
                             f"got {kind!r}")


def check_summary(summary: Mapping[str, Any], fields: Mapping[str, str],
                  n_classes: int | None = None) -> None:
    """Raise :class:`SummaryError` naming the first field of ``summary`` that does not have the
    type ``COMMON_FIELDS`` or ``fields`` declare (classes within ``n_classes`` when known)."""
    if "headline" not in summary:
        raise SummaryError("field 'headline' is missing")
    for name, kind in {**COMMON_FIELDS, **fields}.items():
        if name not in summary:
            continue
        check, what = FIELD_TYPES[kind]
        value = summary[name]
        if not check(value, n_classes):
            within = f" in [0, {n_classes})" if n_classes is not None and "class" in kind else ""
            raise SummaryError(f"field {name!r}: expected {what}{within}, got {value!r:.80}")
    probs = summary.get("probs")
    if n_classes is not None and isinstance(probs, list) and probs and len(probs) != n_classes:
        raise SummaryError(f"field 'probs': expected {n_classes} probabilities (one per class), "
                           f"got {len(probs)}")


def check_label(label: Any, n_classes: int | None) -> Any:
    """A subject's stored true label: ``None`` or a class index (``SummaryError`` otherwise)."""
    if label is None or _class(label, n_classes):
        return label
    within = f" in [0, {n_classes})" if n_classes is not None else ""
    raise SummaryError(f"label: expected a class index{within} or null, got {label!r:.80}")


__all__ = ["COMMON_FIELDS", "FIELD_TYPES", "SummaryError", "check_fields", "check_label",
           "check_summary"]
