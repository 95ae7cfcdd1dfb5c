"""The snapshot a self-contained viewer answers from: every response, keyed by its request.

It is built from the route table (:data:`.routes.ROUTES`): each route lists the requests it
answers for a :class:`~.routes.Catalog` of runs, kinds, subjects and steps, so a new route is in
snapshots with no edit here.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping, Sequence

from deepvid_plugin.api.impl import instances_impl, kinds_impl, runs_impl
from deepvid_plugin.api.params import ApiError
from deepvid_plugin.api.routes import ROUTES, Catalog
from deepvid_plugin.core.store import RecordStore


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


#: routes whose answers build the catalog; every other route is enumerated from it.
_CATALOG_ROUTES = ("runs", "kinds", "instances")


def snapshot(store: RecordStore, runs: Sequence[str] | None = None, *,
             include_record: Callable[[str, str, str, int], bool] | None = None,
             timelines: bool = True,
             pairs: Sequence[tuple[str, str]] | None = None) -> dict[str, dict]:
    """Every response the frontend could ask for, keyed by :func:`snapshot_key`.

    ``runs`` restricts the snapshot to those runs (default: all). Every kind each run holds is
    included. Compare responses are included for every ordered pair of runs and every instance
    (and kind) both track.

    Size controls (a full record is ~10-45 KB of JSON, so 16 instances x 100 steps of them do not
    fit a viewer artifact): ``include_record(run, kind, instance, step)`` picks the full records to keep
    (default: all; a left-out one answers 404 in the viewer), ``timelines=False`` drops the
    timeline responses (the grid then has no maps: it draws them from each row's timeline, the
    overview's grid summaries leave them out), and ``pairs`` lists the ordered ``(A, B)`` run
    pairs to compare (default: all).
    """
    listing = runs_impl(store)
    wanted = [r["run"] for r in listing["runs"]] if runs is None else list(runs)
    known = {r["run"] for r in listing["runs"]}
    for r in wanted:
        if r not in known:
            raise ValueError(f"runs: {r!r} is not a run of this store; known: {sorted(known)}")
    listing["runs"] = [r for r in listing["runs"] if r["run"] in wanted]
    if pairs is None:
        pairs = [(a, b) for a in wanted for b in wanted if a != b]
    for a, b in pairs:
        if a not in wanted or b not in wanted or a == b:
            raise ValueError(f"pairs: expected pairs of two different runs among {wanted}, "
                             f"got {(a, b)!r}")

    out: dict[str, dict] = {snapshot_key("runs"): listing}
    held: dict[str, list[str]] = {}
    steps: dict[tuple[str, str], dict[str, list[int]]] = {}
    overviews: dict[tuple[str, str], dict] = {}
    for run in wanted:
        listed = kinds_impl(store, run)
        out[snapshot_key("kinds", {"run": run})] = listed
        held[run] = [k["kind"] for k in listed["kinds"]]
        for kind in held[run]:
            inst = instances_impl(store, run, kind)
            out[snapshot_key("instances", {"run": run, "kind": kind})] = inst
            overviews[(run, kind)] = inst
            steps[(run, kind)] = {i["id"]: [s["step"] for s in i["steps"]]
                                  for i in inst["instances"]}
    catalog = Catalog(runs=wanted, kinds=held, steps=steps, pairs=[tuple(p) for p in pairs],
                      timelines=timelines, include_record=include_record)
    for route in ROUTES.values():
        if route.requests is None or route.name in _CATALOG_ROUTES:
            continue
        for params in route.requests(catalog):
            try:
                out[snapshot_key(route.name, params)] = route.handle(store, params)
            except ApiError as e:
                # unreadable: the viewer answers 404 as the API would, and the run's overview
                # names it so the banner says what is missing
                if "run" not in params:
                    raise
                overviews[(params["run"], params["kind"])]["warnings"].append(
                    e.message)
    return out
