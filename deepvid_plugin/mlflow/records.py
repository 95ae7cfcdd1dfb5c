"""The records of MLflow runs: fetched from a finished run's per-subject bundles (one request per
subject) or, for runs in progress and steps no bundle covers, from the per-step record files (one
instance folder at a time), and kept in a byte-bounded cache. Unreadable bundles are named in the
run's warnings and their subject is read step by step instead; nothing else is lost.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from deepvid_plugin.core import kinds
from deepvid_plugin.core.record import decode_arrays
from deepvid_plugin.mlflow import bundle, layout
from deepvid_plugin.mlflow.runstate import RunState

logger = logging.getLogger("deepvid_plugin.mlflow.store")

#: bytes of encoded records kept in memory (a 28x28, 10-class record is ~15 KB).
RECORD_CACHE_BYTES = 256 * 2**20


class RecordFetcher:
    """Record bytes and per-subject arrays of MLflow runs, cached (keys: run, kind, subject
    key[, step]). ``download(run, artifact_path, local_dir) -> local path`` fetches one artifact
    (file or folder); ``lock`` is the store's, shared with its run states."""

    def __init__(self, download: Callable[[str, str, str], str], lock: threading.RLock):
        self._download = download
        self._lock = lock
        self._records: OrderedDict[tuple[str, str, str, int], bytes] = OrderedDict()
        self._record_bytes_total = 0
        self._record_dirs: set[tuple[str, str, str]] = set()
        self._subjects: dict[tuple[str, str, str], dict[str, np.ndarray]] = {}
        self._bundles_read: set[tuple[str, str, str]] = set()  # bundle already ingested

    def prefetch(self, state: RunState) -> None:
        """Every not yet read bundle of ``state``'s run and kind in one batched download."""
        run, kind = state.run, state.kind
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

    def record_bytes(self, state: RunState, key: str, step: int) -> bytes:
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

    def _load_bundle(self, state: RunState, key: str) -> dict[int, bytes]:
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

    def _ingest_bundle(self, state: RunState, key: str, local: str) -> dict[int, bytes]:
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
            state.warn(f"run {run!r}: {path}: {problem}; reading that step from its own "
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

    def _drop_bundle(self, state: RunState, key: str, why: str) -> None:
        """An unreadable bundle: say so once and read that subject from its per-step files."""
        with self._lock:
            path = state.bundles.pop(key, None)
            self._bundles_read.add((state.run, state.kind, key))
        if path is not None:
            state.warn(f"run {state.run!r}: skipped unreadable artifact {path} ({why}); "
                              "reading its records step by step instead")

    def _cache_put(self, cache_key: tuple[str, str, str, int], data: bytes) -> None:
        old = self._records.pop(cache_key, None)
        if old is not None:
            self._record_bytes_total -= len(old)
        self._records[cache_key] = data
        self._record_bytes_total += len(data)
        while self._record_bytes_total > RECORD_CACHE_BYTES and len(self._records) > 1:
            _, dropped = self._records.popitem(last=False)
            self._record_bytes_total -= len(dropped)

    def _record_file_bytes(self, state: RunState, key: str, step: int) -> bytes:
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

    def subject_arrays(self, state: RunState, key: str) -> dict[str, np.ndarray]:
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
        if arrays:  # a miss is asked again: the file may come with a writer's retried upload
            with self._lock:
                self._subjects[(run, kind, key)] = arrays
        return arrays

    def forget(self, run: str) -> None:
        """Drop everything cached of ``run`` (its artifacts changed: a later upload)."""
        with self._lock:
            for cache in (self._subjects, self._records):
                for key in [k for k in cache if k[0] == run]:
                    data = cache.pop(key)
                    if cache is self._records:
                        self._record_bytes_total -= len(data)
            self._record_dirs = {k for k in self._record_dirs if k[0] != run}
            self._bundles_read = {k for k in self._bundles_read if k[0] != run}


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


__all__ = ["RECORD_CACHE_BYTES", "RecordFetcher"]
