"""What TensorBoard's loaders lose or mix without a word, found and told by the reader.

Two writers at once on one run directory (old logs, from before writers took a lock): the
Python loader (``--load_fast=false``) reads the writers' event files one after the other and
keeps every summary, but one record per step, so a step's record can be one writer's and its
summary the other's (24 of 24 mismatched, measured). One writer's events come in wall-time
order, and the writers' files follow each other in the listing, so overlapping writers show as
a wall time that goes *back* along a series (:func:`interleaved`; a resumed run's files follow
each other in time and do not). The record and the summary of a step are written in one event,
so they share its wall time exactly: :func:`matching` keeps, per step, the summary of the record
TensorBoard kept, and drops a step that has none, so what is shown belongs together. (The fast
loader keeps only the newest writer's events: no mix, and nothing left to detect.)

Damaged event files: compared with what the writer listed in its manifest
(:mod:`.manifest`), by :func:`gaps_warning`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tensorboard.data import provider

from deepvid_plugin.tensorboard import metadata

#: large enough to keep every step (downsampling is --samples_per_plugin's business)
ALL = 1_000_000_000


class RecordSteps:
    """The steps (and their events' wall times) of the records TensorBoard holds for some
    subjects of one run, read once when first asked (keys only, not the records)."""

    def __init__(self, data_provider: Any, ctx: Any, experiment_id: str, run: str, kind: str,
                 subjects: list[str]):
        self._dp, self._ctx, self._eid = data_provider, ctx, experiment_id
        self._run, self._kind, self.subjects = run, kind, set(subjects)
        self._times: dict[str, dict[int, set[float]]] | None = None

    def _tags(self, subject: str, role: str) -> list[str]:
        tags = [metadata.tag(subject, role, self._kind)]
        if self._kind == metadata.LEGACY_KIND:
            tags.append(metadata.legacy_tag(subject, role))
        return tags

    def times(self, subject: str) -> dict[int, set[float]]:
        if self._times is None:
            tags = {t: s for s in self.subjects for t in self._tags(s, metadata.ROLE_RECORD)}
            seqs = self._dp.read_blob_sequences(
                self._ctx, experiment_id=self._eid,
                plugin_name=metadata.PLUGIN_NAME, downsample=ALL,
                run_tag_filter=provider.RunTagFilter(runs=[self._run], tags=list(tags)),
            ).get(self._run, {})
            self._times = {}
            for tag, data in seqs.items():
                mine = self._times.setdefault(tags[tag], {})
                for d in data:
                    if d.values:
                        mine.setdefault(int(d.step), set()).add(d.wall_time)
        return self._times.get(subject, {})

    def summary_steps(self, subject: str) -> set[int]:
        tags = self._tags(subject, metadata.ROLE_SUMMARY)
        data = self._dp.read_tensors(
            self._ctx, experiment_id=self._eid, plugin_name=metadata.PLUGIN_NAME,
            downsample=ALL, run_tag_filter=provider.RunTagFilter(runs=[self._run], tags=tags),
        ).get(self._run, {})
        return {int(d.step) for t in tags for d in data.get(t, [])}


def interleaved(points: Sequence[Any]) -> bool:
    """Whether a series' points (in the loader's order) came from writers writing at once."""
    latest = float("-inf")
    for p in points:
        if p.wall_time < latest:
            return True
        latest = p.wall_time
    return False


def matching(points: Sequence[Any], record_times: Mapping[int, set[float]]
             ) -> tuple[list[Any], list[int]]:
    """The summary points whose step's record TensorBoard kept (same event, same wall time),
    one per step, and the steps left with none."""
    kept: dict[int, Any] = {}
    for p in points:
        if p.wall_time in record_times.get(int(p.step), ()):
            kept[int(p.step)] = p
    dropped = sorted({int(p.step) for p in points} - set(kept))
    return [kept[s] for s in sorted(kept)], dropped


def gaps_warning(run: str, kind: str, gaps: Mapping[str, list[int]], total: int) -> str:
    """The warning for records a writer logged that the loader does not show."""
    n = sum(len(v) for v in gaps.values())
    where = "; ".join(f"{s!r} at steps {v[:8]}{' ...' if len(v) > 8 else ''}"
                      for s, v in list(gaps.items())[:4])
    more = f"; and {len(gaps) - 4} more subjects" if len(gaps) > 4 else ""
    return (f"run {run!r}: {n} of the {total} {kind} records its writer logged cannot be read "
            f"({where}{more}): an event file of the run is damaged or was cut short. "
            f"TensorBoard's --load_fast=false reader stops at the first damaged event and hides "
            f"everything after it; --load_fast=true skips only the damaged events")


__all__ = ["ALL", "RecordSteps", "gaps_warning", "interleaved", "matching"]
