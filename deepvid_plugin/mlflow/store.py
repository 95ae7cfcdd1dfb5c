"""`MLflowStore`: the :class:`deepvid_plugin.api.RecordStore` over MLflow runs.

Reads the layout of :mod:`.layout` through an ``MlflowClient``. A finished run never changes, so
everything read from one is cached by run id; for a running run only the immutable per-step files
are cached and the listing is re-read, so a live page sees new steps.

Requests are what costs (over HTTP each one is a round trip through the tracking server): the
overview comes from ``index.json`` plus the step files it does not cover, and the records of a
finished run from its per-instance bundles (:mod:`.bundle`, one request per instance; all of a
run's in one call with :meth:`MLflowStore.prefetch`). Runs still in progress, and steps a bundle
does not cover, fall back to the per-step record files, fetched one instance folder at a time.

Unreadable pieces never hide the rest: a corrupt or newer-layout step file, or a summary of a
record written with a newer ``schema_version``, is skipped and named in the overview's
``warnings`` (and in ``warnings.warn``); a corrupt record raises ``RecordDecodeError`` from
:meth:`MLflowStore.record`, which the API turns into a 404 naming it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Any

import numpy as np

from deepvid_plugin.core import kinds
from deepvid_plugin.core.record import Record, RecordDecodeError
from deepvid_plugin.core.store import InstanceOverview, MetricSeries, NoDataError, RunOverview
from deepvid_plugin.mlflow import bundle, layout
from deepvid_plugin.mlflow.records import RecordFetcher
from deepvid_plugin.mlflow.runstate import RunState

logger = logging.getLogger(__name__)

_FINISHED = ("FINISHED", "FAILED", "KILLED")
#: metrics read per run at most (one history request each; the API shows the first by name).
MAX_METRICS = 64


class NoDeepVIDDataError(NoDataError):
    """The run exists but holds no DeepVID data (nothing under ``deepvid/``), or none of the
    asked kind; an :class:`deepvid_plugin.api.NoDataError`, so the API says so."""


class RunNotFoundError(KeyError):
    """No MLflow run has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


class MLflowStore:
    """DeepVID data of MLflow runs.

    Args:
        client: an ``MlflowClient`` (default: one for ``tracking_uri``).
        tracking_uri: used only to build the default client.
        experiment_ids: restrict :meth:`runs` to these experiments (default: all).
        run_ids: restrict :meth:`runs` to these runs.
        max_runs: at most this many runs are listed (newest first).
        live_ttl_s: a running run is re-listed at most this often (one page load asks the
            store several times; finished runs are read once).
        resolve_artifact_uri: maps a run's artifact URI to where it can be read from; the MLflow
            app uses it to read ``mlflow-artifacts:/`` URIs straight from the server's
            artifact destination.
    """

    def __init__(self, client: Any = None, *, tracking_uri: str | None = None,
                 experiment_ids: list[str] | None = None, run_ids: list[str] | None = None,
                 max_runs: int = 200, live_ttl_s: float = 2.0,
                 resolve_artifact_uri: Any = None):
        if client is None:
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=tracking_uri)
        self.client = client
        self.experiment_ids = None if experiment_ids is None else [str(e) for e in experiment_ids]
        self.run_ids = None if run_ids is None else [str(r) for r in run_ids]
        self.max_runs = max_runs
        self.live_ttl_s = float(live_ttl_s)
        self.resolve_artifact_uri = resolve_artifact_uri
        self._states: dict[tuple[str, str], RunState] = {}  # (run, kind) -> what was read
        self._listings: dict[tuple[str, ...] | None, tuple[float, list]] = {}
        self._repos: dict[str, Any] = {}
        self._starts: dict[str, int | None] = {}  # run id -> start time (ms), from listings
        self._lock = threading.RLock()  # the app serves from threads; one state per run
        self._fetch = RecordFetcher(self._download, self._lock)

    # ---- listing -----------------------------------------------------------------------------
    def runs(self, experiment_ids: list[str] | None = None) -> list[tuple[str, str]]:
        """``(run id, run name)`` of the runs with DeepVID data, newest first (``experiment_ids``
        overrides the store's own filter)."""
        if self.run_ids is not None and experiment_ids is None:
            out = []
            for run_id in self.run_ids:
                try:
                    info = self._run_info(run_id)
                    self.kinds(run_id)  # a KeyError too when the run holds no data
                except KeyError:
                    continue
                out.append((run_id, info.run_name or run_id))
            return out
        experiment_ids = experiment_ids if experiment_ids is not None else self.experiment_ids
        cache_key = None if experiment_ids is None else tuple(experiment_ids)
        with self._lock:
            # compare answers name their runs, so one page load lists them several times.
            hit = self._listings.get(cache_key)
            if hit is not None and time.monotonic() - hit[0] < self.live_ttl_s:
                return list(hit[1])
        if experiment_ids is None:
            experiment_ids = [e.experiment_id for e in self.client.search_experiments()]
        if not experiment_ids:
            return []
        found = self.client.search_runs(
            experiment_ids, filter_string=f"tags.`{layout.LAYOUT_TAG}` != ''",
            max_results=self.max_runs, order_by=["attributes.start_time DESC"])
        listing = [(r.info.run_id, r.info.run_name or r.info.run_id) for r in found]
        with self._lock:
            self._starts.update({r.info.run_id: r.info.start_time for r in found})
            self._listings[cache_key] = (time.monotonic(), listing)
        return list(listing)

    def started(self, run: str) -> float | None:
        """When ``run`` began (seconds since the epoch), or ``None``."""
        with self._lock:
            ms = self._starts.get(run)
        if ms is None:
            try:
                ms = self._run_info(run).start_time
            except KeyError:
                return None
        return None if ms is None else ms / 1000.0

    # ---- RecordStore -------------------------------------------------------------------------
    def kinds(self, run: str) -> list[str]:
        """The kinds ``run`` holds data of (known ones in registry order, then unknown ones)."""
        self._run_info(run)
        top = self._top(run)
        found = {n for n, f in top.items() if f.is_dir and n not in layout.RESERVED}
        if "steps" in top or "index.json" in top:  # layout 1
            found.add(layout.LEGACY_KIND)
        if not found:
            raise NoDeepVIDDataError(f"MLflow run {run!r} has no DeepVID data")
        known = [k for k in kinds.names() if k in found]
        return known + sorted(found - set(known))

    def overview(self, run: str, *, kind: str, instance: str | None = None) -> RunOverview:
        state = self._state(run, kind)
        rows = []
        for iid, inst in state.instances.items():
            if instance is not None and iid != instance:
                continue
            image = inst["image"]
            if image is None:  # the first step file was unreadable: keep the row, blank image
                image = np.zeros((1, 1, 1), np.float32)
            rows.append(InstanceOverview(iid, inst["label"], image,
                                         [s for _, s in sorted(inst["steps"].items())]))
        return RunOverview(list(state.class_names), rows, list(state.warnings))

    def metrics(self, run: str) -> list[MetricSeries]:
        """The run's own metrics (``mlflow.log_metric``, the callback's ``log_metrics``), without
        DeepVID's (``deepvid/...``), each with its full history."""
        from mlflow.exceptions import MlflowException

        try:
            data = self.client.get_run(run).data
        except MlflowException:
            raise RunNotFoundError(f"MLflow run {run!r} not found") from None
        names = sorted(k for k in data.metrics if not k.startswith(layout.ROOT + "/"))
        out = []
        for name in names[:MAX_METRICS]:
            history = sorted(self.client.get_metric_history(run, name),
                             key=lambda m: (m.step, m.timestamp))
            out.append(MetricSeries(name, [int(m.step) for m in history],
                                    [float(m.value) for m in history]))
        return out

    def record(self, run: str, instance: str, step: int, *, kind: str) -> Any:
        """The record of ``kind`` (its typed view), with its once-per-subject arrays put back
        when they are readable."""
        state = self._state(run, kind)
        inst = state.instances.get(instance)
        if inst is None or (int(step) not in inst["steps"]
                            and (instance, int(step)) not in state.skipped):
            raise KeyError((run, instance, step))
        key = inst["key"]
        data = self._fetch.record_bytes(state, key, int(step))
        env = Record.decode(data)  # RecordDecodeError / NewerSchemaError propagate
        named = state.crcs.get((key, int(step)))
        if named is not None and bundle.crc32(data) != named:
            # Two writers on one run overwrite each other's files: never serve one writer's
            # record under the other's summary.
            raise RecordDecodeError(f"artifact {state.paths.records}/"
                                    f"{layout.record_file(key, step)} is not the record its step "
                                    f"summary names (CRC mismatch): another writer overwrote one "
                                    f"of them; log each run from one process")
        if env.kind != kind or env.subject != instance or env.step != int(step):
            raise RecordDecodeError(f"artifact {state.paths.records}/"
                                    f"{layout.record_file(key, step)} holds {env.kind} subject "
                                    f"{env.subject!r} step {env.step}, expected {kind} "
                                    f"{instance!r} step {step}")
        env = kinds.validated(env)  # newer kind_version, broken rules: the API answers 404
        once = self._fetch.subject_arrays(state, key)
        if once:
            try:
                env = kinds.prepare(env.with_arrays(once))[1]
            except ValueError as e:
                # Only the per-subject arrays are lost; record_impl names missing neighbours.
                logger.warning("run %r: per-subject arrays of %r do not fit its record at "
                               "step %d: %s", run, key, step, e)
        return kinds.view(env)

    # ---- reading a run -----------------------------------------------------------------------
    def _state(self, run: str, kind: str) -> RunState:
        if not isinstance(run, str) or not run:
            raise KeyError(run)
        with self._lock:
            state = self._states.get((run, kind))
            if state is not None and time.monotonic() - state.refreshed < self.live_ttl_s:
                return state
            found = self._get_run(run)
            info, revision = found.info, found.data.tags.get(layout.REVISION_TAG)
            if state is not None and state.complete and state.revision == revision:
                state.refreshed = time.monotonic()
                return state  # finished and unchanged: nothing to list again
            if state is not None and state.revision != revision:
                # The writer uploaded more (a retried step, bundles after the run ended): what
                # was read of the run, misses included, may be out of date.
                for key in [k for k in self._states if k[0] == run]:
                    del self._states[key]
                self._fetch.forget(run)
                state = None
            if state is None:
                state = RunState(run, kind)
                state.revision = revision
            state.name = info.run_name or run
            state.artifact_uri = info.artifact_uri
            state.finished = info.status in _FINISHED
            self._refresh(run, state)
            self._states[(run, kind)] = state  # only once readable: a miss is asked again
            state.refreshed = time.monotonic()
            return state

    def _run_info(self, run: str):
        return self._get_run(run).info

    def _get_run(self, run: str):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run)
        except MlflowException as e:
            if getattr(e, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE",
                                                 "NOT_FOUND"):
                raise RunNotFoundError(f"MLflow run {run!r} not found") from None
            raise

    def _top(self, run: str) -> dict[str, Any]:
        return {os.path.basename(f.path): f for f in self._list(run, layout.ROOT)}

    def _refresh(self, run: str, state: RunState) -> None:
        kind = state.kind
        if not state.located:  # first listing: which layout, and is there data of this kind?
            top = self._top(run)
            if not top:
                raise NoDeepVIDDataError(f"MLflow run {run!r} has no DeepVID data (nothing under "
                                         f"{layout.ROOT}/); log some with deepvid_plugin's "
                                         "MLflowSink or DeepVIDCallback")
            if kind in top and top[kind].is_dir:
                state.paths = layout.paths(kind)
            elif kind == layout.LEGACY_KIND and ("steps" in top or "index.json" in top):
                state.paths = layout.paths(kind, legacy=True)  # written by layout 1
            else:
                raise NoDeepVIDDataError(f"MLflow run {run!r} has no {kind} data (nothing under "
                                         f"{layout.paths(kind).root}/)")
            unknown = sorted(n for n, f in top.items() if f.is_dir and n not in layout.RESERVED
                             and n not in kinds.names())
            if unknown and not state.unknown_warned:
                state.unknown_warned = True
                state.warn(f"run {run!r} holds explanations of kinds {unknown}, which "
                                  "this deepvid-plugin does not know; they were skipped "
                                  "(upgrade deepvid-plugin to see them)")
            state.located = True
        paths = state.paths
        here = {os.path.basename(f.path): f for f in self._list(run, paths.root)}
        if "index.json" in here and not state.index_read:
            state.index_read = True
            [(_, text)] = self._download_texts(run, [paths.index], keys=[None])
            state.read_index(text)
        listed = {}
        if "steps" in here:
            for f in self._list(run, paths.steps):
                name = os.path.basename(f.path)
                stem = name[:-5] if name.endswith(".json") else ""
                if stem.lstrip("-").isdigit():
                    listed[int(stem)] = f.path
        missing = sorted(s for s in listed if s not in state.read_steps)
        if missing:
            for step, text in self._download_texts(run, [listed[s] for s in missing],
                                                   directory=paths.steps, keys=missing):
                state.read_steps.add(step)
                state.read_step_file(step, text)
        if not state.instances and not state.warnings:
            raise NoDeepVIDDataError(f"MLflow run {run!r} has no {kind} records under "
                                     f"{paths.root}/")
        if state.finished and "bundles" in here:
            # Only finished runs: their writer has closed, so every listed bundle is whole.
            for f in self._list(run, paths.bundles):
                name = os.path.basename(f.path)
                if name.endswith(layout.BUNDLE_SUFFIX) and not f.is_dir:
                    state.bundles[name[:-len(layout.BUNDLE_SUFFIX)]] = f.path
        state.complete = state.finished

    # ---- downloads ---------------------------------------------------------------------------
    def _repo(self, run: str):
        """The run's artifact repository, resolved once: going through ``runs:/`` URIs would
        cost a ``get_run`` request per download."""
        with self._lock:
            repo = self._repos.get(run)
            if repo is None:
                from mlflow.store.artifact.artifact_repository_registry import (
                    get_artifact_repository,
                )

                uri = next((st.artifact_uri for (r, _), st in self._states.items() if r == run),
                           None)
                uri = uri or self._run_info(run).artifact_uri
                if self.resolve_artifact_uri is not None:
                    uri = self.resolve_artifact_uri(uri)
                repo = get_artifact_repository(uri, tracking_uri=self.client.tracking_uri)
                self._repos[run] = repo
            return repo

    def _list(self, run: str, path: str) -> list:
        return self._repo(run).list_artifacts(path)

    def _download(self, run: str, path: str, dst: str) -> str:
        return self._repo(run).download_artifacts(path, dst)

    def _download_texts(self, run: str, paths: list[str], directory: str | None = None,
                        keys: list[Any] | None = None) -> list[tuple[Any, str | None]]:
        """Download artifacts as text; many files of one folder come in one (parallel) call."""
        out = []
        tmp = tempfile.mkdtemp(prefix="deepvid-store-")
        try:
            if directory is not None and len(paths) > 4:
                local_dir = self._download(run, directory, tmp)
                for key, path in zip(keys, paths, strict=True):
                    out.append((key, _read_text(os.path.join(local_dir, os.path.basename(path)))))
            else:
                for key, path in zip(keys, paths, strict=True):
                    local = self._download(run, path, tmp)
                    out.append((key, _read_text(local)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    # ---- records -----------------------------------------------------------------------------
    def prefetch(self, run: str, kind: str) -> None:
        """Fetch every bundle of ``run``'s ``kind`` data in one batched download (``deepvid
        compare`` reads all instances; the live app reads one instance at a time and does not
        need this). A run without bundles (still in progress) is left to the lazy reads."""
        self._fetch.prefetch(self._state(run, kind))


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


__all__ = ["MLflowStore", "NoDeepVIDDataError", "RunNotFoundError"]
