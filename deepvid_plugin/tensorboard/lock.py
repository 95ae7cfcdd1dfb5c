"""What a TensorBoard sink checks about its run directory before it writes: a name TensorBoard
can read back, and no other live writer (``.deepvid-writer.json``, see
:mod:`deepvid_plugin.core.writers`).

Two writers on one run directory each open their own event file, and TensorBoard's loaders
then merge them silently: the fast loader keeps only the newest writer's data, the Python one
serves one writer's records next to the other's summaries. So the sink takes the directory with
a small lock file (its :class:`~deepvid_plugin.core.writers.WriterId`), refreshes its time at
every flush, and removes it on close; a second writer is refused with a message naming the first.
TensorBoard ignores the file (only ``*tfevents*`` files are event files).
"""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref
from typing import Any

from deepvid_plugin.core import writers

LOCK_FILE = ".deepvid-writer.json"


def check_run_dir(name: str, directory: str) -> None:
    """Refuse a directory whose run TensorBoard's default loader cannot read records of."""
    bad = [c for c in ('"', "\\") if c in directory and not (c == "\\" and os.sep == "\\")]
    if bad:
        raise ValueError(
            f"{name}: expected a directory path without {' or '.join(map(repr, bad))}, got "
            f"{directory!r}: TensorBoard's default (fast) loader cannot read the records of a run "
            f"whose name holds one (RustBoard's blob keys break). Rename it (e.g. "
            f"{directory.replace(chr(34), '').replace(chr(92), '_')!r})")


class RunLock:
    """This process's claim on ``directory`` as its one DeepVID writer.

    Raises:
        WriterConflictError: another live writer holds it (the message names that writer).
    """

    def __init__(self, directory: str, owner: Any = None):
        self.directory = os.path.abspath(directory)
        self.path = os.path.join(self.directory, LOCK_FILE)
        self.writer = writers.WriterId.new()
        self._lock = threading.Lock()
        self._held = False
        self._acquire(retry_gc=True)
        # A sink dropped without close() (a notebook cell re-run) lets go of the run with it.
        self._finalizer = weakref.finalize(owner if owner is not None else self, _release,
                                           self.path, self.writer)

    def _holder(self) -> tuple[writers.WriterId | None, float | None]:
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
            return writers.WriterId.from_json(text), os.stat(self.path).st_mtime
        except OSError:
            return None, None

    def _acquire(self, retry_gc: bool) -> None:
        os.makedirs(self.directory, exist_ok=True)
        other, seen = self._holder()
        if other is not None and other.id != self.writer.id and other.live(last_seen=seen):
            if retry_gc and other.in_this_process():
                gc.collect()  # an unreachable sink of this process releases the run when collected
                return self._acquire(retry_gc=False)
            raise writers.WriterConflictError(writers.conflict_message(
                "logdir", f"TensorBoard run directory {self.directory!r}", other, last_seen=seen,
                remedy="Close the other writer (callback.close(), or use the callback as a "
                       "context manager), or log to another directory; if that process is gone, "
                       f"delete {self.path!r}."))
        tmp = f"{self.path}.{self.writer.id}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.writer.to_json())
        os.replace(tmp, self.path)
        # Two writers that started at once both found the run free: the file's last version wins.
        mine, _ = self._holder()
        if mine is None or mine.id != self.writer.id:
            raise writers.WriterConflictError(writers.conflict_message(
                "logdir", f"TensorBoard run directory {self.directory!r}", mine or self.writer,
                remedy="Log to another directory."))
        writers.opened(self.writer)
        self._held = True

    def touch(self) -> None:
        """Refresh the lock's time (other hosts judge a writer gone by it)."""
        if self._held:
            try:
                os.utime(self.path, (time.time(), time.time()))
            except OSError:
                pass  # the lock is advisory; the writes themselves report disk problems

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                self._finalizer.detach()
                _release(self.path, self.writer)


def _release(path: str, writer: writers.WriterId) -> None:
    writers.closed(writer)
    try:
        with open(path, encoding="utf-8") as f:
            holder = writers.WriterId.from_json(f.read())
        if holder is not None and holder.id == writer.id:
            os.remove(path)
    except OSError:
        pass  # already gone, or the directory was removed: nothing is held


__all__ = ["LOCK_FILE", "RunLock", "check_run_dir"]
