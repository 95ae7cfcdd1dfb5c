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

from deepvid_plugin.mlflow import bundle, layout
from deepvid_plugin.record import SCHEMA_VERSION, ExplanationRecord, RecordDecodeError

logger = logging.getLogger(__name__)

_FINISHED = ("FINISHED", "FAILED", "KILLED")
#: bytes of encoded records kept in memory (a 28x28, 10-class record is ~15 KB).
_RECORD_CACHE_BYTES = 256 * 2**20


class NoDeepVIDDataError(KeyError):
    """The run exists but holds no DeepVID data (nothing under ``deepvid/``)."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is meant for people
        return str(self.args[0]) if self.args else "no DeepVID data"


class RunNotFoundError(KeyError):
    """No MLflow run has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


def _decode_image(obj: dict) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(obj["data"]), dtype=np.uint8)
    return q.reshape(obj["shape"]).astype(np.float32) / 255.0


class _RunState:
    """What has been read of one run: merged step summaries plus the files already seen."""

    def __init__(self) -> None:
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
        self._states: dict[str, _RunState] = {}
        self._records: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()
        self._record_bytes_total = 0
        self._record_dirs: set[tuple[str, str]] = set()
        self._neighbours: dict[tuple[str, str], np.ndarray | None] = {}
        self._listings: dict[tuple[str, ...] | None, tuple[float, list]] = {}
        self._bundles_read: set[tuple[str, str]] = set()  # (run, key): bundle already ingested
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
    def overview(self, run: str, instance: str | None = None):
        from deepvid_plugin.api import InstanceOverview, RunOverview

        state = self._state(run)
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

    def record(self, run: str, instance: str, step: int) -> ExplanationRecord:
        state = self._state(run)
        inst = state.instances.get(instance)
        if inst is None or (int(step) not in inst["steps"]
                            and (instance, int(step)) not in state.skipped):
            raise KeyError((run, instance, step))
        key = inst["key"]
        data = self._record_bytes(run, key, int(step))
        rec = ExplanationRecord.decode(data)  # RecordDecodeError / NewerSchemaError propagate
        if rec.instance_id != instance or rec.step != int(step):
            raise RecordDecodeError(f"artifact {layout.RECORDS_DIR}/{layout.record_file(key, step)}"
                                    f" holds instance {rec.instance_id!r} step {rec.step}, "
                                    f"expected {instance!r} step {step}")
        neighbours = self._neighbour_images(run, key)
        if neighbours is not None and neighbours.shape[0] == rec.neighbour_teacher.shape[0] \
                and neighbours.shape[1:] == rec.image.shape:
            rec = rec.with_neighbour_images(neighbours)
        return rec

    # ---- reading a run -----------------------------------------------------------------------
    def _state(self, run: str) -> _RunState:
        if not isinstance(run, str) or not run:
            raise KeyError(run)
        with self._lock:
            state = self._states.get(run)
            if state is not None and (state.complete or
                                      time.monotonic() - state.refreshed < self.live_ttl_s):
                return state
            info = self._run_info(run)
            if state is None:
                state = self._states[run] = _RunState()
            state.name = info.run_name or run
            state.artifact_uri = info.artifact_uri
            state.finished = info.status in _FINISHED
            self._refresh(run, state)
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

    def _refresh(self, run: str, state: _RunState) -> None:
        top = {os.path.basename(f.path): f for f in self._list(run, layout.ROOT)}
        if not top:
            raise NoDeepVIDDataError(f"MLflow run {run!r} has no DeepVID data (nothing under "
                                     f"{layout.ROOT}/); log some with deepvid_plugin's "
                                     "MLflowSink or DeepVIDCallback")
        if "index.json" in top and not state.index_read:
            state.index_read = True
            self._read_index(run, state)
        listed = {}
        if "steps" in top:
            for f in self._list(run, layout.STEPS_DIR):
                name = os.path.basename(f.path)
                stem = name[:-5] if name.endswith(".json") else ""
                if stem.lstrip("-").isdigit():
                    listed[int(stem)] = f.path
        missing = sorted(s for s in listed if s not in state.read_steps)
        if missing:
            for step, text in self._download_texts(run, [listed[s] for s in missing],
                                                   directory=layout.STEPS_DIR, keys=missing):
                state.read_steps.add(step)
                self._read_step_file(run, state, step, text)
        if not state.instances and not state.warnings:
            raise NoDeepVIDDataError(f"MLflow run {run!r} has no DeepVID records under "
                                     f"{layout.ROOT}/")
        if state.finished and "bundles" in top:
            # Only finished runs: their writer has closed, so every listed bundle is whole.
            for f in self._list(run, layout.BUNDLES_DIR):
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
        found = summary.get("schema_version", SCHEMA_VERSION)
        if isinstance(found, int) and found > SCHEMA_VERSION:
            # Left out of the overview, but record() still reads it and raises NewerSchemaError
            # (the API then answers 404 naming both versions) instead of "unknown step".
            state.skipped.add((iid, int(summary["step"])))
            self._warn(state, f"run {run!r}: skipped instance {iid!r} at step {summary['step']}: "
                              f"record has schema_version {found}, but this deepvid-plugin reads "
                              f"up to {SCHEMA_VERSION}; upgrade deepvid-plugin to read it")
            return False
        return True

    def _read_index(self, run: str, state: _RunState) -> None:
        [(_, text)] = self._download_texts(run, [layout.INDEX_PATH], keys=[None])
        obj = self._parse(run, state, layout.INDEX_PATH, text)
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
            self._warn(state, f"run {run!r}: skipped corrupt artifact {layout.INDEX_PATH}: {e!r}")

    def _read_step_file(self, run: str, state: _RunState, step: int, text: str | None) -> None:
        path = f"{layout.STEPS_DIR}/{layout.step_file(step)}"
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

                uri = self._states[run].artifact_uri if run in self._states else None
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
    def prefetch(self, run: str) -> None:
        """Fetch every bundle of ``run`` in one batched download (``deepvid compare`` reads all
        instances; the live app reads one instance at a time and does not need this).
        A run without bundles (still in progress) is left to the lazy per-instance reads."""
        state = self._state(run)
        with self._lock:
            wanted = [k for k in state.bundles if (run, k) not in self._bundles_read]
        if not wanted:
            return
        tmp = tempfile.mkdtemp(prefix="deepvid-store-")
        try:
            local_dir = self._download(run, layout.BUNDLES_DIR, tmp)
            for key in wanted:
                self._ingest_bundle(run, state, key,
                                    os.path.join(local_dir, layout.bundle_file(key)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _record_bytes(self, run: str, key: str, step: int) -> bytes:
        cache_key = (run, key, step)
        with self._lock:
            if cache_key in self._records:
                self._records.move_to_end(cache_key)
                return self._records[cache_key]
            state = self._states.get(run)
            from_bundle = (state is not None and key in state.bundles
                           and (run, key) not in self._bundles_read)
        if from_bundle:
            data = self._load_bundle(run, state, key).get(step)
            if data is not None:
                return data
        return self._record_file_bytes(run, key, step)

    def _load_bundle(self, run: str, state: _RunState, key: str) -> dict[int, bytes]:
        tmp = tempfile.mkdtemp(prefix="deepvid-store-")
        try:
            local = None
            try:
                local = self._download(run, state.bundles[key], tmp)
            except (OSError, _mlflow_exception()) as e:
                self._drop_bundle(run, state, key, f"download failed: {e}")
            return self._ingest_bundle(run, state, key, local) if local else {}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _ingest_bundle(self, run: str, state: _RunState, key: str, local: str) -> dict[int, bytes]:
        """Decode a downloaded bundle, cache the records that match what the step files name
        (and the neighbour images), and return them by step."""
        try:
            with open(local, "rb") as f:
                b = bundle.decode_bundle(f.read())
        except (OSError, bundle.BundleDecodeError) as e:
            self._drop_bundle(run, state, key, str(e))
            return {}
        path = state.bundles.get(key, layout.bundle_file(key))
        for problem in b.problems:
            self._warn(state, f"run {run!r}: {path}: {problem}; reading that step from its own "
                              "file instead")
        good = {step: data for step, data in b.records.items()
                if state.crcs.get((key, step), b.crcs[step]) == b.crcs[step]}
        with self._lock:
            self._bundles_read.add((run, key))
            for step, data in good.items():
                self._cache_put((run, key, step), data)
            if b.neighbours is not None and (run, key) not in self._neighbours:
                self._neighbours[(run, key)] = _load_npy(run, key, b.neighbours)
        return good

    def _drop_bundle(self, run: str, state: _RunState, key: str, why: str) -> None:
        """An unreadable bundle: say so once and read that instance from its per-step files."""
        with self._lock:
            path = state.bundles.pop(key, None)
            self._bundles_read.add((run, key))
        if path is not None:
            self._warn(state, f"run {run!r}: skipped unreadable artifact {path} ({why}); reading "
                              "its records step by step instead")

    def _cache_put(self, cache_key: tuple[str, str, int], data: bytes) -> None:
        old = self._records.pop(cache_key, None)
        if old is not None:
            self._record_bytes_total -= len(old)
        self._records[cache_key] = data
        self._record_bytes_total += len(data)
        while self._record_bytes_total > _RECORD_CACHE_BYTES and len(self._records) > 1:
            _, dropped = self._records.popitem(last=False)
            self._record_bytes_total -= len(dropped)

    def _record_file_bytes(self, run: str, key: str, step: int) -> bytes:
        """A record from the per-step files (runs in progress, steps no bundle covers)."""
        from mlflow.exceptions import MlflowException

        with self._lock:
            first_visit = (run, key) not in self._record_dirs
            self._record_dirs.add((run, key))
        tmp = tempfile.mkdtemp(prefix="deepvid-store-")
        try:
            if first_visit:
                # The compare view reads every step of an instance: fetch its folder in one go.
                local_dir = self._download(run, f"{layout.RECORDS_DIR}/{key}", tmp)
                fetched = {}
                for name in os.listdir(local_dir):
                    stem = name[:-5] if name.endswith(".dvid") else ""
                    if stem.lstrip("-").isdigit():
                        with open(os.path.join(local_dir, name), "rb") as f:
                            fetched[int(stem)] = f.read()
            else:
                local = self._download(run, f"{layout.RECORDS_DIR}/{layout.record_file(key, step)}",
                                       tmp)
                with open(local, "rb") as f:
                    fetched = {step: f.read()}
        except (OSError, MlflowException) as e:  # listed in a summary, but not downloadable
            raise KeyError((run, key, step)) from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with self._lock:
            for s, data in fetched.items():
                self._cache_put((run, key, s), data)
            if step not in fetched:
                raise KeyError((run, key, step))
            return fetched[step]

    def _neighbour_images(self, run: str, key: str) -> np.ndarray | None:
        from mlflow.exceptions import MlflowException

        with self._lock:
            if (run, key) in self._neighbours:
                return self._neighbours[(run, key)]
        tmp = tempfile.mkdtemp(prefix="deepvid-store-")
        arr = None
        try:
            local = self._download(run, f"{layout.NEIGHBOURS_DIR}/{layout.neighbours_file(key)}",
                                   tmp)
            with open(local, "rb") as f:
                arr = _load_npy(run, key, f.read())
        except (OSError, MlflowException) as e:
            # Only the neighbour images are lost; record_impl names that in its warnings.
            logger.warning("run %r: neighbour images of %r unreadable: %s", run, key, e)
            arr = None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with self._lock:
            self._neighbours[(run, key)] = arr
        return arr


def _mlflow_exception():
    from mlflow.exceptions import MlflowException

    return MlflowException


def _load_npy(run: str, key: str, data: bytes) -> np.ndarray | None:
    """Neighbour images from ``.npy`` bytes (no pickle); ``None``, logged, when unreadable."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        if arr.ndim != 4:
            raise ValueError(f"expected a 4-d array, got shape {arr.shape}")
        return arr
    except (OSError, ValueError) as e:
        logger.warning("run %r: neighbour images of %r unreadable: %s", run, key, e)
        return None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


__all__ = ["MLflowStore", "NoDeepVIDDataError", "RunNotFoundError"]
