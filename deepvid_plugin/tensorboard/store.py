"""`DataProviderStore`: the :class:`deepvid_plugin.api.RecordStore` over TensorBoard's data.

The read side's storage half, mirroring :mod:`deepvid_plugin.mlflow.store`: it reads records and
summaries through a ``DataProvider`` only, so it works the same under the Python multiplexer
(``--load_fast=false``) and RustBoard (``--load_fast=true``). :class:`OverviewCache` keeps
recently read run overviews (and the plugin's encoded answers) while a run's data is unchanged.
The HTTP half (routes, static files) is :mod:`.plugin`.
"""

from __future__ import annotations

import base64
import collections
import io
import logging
import os
import re
import threading
import warnings
from typing import Any

import numpy as np
from tensorboard import context as tb_context
from tensorboard import errors as tb_errors
from tensorboard.data import provider

from deepvid_plugin import api
from deepvid_plugin.core import kinds
from deepvid_plugin.core.record import Record, RecordDecodeError, decode_arrays
from deepvid_plugin.tensorboard import losses, manifest, metadata

__all__ = ["DataProviderStore", "OverviewCache", "blob_key_hint"]

logger = logging.getLogger(__name__)

# Large enough to keep every step: downsampling is decided by --samples_per_plugin (see loader).
_ALL = losses.ALL


def blob_key_hint(run: str, error: object) -> str:
    """What to tell a user whose run TensorBoard's fast loader cannot read records of."""
    return (f"TensorBoard cannot read the records of run {run!r} with its fast loader: a run "
            f"name holding a double quote or a backslash breaks RustBoard's blob keys "
            f"({error}). Start TensorBoard with --load_fast=false, or rename the run's "
            f"directory without those characters; its overview still reads")


def _natural_key(s: str) -> list[Any]:
    # "test-2" before "test-10", as a person would order instance ids.
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


def _decode_image(obj: Any) -> np.ndarray:
    """The uint8 instance image stored in the summary content (see TensorBoardSink)."""
    shape = [int(v) for v in obj["shape"]]
    return np.frombuffer(base64.b64decode(obj["data"]), np.uint8).reshape(shape)


class OverviewCache:
    """Recently read run overviews, each valid while the run's summary series are unchanged.

    An overview decodes one JSON summary per instance-step (12,800 for 64 instances x 200 steps)
    and a page load asks for it twice (``runs`` counts, ``instances`` draws), as does every
    ``compare``. An entry is keyed by ``(experiment, run, kind)`` and stamped with the run's
    *fingerprint*: every summary tag with its last step and wall time, as the data provider lists
    them. New or re-written data changes the fingerprint, so a stale entry is never served. The
    entry also keeps the gzipped ``instances`` and ``timeline`` answers, so serving them again
    costs no encoding.
    Entries are only ever read, never mutated, by the API.
    """

    def __init__(self, max_runs: int = 8):
        if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
            raise ValueError(f"max_runs: expected a positive int, got {max_runs!r}")
        self._max = max_runs
        self._entries: collections.OrderedDict[tuple, dict[str, Any]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, fingerprint: tuple, what: str) -> Any:
        """The cached ``what`` ("overview" or an encoded answer's name), or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry["fingerprint"] != fingerprint:
                return None
            self._entries.move_to_end(key)
            return entry.get(what)

    def put(self, key: tuple, fingerprint: tuple, what: str, value: Any) -> None:
        # ``value`` was read after ``fingerprint`` was listed, so it is at least that fresh.
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry["fingerprint"] != fingerprint:
                entry = self._entries[key] = {"fingerprint": fingerprint}
            entry[what] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


class DataProviderStore:
    """:class:`deepvid_plugin.api.RecordStore` over a TensorBoard ``DataProvider``.

    One read path for every kind: the tags name the kind (``deepvid/<kind>/<subject>/<role>``,
    see :mod:`.metadata`), and the kind registry says how to read what they hold. Version-1 tags
    (``deepvid/<id>/record|summary|neighbours``) read as kind ``deepvid``. Series of a kind this
    package does not know are skipped with a warning naming it.
    """

    def __init__(self, data_provider: provider.DataProvider, ctx: Any = None,
                 experiment_id: str = "", cache: OverviewCache | None = None,
                 logdir: str | None = None):
        self._dp = data_provider
        self._logdir = logdir  # where run directories are, to read writers' manifests
        self._ctx = ctx if ctx is not None else tb_context.RequestContext()
        self._eid = experiment_id
        self._cache = cache

    def _list(self, runs=None, tags=None) -> dict:
        flt = None if runs is None else provider.RunTagFilter(runs=runs, tags=tags)
        return self._dp.list_tensors(self._ctx, experiment_id=self._eid,
                                     plugin_name=metadata.PLUGIN_NAME, run_tag_filter=flt)

    @staticmethod
    def _summary_tags(tags, kind: str | None = None) -> dict[str, metadata.TagInfo]:
        out = {}
        for name in tags:
            info = metadata.parse(name)
            if info and info.role == metadata.ROLE_SUMMARY and (kind is None or info.kind == kind):
                out[name] = info
        return out

    def runs(self) -> list[tuple[str, str]]:
        listing = self._list()
        return [(r, r) for r in sorted(listing, key=_natural_key)
                if self._summary_tags(listing[r])]

    def kinds(self, run: str) -> list[str]:
        """The kinds ``run`` holds summaries of (known or not), in registry order first."""
        found = {i.kind for i in self._summary_tags(self._list([run]).get(run, {})).values()}
        if not found:
            raise KeyError(run)
        known = [k for k in kinds.names() if k in found]
        return known + sorted(found - set(known))

    def cache_key(self, run: str, kind: str) -> tuple:
        """The :class:`OverviewCache` key of ``run``'s ``kind`` data: ``(experiment, run, kind)``
        (the plugin keeps its encoded answers under the same key)."""
        return (self._eid, run, kind)

    def fingerprint(self, run: str, kind: str) -> tuple:
        """What identifies the data of ``run``: its summary tags with their last step and wall
        time. Raises ``KeyError`` when the run has no summaries of ``kind``."""
        return self._listing(run, kind)[2]

    def _listing(self, run: str, kind: str):
        listing = self._list([run]).get(run, {})
        summary_tags = self._summary_tags(listing, kind)
        if not summary_tags:
            if self._summary_tags(listing):
                raise api.NoDataError(f"run {run!r} has no {kind} data")
            raise KeyError(run)
        fingerprint = tuple(sorted((t, listing[t].max_step, listing[t].max_wall_time)
                                   for t in summary_tags))
        return listing, summary_tags, fingerprint

    def overview(self, run: str, *, kind: str, instance: str | None = None) -> api.RunOverview:
        listing, summary_tags, fingerprint = self._listing(run, kind)
        key = self.cache_key(run, kind)
        if self._cache is not None:
            hit = self._cache.get(key, fingerprint, "overview")
            if hit is not None:
                return hit
        if instance is not None:
            # The timeline of one subject: read its series only (not cached, it is partial).
            return self._read(run, kind, listing, {t: i for t, i in summary_tags.items()
                                                   if i.subject == instance})
        ov = self._read(run, kind, listing, summary_tags)
        if self._cache is not None:
            self._cache.put(key, fingerprint, "overview", ov)
        return ov

    def _read(self, run: str, kind_name: str, listing,
              summary_tags: dict[str, metadata.TagInfo]) -> api.RunOverview:
        warns: list[str] = []
        try:
            kind = kinds.get(kind_name)
        except kinds.UnsupportedKindError as e:
            warns.append(f"run {run!r}: {kind_name} data was skipped: {e}")
            return self._done(api.RunOverview([], [], warns))
        unknown = sorted({i.kind for i in self._summary_tags(listing).values()}
                         - set(kinds.names()))
        for name in unknown:
            warns.append(f"run {run!r} holds explanations of kind {name!r}, which this "
                         "deepvid-plugin does not know; they were skipped (upgrade "
                         "deepvid-plugin to see them)")
        data = self._dp.read_tensors(
            self._ctx, experiment_id=self._eid, plugin_name=metadata.PLUGIN_NAME,
            downsample=_ALL,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=list(summary_tags)),
        ).get(run, {}) if summary_tags else {}
        # A subject may have a version-1 and a current series (a v1 run resumed by v2): merged.
        by_subject: dict[str, list[str]] = {}
        for tag_name, info in summary_tags.items():
            by_subject.setdefault(info.subject, []).append(tag_name)
        class_names: list[str] = []
        instances = []
        records = self._record_steps(run, kind_name, list(by_subject))
        mixed: list[str] = []
        for subject in sorted(by_subject, key=_natural_key):
            tags = sorted(by_subject[subject], key=lambda t: summary_tags[t].legacy,
                          reverse=True)  # version-1 series first: a resumed run's newer wins
            try:
                content = {}
                for t in tags:
                    content.update(metadata.parse_plugin_metadata(listing[t].plugin_content))
                label = content.get("label")
                image = (_decode_image(content["image"]) if "image" in content
                         else np.zeros((1, 1, 1), np.uint8))
            except (ValueError, KeyError, TypeError) as e:
                warns.append(f"instance {subject!r} in run {run!r} was skipped: its summary "
                             f"metadata is unreadable ({e})")
                continue
            class_names = class_names or [str(c) for c in content.get("class_names", [])]
            try:
                label = kinds.read_label(label, class_names)
            except kinds.SummaryError as e:
                warns.append(f"the true label of {subject!r} in run {run!r} is shown as "
                             f"unknown: its stored {e}")
                label = None
            points = [d for t in tags for d in data.get(t, [])]
            if losses.interleaved(points):  # two writers at once: keep what belongs together
                points, dropped = losses.matching(points, records.times(subject))
                mixed.append(subject + (f" (steps {dropped} left out)" if dropped else ""))
            steps = self._steps(run, kind, subject, points, warns, len(class_names) or None)
            instances.append(api.InstanceOverview(subject, label, image, steps))
        if mixed:
            warns.append(f"run {run!r} was written by several writers at the same time (two "
                         f"callbacks or processes on one log directory); TensorBoard's reader "
                         f"mixes their events, so only summaries whose record it kept are shown "
                         f"for {', '.join(map(repr, mixed[:6]))}{' ...' if len(mixed) > 6 else ''}"
                         f". Log each run to its own directory")
        self._check_manifests(run, kind_name, instances, records, warns)
        return self._done(api.RunOverview(class_names, instances, warns))

    def _run_dir(self, run: str) -> str | None:
        """The run's directory on this machine, when TensorBoard reads a local logdir."""
        if not self._logdir or "://" in self._logdir:
            return None
        path = self._logdir if run == "." else os.path.join(self._logdir, run)
        return path if os.path.isdir(path) else None

    def _record_steps(self, run: str, kind: str, subjects: list[str]) -> losses.RecordSteps:
        return losses.RecordSteps(self._dp, self._ctx, self._eid, run, kind, subjects)

    def _check_manifests(self, run: str, kind: str, instances: list,
                         records: losses.RecordSteps, warns: list[str]) -> None:
        """Warn about records the run's writers logged that TensorBoard does not show."""
        directory = self._run_dir(run)
        expected = None if directory is None else manifest.written(directory, kind)
        if not expected:
            return
        if len(records.subjects) == 1:  # one subject's timeline: only its own losses
            expected = {s: v for s, v in expected.items() if s in records.subjects}
        seen = {i.id: {s["step"] for s in i.steps} & set(records.times(i.id))
                for i in instances}
        gaps = manifest.missing(expected, seen)
        if gaps:
            warns.append(losses.gaps_warning(run, kind, gaps,
                                             sum(len(v) for v in expected.values())))

    @staticmethod
    def _done(ov: api.RunOverview) -> api.RunOverview:
        for w in ov.warnings:
            warnings.warn(w, stacklevel=4)
        return ov

    @staticmethod
    def _steps(run: str, kind, iid: str, data, warns: list[str],
               n_classes: int | None) -> list[dict[str, Any]]:
        by_step: dict[int, dict[str, Any]] = {}
        for datum in data:
            where = f"instance {iid!r} at step {datum.step} in run {run!r}"
            try:
                raw = np.asarray(datum.numpy).item()
                summary = api.json_loads_object(raw)
            except ValueError as e:
                warns.append(f"{where} was skipped: its summary is unreadable ({e})")
                continue
            problem = kinds.summary_problem(kind, summary)
            if problem is not None:
                warns.append(f"{where} was skipped: {problem}")
                continue
            summary["step"] = int(datum.step)
            try:
                summary = kinds.read_summary(kind, summary, n_classes)
            except kinds.SummaryError as e:
                warns.append(f"{where} was skipped: its summary's {e}")
                continue
            by_step[int(datum.step)] = summary  # a re-written step (resumed run): last one wins
        return api.with_changed([by_step[s] for s in sorted(by_step)])

    def record(self, run: str, instance: str, step: int, *, kind: str) -> Any:
        """The record of ``kind`` (its typed view), with its once-per-subject arrays put back
        when they are readable."""
        spec = kinds.get(kind)  # UnsupportedKindError: the API answers 404 naming it
        rtag, stag = (metadata.tag(instance, metadata.ROLE_RECORD, kind),
                      metadata.tag(instance, metadata.ROLE_SUBJECT, kind))
        tags = [rtag, stag]
        if kind == metadata.LEGACY_KIND:  # version-1 series
            tags += [metadata.legacy_tag(instance, metadata.ROLE_RECORD),
                     metadata.legacy_tag(instance, metadata.KIND_NEIGHBOURS)]
        seqs = self._dp.read_blob_sequences(
            self._ctx, experiment_id=self._eid, plugin_name=metadata.PLUGIN_NAME,
            downsample=_ALL, run_tag_filter=provider.RunTagFilter(runs=[run], tags=tags),
        ).get(run, {})
        # The current series wins over version 1's; within one, a re-written step's last value.
        matching = next((m for m in ([d for d in seqs.get(t, []) if d.step == step]
                                     for t in tags[::2]) if m), None)
        if not matching:
            if step in self._record_steps(run, kind, [instance]).summary_steps(instance):
                raise RecordDecodeError(
                    "its summary is there but TensorBoard has no readable record of it: the "
                    "run's event file is damaged at that step")
            raise KeyError((run, instance, step))
        env = kinds.validated(Record.decode(self._blob(matching[-1], run)))
        once = self._subject_arrays(run, instance, seqs, tags)
        if once:
            try:
                env = kinds.prepare(env.with_arrays(once))[1]
            except ValueError as e:
                msg = (f"the per-{spec.subject} arrays {sorted(once)} of {kind} subject "
                       f"{instance!r} in run {run!r} do not fit its record at step {step}: {e}")
                logger.warning(msg)
                warnings.warn(msg, stacklevel=2)
        return kinds.view(env)

    def _subject_arrays(self, run: str, subject: str, seqs, tags: list[str]) -> dict:
        """The subject's once-per-subject arrays (current layout, else version-1 neighbours)."""
        for tag_name in tags[1::2]:
            data = seqs.get(tag_name, [])
            if not data:
                continue
            try:
                blob = self._blob(data[-1], run)
                if tag_name == tags[1]:
                    return decode_arrays(blob)
                return {"neighbours": np.load(io.BytesIO(blob), allow_pickle=False)}
            except (ValueError, OSError, KeyError) as e:
                msg = f"the stored images of {subject!r} in run {run!r} are unreadable: {e}"
                logger.warning(msg)
                warnings.warn(msg, stacklevel=3)
        return {}

    def _blob(self, datum, run: str) -> bytes:
        if not datum.values:
            raise RecordDecodeError(f"empty blob sequence at step {datum.step}")
        try:
            return self._dp.read_blob(self._ctx, blob_key=datum.values[0].blob_key)
        except tb_errors.NotFoundError as e:
            # Listed, yet not readable: RustBoard kept the event's entry but not its bytes
            # (a damaged event file).
            raise RecordDecodeError(f"TensorBoard lists it but cannot read it ({e}): the run's "
                                    f"event file is damaged at step {datum.step}") from e
        except tb_errors.InvalidArgumentError as e:
            # RustBoard (--load_fast=true) cannot parse its own blob keys for run names that
            # hold a double quote or a backslash; the summaries (tensors) still read.
            raise api.ApiError(400, blob_key_hint(run, e)) from None
