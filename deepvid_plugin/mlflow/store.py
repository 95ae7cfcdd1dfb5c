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

import base64
import io
import itertools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np

from deepvid_plugin import kinds
from deepvid_plugin.api import NoDataError
from deepvid_plugin.mlflow import bundle, layout
from deepvid_plugin.record import Record, RecordDecodeError, decode_arrays

logger = logging.getLogger(__name__)

_FINISHED = ("FINISHED", "FAILED", "KILLED")
#: bytes of encoded records kept in memory (a 28x28, 10-class record is ~15 KB).
_RECORD_CACHE_BYTES = 256 * 2**20


class NoDeepVIDDataError(NoDataError):
    """The run exists but holds no DeepVID data (nothing under ``deepvid/``), or none of the
    asked kind; an :class:`deepvid_plugin.api.NoDataError`, so the API says so."""


class RunNotFoundError(KeyError):
    """No MLflow run has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


def _decode_image(obj: dict) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(obj["data"]), dtype=np.uint8)
    return q.reshape(obj["shape"]).astype(np.float32) / 255.0


class _RunState:
    """What has been read of one kind's data in one run: merged step summaries plus the files
    already seen."""

    def __init__(self, run: str, kind: str) -> None:
        self.run, self.kind = run, kind
        self.paths = layout.paths(kind)  # layout 1 (legacy) decided on the first listing
        self.class_names: list[str] = []
        self.instances: dict[str, dict[str, Any]] = {}  # id -> {"key", "label", "image", steps}
        self.read_steps: set[int] = set()
        self.index_read = False
        self.finished = False
        self.complete = False  # finished and fully read: nothing more to list
        self.warnings: list[str] = []
        self.name = ""
        self.artifact_uri = ""
        self.refreshed = float("-inf")
        self.skipped: set[tuple[str, int]] = set()  # (instance, step) of newer-schema summaries
        self.unknown_warned = False
        self.located = False  # which layout holds this kind's data is known
        self.crcs: dict[tuple[str, int], int] = {}  # (key, step) -> CRC-32 the writer named
        self.bundles: dict[str, str] = {}  # key -> artifact path of its bundle (finished runs)

    def merge(self, iid: str, key: str, label: Any, image: Any, summary: dict | None) -> None:
        inst = self.instances.setdefault(iid, {"key": key, "label": label, "image": None,
                                               "steps": {}})
        if image is not None and inst["image"] is None:
            inst["image"] = _decode_image(image)
        if summary is not None:
            inst["steps"][int(summary["step"])] = summary


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
        self._states: dict[tuple[str, str], _RunState] = {}  # (run, kind) -> what was read
        # the caches below are keyed by (run, kind, key[, step])
        self._records: OrderedDict[tuple[str, str, str, int], bytes] = OrderedDict()
        self._record_bytes_total = 0
        self._record_dirs: set[tuple[str, str, str]] = set()
        self._subjects: dict[tuple[str, str, str], dict[str, np.ndarray]] = {}
        self._listings: dict[tuple[str, ...] | None, tuple[float, list]] = {}
        self._bundles_read: set[tuple[str, str, str]] = set()  # bundle already ingested
        self._repos: dict[str, Any] = {}
        self._lock = threading.RLock()  # the app serves from threads; one state per run

    # ---- listing -----------------------------------------------------------------------------
    def runs(self, experiment_ids: list[str] | None = None) -> list[tuple[str, str]]:
        """``(run id, run name)`` of the runs with DeepVID data, newest first (``experiment_ids``
        overrides the store's own filter)."""
        if self.run_ids is not None and experiment_ids is None:
            out = []
            for run_id in self.run_ids:
                try:
                    state = self._state(run_id)
                except KeyError:
                    continue
                out.append((run_id, state.name))
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
            self._listings[cache_key] = (time.monotonic(), listing)
        return list(listing)

    # ---- RecordStore -------------------------------------------------------------------------
    def kinds(self, run: str) -> list[str]:
        """The kinds ``run`` holds data of (known ones in registry order, then unknown ones)."""
        self._run_info(run)
        top = self._top(run)
        found = {n for n, f in top.items() if f.is_dir and n not in layout.RESERVED}
        if "steps" in top or "index.json" in top:  # layout 1
            found.add("deepvid")
        if not found:
            raise NoDeepVIDDataError(f"MLflow run {run!r} has no DeepVID data")
        known = [k for k in kinds.names() if k in found]
        return known + sorted(found - set(known))

    def overview(self, run: str, instance: str | None = None, kind: str = "deepvid"):
        from deepvid_plugin.api import InstanceOverview, RunOverview

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

    def record(self, run: str, instance: str, step: int, kind: str = "deepvid") -> Any:
        """The record of ``kind`` (its typed view: an :class:`ExplanationRecord` for
        ``deepvid``), with its once-per-subject arrays put back when they are readable."""
        state = self._state(run, kind)
        inst = state.instances.get(instance)
        if inst is None or (int(step) not in inst["steps"]
                            and (instance, int(step)) not in state.skipped):
            raise KeyError((run, instance, step))
        key = inst["key"]
        data = self._record_bytes(state, key, int(step))
        env = Record.decode(data)  # RecordDecodeError / NewerSchemaError propagate
        if env.kind != kind or env.subject != instance or env.step != int(step):
            raise RecordDecodeError(f"artifact {state.paths.records}/"
                                    f"{layout.record_file(key, step)} holds {env.kind} subject "
                                    f"{env.subject!r} step {env.step}, expected {kind} "
                                    f"{instance!r} step {step}")
        kinds.check(env)  # UnsupportedKindError (newer kind_version) propagates
        once = self._subject_arrays(state, key)
        if once:
            try:
                env = kinds.prepare(env.with_arrays(once))[1]
            except ValueError as e:
                # Only the per-subject arrays are lost; record_impl names missing neighbours.
                logger.warning("run %r: per-subject arrays of %r do not fit its record at "
                               "step %d: %s", run, key, step, e)
        return kinds.view(env)

    # ---- reading a run -----------------------------------------------------------------------
    def _state(self, run: str, kind: str = "deepvid") -> _RunState:
        if not isinstance(run, str) or not run:
            raise KeyError(run)
        with self._lock:
            state = self._states.get((run, kind))
            if state is not None and (state.complete or
                                      time.monotonic() - state.refreshed < self.live_ttl_s):
                return state
            info = self._run_info(run)
            if state is None:
                state = _RunState(run, kind)
            state.name = info.run_name or run
            state.artifact_uri = info.artifact_uri
            state.finished = info.status in _FINISHED
            self._refresh(run, state)
            self._states[(run, kind)] = state  # only once readable: a miss is asked again
            state.refreshed = time.monotonic()
            return state

    def _run_info(self, run: str):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run).info
        except MlflowException as e:
            if getattr(e, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE",
                                                 "NOT_FOUND"):
                raise RunNotFoundError(f"MLflow run {run!r} not found") from None
            raise

    def _top(self, run: str) -> dict[str, Any]:
        return {os.path.basename(f.path): f for f in self._list(run, layout.ROOT)}

    def _refresh(self, run: str, state: _RunState) -> None:
        kind = state.kind
        if not state.located:  # first listing: which layout, and is there data of this kind?
            top = self._top(run)
            if not top:
                raise NoDeepVIDDataError(f"MLflow run {run!r} has no DeepVID data (nothing under "
                                         f"{layout.ROOT}/); log some with deepvid_plugin's "
                                         "MLflowSink or DeepVIDCallback")
            if kind in top and top[kind].is_dir:
                state.paths = layout.paths(kind)
            elif kind == "deepvid" and ("steps" in top or "index.json" in top):
                state.paths = layout.paths(kind, legacy=True)  # written by layout 1
            else:
                name = "DeepVID" if kind == "deepvid" else kind
                raise NoDeepVIDDataError(f"MLflow run {run!r} has no {name} data (nothing under "
                                         f"{layout.paths(kind).root}/)")
            unknown = sorted(n for n, f in top.items() if f.is_dir and n not in layout.RESERVED
                             and n not in kinds.names())
            if unknown and not state.unknown_warned:
                state.unknown_warned = True
                self._warn(state, f"run {run!r} holds explanations of kinds {unknown}, which "
                                  "this deepvid-plugin does not know; they were skipped "
                                  "(upgrade deepvid-plugin to see them)")
            state.located = True
        paths = state.paths
        here = {os.path.basename(f.path): f for f in self._list(run, paths.root)}
        if "index.json" in here and not state.index_read:
            state.index_read = True
            self._read_index(run, state)
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
                self._read_step_file(run, state, step, text)
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

    def _warn(self, state: _RunState, message: str) -> None:
        state.warnings.append(message)
        warnings.warn(message, stacklevel=4)
        logger.warning(message)

    def _parse(self, run: str, state: _RunState, path: str, text: str | None) -> dict | None:
        try:
            if text is None:
                raise ValueError("download failed")
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            version = int(obj.get("layout", 0))
        except (ValueError, TypeError) as e:
            self._warn(state, f"run {run!r}: skipped corrupt artifact {path}: {e}")
            return None
        if version > layout.LAYOUT_VERSION:
            self._warn(state, f"run {run!r}: skipped {path}: written in DeepVID MLflow layout "
                              f"{version}, this deepvid-plugin reads up to "
                              f"{layout.LAYOUT_VERSION}; upgrade deepvid-plugin to read it")
            return None
        return obj

    def _summary_ok(self, run: str, state: _RunState, iid: str, summary: Any) -> bool:
        if not isinstance(summary, dict) or "step" not in summary:
            self._warn(state, f"run {run!r}: skipped a malformed summary of instance {iid!r}")
            return False
        problem = kinds.summary_problem(kinds.get(state.kind), summary)
        if problem is not None:
            # Left out of the overview, but record() still reads it and raises NewerSchemaError
            # (the API then answers 404 naming both versions) instead of "unknown step".
            state.skipped.add((iid, int(summary["step"])))
            self._warn(state, f"run {run!r}: skipped instance {iid!r} at step {summary['step']}: "
                              f"{problem}")
            return False
        kinds.read_summary(kinds.get(state.kind), summary)
        return True

    def _read_index(self, run: str, state: _RunState) -> None:
        [(_, text)] = self._download_texts(run, [state.paths.index], keys=[None])
        obj = self._parse(run, state, state.paths.index, text)
        if obj is None:
            return
        try:
            state.class_names = state.class_names or [str(c) for c in obj["class_names"]]
            for inst in obj["instances"]:
                iid = str(inst["id"])
                state.merge(iid, str(inst["key"]), inst.get("label"), inst.get("image"), None)
                crcs = inst.get("record_crc32") or []
                for summary, crc in itertools.zip_longest(inst.get("summaries", []), crcs):
                    if summary is None:
                        break
                    if isinstance(crc, int) and isinstance(summary, dict) and "step" in summary:
                        state.crcs[(str(inst["key"]), int(summary["step"]))] = crc
                    if self._summary_ok(run, state, iid, summary):
                        state.merge(iid, str(inst["key"]), inst.get("label"), None, summary)
            state.read_steps.update(int(s) for s in obj.get("steps", []))
        except (KeyError, TypeError, ValueError) as e:
            self._warn(state, f"run {run!r}: skipped corrupt artifact {state.paths.index}: {e!r}")

    def _read_step_file(self, run: str, state: _RunState, step: int, text: str | None) -> None:
        path = f"{state.paths.steps}/{layout.step_file(step)}"
        obj = self._parse(run, state, path, text)
        if obj is None:
            return
        try:
            state.class_names = state.class_names or [str(c) for c in obj["class_names"]]
            for entry in obj["instances"]:
                iid = str(entry["id"])
                summary = entry["summary"]
                crc = entry.get("record_crc32")
                if isinstance(crc, int) and isinstance(summary, dict) and "step" in summary:
                    state.crcs[(str(entry["key"]), int(summary["step"]))] = crc
                ok = self._summary_ok(run, state, iid, summary)
                state.merge(iid, str(entry["key"]), entry.get("label"), entry.get("image"),
                            summary if ok else None)
        except (KeyError, TypeError, ValueError) as e:
            self._warn(state, f"run {run!r}: skipped corrupt artifact {path}: {e!r}")

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
    def prefetch(self, run: str, kind: str = "deepvid") -> None:
        """Fetch every bundle of ``run``'s ``kind`` data in one batched download (``deepvid
        compare`` reads all instances; the live app reads one instance at a time and does not
        need this). A run without bundles (still in progress) is left to the lazy reads."""
        state = self._state(run, kind)
        with self._lock:
            wanted = [k for k in state.bundles if (run, kind, k) not in self._bundles_read]
        if not wanted:
            return
        tmp = tempfile.mkdtemp(prefix="deepvid-store-")
        try:
            local_dir = self._download(run, state.paths.bundles, tmp)
            for key in wanted:
                self._ingest_bundle(state, key, os.path.join(local_dir, layout.bundle_file(key)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _record_bytes(self, state: _RunState, key: str, step: int) -> bytes:
        run, kind = state.run, state.kind
        cache_key = (run, kind, key, step)
        with self._lock:
            if cache_key in self._records:
                self._records.move_to_end(cache_key)
                return self._records[cache_key]
            from_bundle = key in state.bundles and (run, kind, key) not in self._bundles_read
        if from_bundle:
            data = self._load_bundle(state, key).get(step)
            if data is not None:
                return data
        return self._record_file_bytes(state, key, step)

    def _load_bundle(self, state: _RunState, key: str) -> dict[int, bytes]:
        tmp = tempfile.mkdtemp(prefix="deepvid-store-")
        try:
            local = None
            try:
                local = self._download(state.run, state.bundles[key], tmp)
            except (OSError, _mlflow_exception()) as e:
                self._drop_bundle(state, key, f"download failed: {e}")
            return self._ingest_bundle(state, key, local) if local else {}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _ingest_bundle(self, state: _RunState, key: str, local: str) -> dict[int, bytes]:
        """Decode a downloaded bundle, cache the records that match what the step files name
        (and the per-subject arrays), and return them by step."""
        run, kind = state.run, state.kind
        try:
            with open(local, "rb") as f:
                b = bundle.decode_bundle(f.read())
        except (OSError, bundle.BundleDecodeError) as e:
            self._drop_bundle(state, key, str(e))
            return {}
        path = state.bundles.get(key, f"{state.paths.bundles}/{layout.bundle_file(key)}")
        for problem in b.problems:
            self._warn(state, f"run {run!r}: {path}: {problem}; reading that step from its own "
                              "file instead")
        good = {step: data for step, data in b.records.items()
                if state.crcs.get((key, step), b.crcs[step]) == b.crcs[step]}
        with self._lock:
            self._bundles_read.add((run, kind, key))
            for step, data in good.items():
                self._cache_put((run, kind, key, step), data)
            extra = b.neighbours if b.neighbours is not None else b.subject
            if extra is not None and (run, kind, key) not in self._subjects:
                self._subjects[(run, kind, key)] = _load_subject(
                    run, key, extra, legacy=b.neighbours is not None)
        return good

    def _drop_bundle(self, state: _RunState, key: str, why: str) -> None:
        """An unreadable bundle: say so once and read that subject from its per-step files."""
        with self._lock:
            path = state.bundles.pop(key, None)
            self._bundles_read.add((state.run, state.kind, key))
        if path is not None:
            self._warn(state, f"run {state.run!r}: skipped unreadable artifact {path} ({why}); "
                              "reading its records step by step instead")

    def _cache_put(self, cache_key: tuple[str, str, str, int], data: bytes) -> None:
        old = self._records.pop(cache_key, None)
        if old is not None:
            self._record_bytes_total -= len(old)
        self._records[cache_key] = data
        self._record_bytes_total += len(data)
        while self._record_bytes_total > _RECORD_CACHE_BYTES and len(self._records) > 1:
            _, dropped = self._records.popitem(last=False)
            self._record_bytes_total -= len(dropped)

    def _record_file_bytes(self, state: _RunState, key: str, step: int) -> bytes:
        """A record from the per-step files (runs in progress, steps no bundle covers)."""
        from mlflow.exceptions import MlflowException

        run, kind = state.run, state.kind
        with self._lock:
            first_visit = (run, kind, key) not in self._record_dirs
            self._record_dirs.add((run, kind, key))
        tmp = tempfile.mkdtemp(prefix="deepvid-store-")
        try:
            if first_visit:
                # The compare view reads every step of an instance: fetch its folder in one go.
                local_dir = self._download(run, f"{state.paths.records}/{key}", tmp)
                fetched = {}
                for name in os.listdir(local_dir):
                    stem = name[:-5] if name.endswith(".dvid") else ""
                    if stem.lstrip("-").isdigit():
                        with open(os.path.join(local_dir, name), "rb") as f:
                            fetched[int(stem)] = f.read()
            else:
                local = self._download(
                    run, f"{state.paths.records}/{layout.record_file(key, step)}", tmp)
                with open(local, "rb") as f:
                    fetched = {step: f.read()}
        except (OSError, MlflowException) as e:  # listed in a summary, but not downloadable
            raise KeyError((run, key, step)) from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with self._lock:
            for s, data in fetched.items():
                self._cache_put((run, kind, key, s), data)
            if step not in fetched:
                raise KeyError((run, key, step))
            return fetched[step]

    def _subject_arrays(self, state: _RunState, key: str) -> dict[str, np.ndarray]:
        """The once-per-subject arrays of ``key`` (``{}`` when there are none or they are
        unreadable, which is logged)."""
        from mlflow.exceptions import MlflowException

        run, kind = state.run, state.kind
        with self._lock:
            if (run, kind, key) in self._subjects:
                return self._subjects[(run, kind, key)]
        if not kinds.get(kind).per_subject:
            return {}
        tmp = tempfile.mkdtemp(prefix="deepvid-store-")
        arrays: dict[str, np.ndarray] = {}
        try:
            local = self._download(
                run, f"{state.paths.subjects}/{state.paths.subject_file(key)}", tmp)
            with open(local, "rb") as f:
                arrays = _load_subject(run, key, f.read(), legacy=state.paths.legacy)
        except (OSError, MlflowException) as e:
            # Only these arrays are lost; record_impl names missing neighbour images.
            logger.warning("run %r: per-subject arrays of %r unreadable: %s", run, key, e)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with self._lock:
            self._subjects[(run, kind, key)] = arrays
        return arrays


def _mlflow_exception():
    from mlflow.exceptions import MlflowException

    return MlflowException


def _load_subject(run: str, key: str, data: bytes, legacy: bool) -> dict[str, np.ndarray]:
    """Per-subject arrays from their stored bytes (no pickle): layout 2's ``encode_arrays``
    blob, or layout 1's neighbour images ``.npy``; ``{}``, logged, when unreadable."""
    try:
        if not legacy:
            return decode_arrays(data)
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        if arr.ndim != 4:
            raise ValueError(f"expected a 4-d array, got shape {arr.shape}")
        return {"neighbours": arr}
    except (OSError, ValueError) as e:
        logger.warning("run %r: per-subject arrays of %r unreadable: %s", run, key, e)
        return {}


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


__all__ = ["MLflowStore", "NoDeepVIDDataError", "RunNotFoundError"]
