"""`deepvid compare RUN_ID RUN_ID [...]`: a self-contained page comparing MLflow runs.

The page is the shared frontend's compare view over an inline snapshot: the same instance in two
runs side by side per step, their difference maps, fidelity and prediction curves. The first run
is the baseline (A); every other run can be set as B. Runs that track different instance sets are
compared on the intersection, with a visible note; a run without DeepVID data is named.

Module-level imports stay light: `deepvid --help` imports this module.
"""

from __future__ import annotations

import argparse
import os
import sys

#: bytes of full records (the detail panel) the page may carry; see deepvid_plugin.mlflow.pages.
_RECORD_BUDGET = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_ids", nargs="+", metavar="RUN_ID",
                        help="MLflow run ids; at least two, the first is the baseline (A)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's "
                             "default)")
    parser.add_argument("-o", "--output", default="compare.html",
                        help="page to write (default: %(default)s)")
    parser.add_argument("--title", default=None, help="page title")


class CompareError(Exception):
    """A comparison that cannot be made; the message is for the user."""


def build_page(run_ids: list[str], tracking_uri: str | None = None, title: str | None = None,
               record_budget: int = _RECORD_BUDGET, client=None) -> tuple[str, list[str]]:
    """``(html, messages)``: the compare page of ``run_ids`` and what the user should be told.

    Raises:
        CompareError: fewer than two distinct runs, an unknown run id, or fewer than two runs
            with DeepVID data.
    """
    from deepvid_plugin import api
    from deepvid_plugin.api import viewer
    from deepvid_plugin.core import kinds
    from deepvid_plugin.mlflow.pages import budgeted_snapshot
    from deepvid_plugin.mlflow.store import MLflowStore, NoDeepVIDDataError, RunNotFoundError

    if len(run_ids) < 2:
        raise CompareError(f"RUN_ID: expected at least two run ids, got {len(run_ids)}")
    if len(set(run_ids)) != len(run_ids):
        raise CompareError(f"RUN_ID: expected distinct run ids, got {run_ids}")
    from deepvid_plugin.mlflow import reach

    store = MLflowStore(client, tracking_uri=tracking_uri, run_ids=list(run_ids))
    where = f" at tracking URI {store.client.tracking_uri!r}"
    # MLflow's client would retry a dead server for minutes before a traceback
    away = reach.probe(reach.tracking_uri_of(store.client))
    if away is not None:
        raise CompareError(f"--tracking-uri: the MLflow server{where} does not answer ({away}); "
                           "start it, or pass the URI of one that runs")
    messages: list[str] = []
    usable: list[str] = []
    for run in run_ids:
        try:
            store.kinds(run)
        except RunNotFoundError:
            raise CompareError(f"MLflow run {run!r} not found{where}") from None
        except NoDeepVIDDataError as e:
            messages.append(f"{e}; it is left out of the comparison")
            continue
        usable.append(run)
    if len(usable) < 2:
        raise CompareError("nothing to compare: " + "; ".join(messages))
    for run in usable:
        for kind in store.kinds(run):  # every record of a finished run in one batched download
            if kind in kinds.names():
                store.prefetch(run, kind)
    base = usable[0]
    # The baseline against each other run, in that order only: the page offers exactly these
    # pairs (its runs response lists them), so nothing is computed that cannot be shown.
    pairs = [(base, r) for r in usable[1:]]
    snap = budgeted_snapshot(store, usable, record_budget=record_budget, pairs=pairs)
    snap["runs"]["pairs"] = [list(p) for p in pairs]
    kind = api.resolve_kind(store, usable, None)  # the first kind every run holds
    ids = {r: [i["id"] for i in snap[_key("instances", run=r, kind=kind)]["instances"]]
           for r in usable}
    shared = set.intersection(*(set(v) for v in ids.values()))
    if not shared:
        raise CompareError("nothing to compare: the runs track no instance in common ("
                           + "; ".join(f"{r}: {len(v)} instances" for r, v in ids.items()) + ")")
    if any(set(v) != shared for v in ids.values()):
        only = {r: sorted(set(v) - shared) for r, v in ids.items()}
        messages.append(f"runs track different instance sets; comparing the {len(shared)} they "
                        "share (only in " + "; ".join(f"{r}: {', '.join(o) or '-'}"
                                                       for r, o in only.items()) + ")")
    snap["runs"]["warnings"] = list(snap["runs"]["warnings"]) + messages
    names = dict(store.runs())
    title = title or "DeepVID compare: " + " vs ".join(names.get(r, r) for r in usable)
    return viewer.standalone_html(snap, title=title, view="compare"), messages


def _key(route: str, **params: str) -> str:
    from deepvid_plugin.api import snapshot_key

    return snapshot_key(route, params)


def check_output(path: str) -> str:
    """``-o``: a file that can be written (checked before the runs are read, which is slow)."""
    if os.path.isdir(path):
        raise CompareError(f"-o/--output: expected a file to write the page to, got the "
                           f"directory {path!r} (e.g. {os.path.join(path, 'compare.html')!r})")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CompareError(f"-o/--output: expected a file in an existing directory, got {path!r} "
                           f"({parent!r} does not exist)")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise CompareError(f"-o/--output: expected a file this user can write, got {path!r} "
                           "(permission denied)")
    return path


def run(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    # A command-line tool: MLflow's per-download progress bars would bury the result.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        output = check_output(args.output)
        html, messages = build_page(list(args.run_ids), tracking_uri=args.tracking_uri,
                                    title=args.title)
        for m in messages:
            print(f"deepvid compare: note: {m}", file=sys.stderr)
        try:
            with open(output, "w", encoding="utf-8") as f:
                f.write(html)
        except OSError as e:  # a full disk, a file that became unwritable meanwhile
            raise CompareError(f"-o/--output: could not write {output!r}: {e}") from e
    except CompareError as e:
        print(f"deepvid compare: error: {e}", file=sys.stderr)
        return 2
    except MlflowException as e:  # the server answered with an error (auth, a bad URI, ...)
        print(f"deepvid compare: error: MLflow refused a request: {e}", file=sys.stderr)
        return 2
    print(f"wrote {output} ({len(html.encode('utf-8')) / 1e6:.1f} MB)")
    return 0
