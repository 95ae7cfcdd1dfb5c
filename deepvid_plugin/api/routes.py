"""The route table of ``http_api.md``: one entry per route, served by every backend.

A backend (the TensorBoard plugin, the MLflow app, the snapshot of a self-contained viewer) only
implements :class:`~deepvid_plugin.core.store.RecordStore` and serves :data:`ROUTES`: each
:class:`Route` parses its query parameters (:mod:`.params`) and does the work (:mod:`.impl`,
:mod:`.compare`), returning a JSON-able dict or raising :class:`~.params.ApiError`. So a new route
is one entry here, and every backend serves it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from deepvid_plugin.api.compare import compare_impl
from deepvid_plugin.api.impl import (
    alerts_impl,
    instances_impl,
    kinds_impl,
    record_impl,
    runs_impl,
    timeline_impl,
)
from deepvid_plugin.api.metrics import metrics_impl
from deepvid_plugin.api.params import (
    ApiError,
    param,
    parse_class,
    parse_instance,
    parse_kind,
    parse_run,
    parse_runs,
    parse_step,
)
from deepvid_plugin.core.store import RecordStore


@dataclasses.dataclass(frozen=True)
class Catalog:
    """What a snapshot covers, for :attr:`Route.requests`: the runs, the kinds each holds, each
    ``(run, kind)``'s subjects with their steps, and the run pairs to compare."""

    runs: list[str]
    kinds: dict[str, list[str]]
    steps: dict[tuple[str, str], dict[str, list[int]]]
    pairs: list[tuple[str, str]]
    timelines: bool = True
    include_record: Callable[[str, str, str, int], bool] | None = None


def parse_run_list(args: Mapping[str, Any]) -> list[str]:
    """The ``run`` parameter as a one-run list (:attr:`Route.cache_runs`'s default)."""
    return [parse_run(args)]


@dataclasses.dataclass(frozen=True)
class Route:
    """One route of ``http_api.md``.

    Attributes:
        name: the path after the API base (``"instances"``).
        handle: ``(store, query args) -> body``; raises :class:`ApiError` for bad input.
        cache_name: for answers that depend only on the data of one kind in the runs that
            ``cache_runs`` names: ``args -> name`` the answer may be cached under while those
            runs' data is unchanged (the TensorBoard plugin keeps their gzipped bytes, next to a
            single run's overview). ``None``: not cacheable that way.
        cache_runs: ``args -> runs`` the answer depends on (default: the ``run`` parameter).
        requests: ``catalog -> query params`` of every request a self-contained viewer's
            snapshot answers (``None``: the route is not in snapshots).
    """

    name: str
    handle: Callable[[RecordStore, Mapping[str, Any]], dict[str, Any]]
    cache_name: Callable[[Mapping[str, Any]], str] | None = None
    cache_runs: Callable[[Mapping[str, Any]], list[str]] = parse_run_list
    requests: Callable[[Catalog], Iterable[dict[str, str]]] | None = None


def _instance_steps(c: Catalog) -> Iterable[tuple[str, str, str, list[int]]]:
    for run in c.runs:
        for kind in c.kinds[run]:
            for iid, steps in c.steps[(run, kind)].items():
                yield run, kind, iid, steps


def _timeline_requests(c: Catalog) -> Iterable[dict[str, str]]:
    if c.timelines:
        for run, kind, iid, _ in _instance_steps(c):
            yield {"run": run, "instance": iid, "kind": kind}


def _record_requests(c: Catalog) -> Iterable[dict[str, str]]:
    for run, kind, iid, steps in _instance_steps(c):
        for step in steps:
            if c.include_record is None or c.include_record(run, kind, iid, step):
                yield {"run": run, "instance": iid, "step": str(step), "kind": kind}


def _compare_requests(c: Catalog) -> Iterable[dict[str, str]]:
    for a, b in c.pairs:
        for kind in c.kinds[a]:
            if kind not in c.kinds[b]:
                continue
            theirs = c.steps[(b, kind)]
            for iid in c.steps[(a, kind)]:
                if iid in theirs:
                    base = {"instance": iid, "runs": f"{a},{b}", "kind": kind}
                    # The API's default (A's prediction) for older frontends and saved links,
                    # and each run's own prediction, which this frontend asks for by default.
                    yield base
                    yield {**base, "class": "own"}


def _cache_name(route: str, *params: str,
                optional: tuple[str, ...] = ()) -> Callable[[Mapping[str, Any]], str]:
    def name(args: Mapping[str, Any]) -> str:
        return "\0".join([route, *(param(args, p) for p in params),
                          *(str(args.get(p) or "") for p in optional)])
    return name


ROUTES: dict[str, Route] = {r.name: r for r in (
    Route("runs", lambda s, a: runs_impl(s),
          requests=lambda c: [{}]),
    Route("kinds", lambda s, a: kinds_impl(s, parse_run(a)),
          requests=lambda c: ({"run": r} for r in c.runs)),
    Route("alerts", lambda s, a: alerts_impl(s, parse_run(a)),
          requests=lambda c: ({"run": r} for r in c.runs)),
    Route("instances", lambda s, a: instances_impl(s, parse_run(a), parse_kind(a)),
          cache_name=_cache_name("instances"),
          requests=lambda c: ({"run": r, "kind": k} for r in c.runs for k in c.kinds[r])),
    Route("timeline", lambda s, a: timeline_impl(s, parse_run(a), parse_instance(a),
                                                 parse_kind(a)),
          cache_name=_cache_name("timeline", "instance"), requests=_timeline_requests),
    Route("record", lambda s, a: record_impl(s, parse_run(a), parse_instance(a), parse_step(a),
                                             parse_kind(a)),
          requests=_record_requests),
    # The run's own scalars (not DeepVID's data): read fresh each time, they are small.
    Route("metrics", lambda s, a: metrics_impl(s, parse_run(a)),
          requests=lambda c: ({"run": r} for r in c.runs)),
    # Compare reads one record per step in each run: its answer is kept while both runs'
    # data is unchanged, so going back to a class or a kind seen before costs nothing.
    Route("compare", lambda s, a: compare_impl(s, parse_instance(a), parse_runs(a),
                                               parse_kind(a), parse_class(a)),
          cache_name=_cache_name("compare", "instance", optional=("class",)),
          cache_runs=parse_runs, requests=_compare_requests),
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
