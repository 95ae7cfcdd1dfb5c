"""Request parsing of ``http_api.md``: each ``parse_*`` reads one query parameter and raises
:class:`ApiError` (400 for a malformed value, 404 for an unknown thing) naming it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from deepvid_plugin.core import kinds
from deepvid_plugin.core.record import UnsupportedKindError


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


def param(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if value is None or value == "":
        raise ApiError(400, f"missing query parameter {name!r}")
    if not isinstance(value, str):
        raise ApiError(400, f"query parameter {name!r}: expected a string, got {value!r}")
    return value


def parse_run(args: Mapping[str, Any]) -> str:
    return param(args, "run")


def parse_instance(args: Mapping[str, Any]) -> str:
    return param(args, "instance")


def parse_step(args: Mapping[str, Any]) -> int:
    raw = param(args, "step")
    if not _INT_RE.fullmatch(raw):
        raise ApiError(400, f"query parameter 'step': expected an integer, got {raw!r}")
    return int(raw)


def parse_runs(args: Mapping[str, Any]) -> list[str]:
    raw = param(args, "runs")
    runs = raw.split(",")
    # Exactly two: the compare view draws A, B and B - A; a third run would be silently ignored.
    if any(not r for r in runs) or len(set(runs)) != len(runs) or len(runs) != 2:
        raise ApiError(
            400, f"query parameter 'runs': expected exactly two distinct comma-separated runs "
            f"(A,B), got {raw!r}")
    return runs


def parse_kind(args: Mapping[str, Any]) -> str | None:
    """``kind``: 400 when malformed, 404 when not registered; ``None`` when not given (the
    routes then serve the first kind the run holds, in registry order)."""
    raw = args.get("kind")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not _KIND_RE.fullmatch(raw):
        raise ApiError(400, f"query parameter 'kind': expected a kind name ([a-z0-9_]+), "
                       f"got {raw!r}")
    try:
        kinds.get(raw)
    except UnsupportedKindError as e:
        raise ApiError(404, f"query parameter 'kind': {e}") from None
    return raw


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
