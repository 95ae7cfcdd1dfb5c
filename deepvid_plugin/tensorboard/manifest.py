"""What a TensorBoard sink wrote, kept beside its event file, so a reader can tell when
TensorBoard shows less than was written.

A damaged event file loses data silently: TensorBoard's Python loader (``--load_fast=false``)
stops at the first damaged event and shows nothing after it (15 of 24 records gone after 64
flipped bytes), its fast loader skips the damaged event (a record that 404s). Neither tells the
plugin. So every sink keeps ``.deepvid-manifest.<writer id>.json`` in its run directory: the
steps it wrote per kind and subject, rewritten at each flush. The plugin compares it with what
TensorBoard serves and says what is missing and why (:func:`missing`). TensorBoard ignores the
file; a run directory TensorBoard reads from elsewhere (``gs://``, ``--logdir_spec``) has no
local manifest to compare with, and is not checked.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Iterable, Mapping

PREFIX = ".deepvid-manifest."
logger = logging.getLogger(__name__)


class Manifest:
    """The steps one writer wrote to ``directory``: ``{kind: {subject: [steps]}}``."""

    def __init__(self, directory: str, writer_id: str):
        self.path = os.path.join(directory, f"{PREFIX}{writer_id}.json")
        self.steps: dict[str, dict[str, set[int]]] = {}
        self._dirty = False

    def add(self, kind: str, subject: str, step: int) -> None:
        self.steps.setdefault(kind, {}).setdefault(subject, set()).add(int(step))
        self._dirty = True

    def save(self) -> None:
        """Write the manifest (after the events it lists are on disk)."""
        if not self._dirty:
            return
        body = {"version": 1, "records": {k: {s: sorted(v) for s, v in subjects.items()}
                                          for k, subjects in self.steps.items()}}
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(body, f, separators=(",", ":"))
        os.replace(tmp, self.path)
        self._dirty = False


def written(directory: str, kind: str) -> dict[str, set[int]] | None:
    """Every writer's steps of ``kind`` in ``directory``, merged (``None``: no manifest there,
    e.g. logs of an older version, or a directory that is not local)."""
    paths = glob.glob(os.path.join(glob.escape(directory), f"{PREFIX}*.json"))
    if not paths:
        return None
    out: dict[str, set[int]] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                records = json.load(f)["records"].get(kind, {})
            for subject, steps in records.items():
                out.setdefault(str(subject), set()).update(int(s) for s in steps)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            # an unreadable manifest checks nothing; the data itself is still served
            logger.warning("deepvid: skipped the unreadable manifest %s: %r", path, e)
    return out


def missing(expected: Mapping[str, set[int]],
            seen: Mapping[str, Iterable[int]]) -> dict[str, list[int]]:
    """subject -> steps its writer wrote that the reader does not show."""
    out = {}
    for subject, steps in expected.items():
        gone = sorted(steps - set(seen.get(subject, ())))
        if gone:
            out[subject] = gone
    return out


__all__ = ["Manifest", "PREFIX", "missing", "written"]
