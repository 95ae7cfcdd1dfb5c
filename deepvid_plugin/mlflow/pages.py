"""Self-contained pages (the ``viewer.html`` artifact, ``deepvid compare -o``) within a size budget.

A full record is 10-45 KB of JSON (every class's weight map plus the neighbour images), so all of
them for 16 instances x 100 steps would make a 20-70 MB page. The overview grid, the timelines and
the compare view only need step summaries and compare maps; full records (the detail panel) are
kept for each instance's most recent steps that fit ``record_budget``. A left-out step tells the
user so in the viewer (404 from the snapshot), and the live app (``mlflow server --app-name
deepvid``) serves every step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

#: bytes of full-record JSON a self-contained page may carry (the rest of a 16 x 100 page is
#: ~1.3 MB of summaries and the ~0.1 MB bundle, so the viewer stays under 5 MB).
DEFAULT_RECORD_BUDGET = 3_000_000


def budgeted_snapshot(store, runs: Sequence[str], record_budget: int = DEFAULT_RECORD_BUDGET,
                      pairs: Sequence[tuple[str, str]] | None = None) -> dict:
    """:func:`deepvid_plugin.api.snapshot` of ``runs`` keeping only the newest records that fit."""
    from deepvid_plugin import api

    if isinstance(record_budget, bool) or not isinstance(record_budget, int) or record_budget < 0:
        raise ValueError(f"record_budget: expected an int >= 0 (bytes), got {record_budget!r}")
    # (run, kind, subject) -> its steps, for every kind each run holds
    steps: dict[tuple[str, str, str], list[int]] = {}
    for run in runs:
        for kind in api.held_kinds(store, run, []):
            for inst in store.overview(run, kind=kind).instances:
                steps[(run, kind, inst.id)] = sorted(s["step"] for s in inst.steps)
    keep: set[tuple[str, str, str, int]] = set()
    for kind in {k for _, k, _ in steps}:
        of_kind = {key: ss for key, ss in steps.items() if key[1] == kind}
        sample = next(((*key, ss[-1]) for key, ss in of_kind.items() if ss), None)
        if sample is None or record_budget <= 0:
            continue
        # the budget is shared equally by the kinds; each keeps its subjects' newest steps
        size = _record_size(store, *sample)
        share = record_budget // len({k for _, k, _ in steps})
        per_subject = max(1, share // max(1, size * len(of_kind)))
        for key, ss in of_kind.items():
            keep.update((*key, s) for s in ss[-per_subject:])
    return api.snapshot(store, list(runs), pairs=pairs,
                        include_record=lambda run, kind, iid, step: (run, kind, iid, step) in keep)


def _record_size(store, run: str, kind: str, instance: str, step: int) -> int:
    from deepvid_plugin import api

    try:
        return len(json.dumps(api.record_impl(store, run, instance, step, kind),
                              separators=(",", ":")))
    except api.ApiError:
        return 50_000  # unreadable sample: assume a large record, keep few


__all__ = ["DEFAULT_RECORD_BUDGET", "budgeted_snapshot"]
