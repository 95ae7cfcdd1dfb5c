"""The MLflow sink's uploads waiting on disk: nothing is lost while the server is away.

Every upload the sink owes MLflow (a step: its artifacts, metrics and step images; the viewer
and index; the final bundles; a saved VAE) is first written here as one *item*, a directory::

    <root>/pending/<seq>/artifacts/...   files to upload, as they go under ``artifact_path``
    <root>/pending/<seq>/payload.json    artifact_path, metrics, images, tags, size
    <root>/pending/<seq>/progress.json   what of it has been sent (rewritten after each part)

An item is committed by renaming its finished directory into place, so the uploader never sees
half of one, and it is deleted only after its last part was accepted. Parts are sent in order
(artifacts, then metrics, then images) and each one is recorded in ``progress.json`` as soon
as it is accepted: a retry after a failure sends what is still owed and never logs a metric
twice. Uploads wait on disk, not in memory; ``max_pending_bytes`` bounds the disk they use (the
oldest waiting item is dropped, with a warning naming its step, when a new one would pass it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

_PAYLOAD, _PROGRESS, _ARTIFACTS = "payload.json", "progress.json", "artifacts"


def _write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"), allow_nan=False)
    os.replace(tmp, path)


def _tree_bytes(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


@dataclass
class Item:
    """One committed upload: ``payload`` says what to send, ``progress`` what was sent."""

    seq: int
    path: str
    payload: dict[str, Any]
    progress: dict[str, Any]

    @property
    def artifacts(self) -> str:
        return os.path.join(self.path, _ARTIFACTS)

    @property
    def label(self) -> str:
        return str(self.payload.get("label", f"upload {self.seq}"))

    def mark(self, **done: Any) -> None:
        """Record parts as sent (``artifacts=True``, ``metrics=<chunks sent>``, ...)."""
        self.progress.update(done)
        _write_json(os.path.join(self.path, _PROGRESS), self.progress)


class Builder:
    """An item being written; invisible to the uploader until :meth:`Spool.commit`."""

    def __init__(self, path: str):
        self.path = path
        self.artifacts = os.path.join(path, _ARTIFACTS)
        os.makedirs(self.artifacts)

    def add_file(self, relpath: str, source: str) -> None:
        """Put ``source`` at ``artifacts/<relpath>``: a hard link where the file system allows
        (the sink's own copy of the run never changes once written), else a copy."""
        dest = os.path.join(self.artifacts, relpath)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        dest = os.path.join(self.artifacts, relpath)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(data)


class Spool:
    """Items waiting for upload, oldest first, under ``root`` (created if missing).

    Thread-safe: the sink commits items, the uploader takes and deletes them.
    """

    def __init__(self, root: str, max_pending_bytes: int):
        self.root = root
        self.max_pending_bytes = int(max_pending_bytes)
        self._pending = os.path.join(root, "pending")
        os.makedirs(self._pending, exist_ok=True)
        self._lock = threading.Lock()
        self._items: list[Item] = []
        self._busy: int | None = None  # the item the uploader is sending (never dropped)
        self._next = 0
        self.dropped: list[str] = []  # labels of items dropped for space (for the warnings)

    def begin(self) -> Builder:
        return Builder(tempfile.mkdtemp(prefix=".building-", dir=self._pending))

    def commit(self, builder: Builder, payload: dict[str, Any]) -> Item:
        """Make ``builder``'s item visible to the uploader; drops the oldest waiting items if
        the spool would otherwise pass ``max_pending_bytes``."""
        size = _tree_bytes(builder.path)
        payload = {**payload, "bytes": size}
        _write_json(os.path.join(builder.path, _PAYLOAD), payload)
        with self._lock:
            seq = self._next
            self._next += 1
            path = os.path.join(self._pending, f"{seq:09d}")
            os.replace(builder.path, path)
            item = Item(seq, path, payload, {})
            _write_json(os.path.join(path, _PROGRESS), item.progress)
            self._items.append(item)
            self._enforce_limit()
        return item

    def discard(self, builder: Builder) -> None:
        shutil.rmtree(builder.path, ignore_errors=True)

    def _enforce_limit(self) -> None:
        total = sum(int(i.payload["bytes"]) for i in self._items)
        while total > self.max_pending_bytes and len(self._items) > 1:
            victim = next((i for i in self._items if i.seq != self._busy), None)
            if victim is None or victim is self._items[-1]:
                break  # never the newest: it is what the caller just handed over
            self._items.remove(victim)
            total -= int(victim.payload["bytes"])
            shutil.rmtree(victim.path, ignore_errors=True)
            self.dropped.append(victim.label)
            logger.warning("deepvid: the MLflow upload spool %s passed %d bytes; dropped the "
                           "waiting upload of %s", self.root, self.max_pending_bytes,
                           victim.label)

    def take(self) -> Item | None:
        """The oldest waiting item, marked busy until :meth:`done` or :meth:`release`."""
        with self._lock:
            if not self._items:
                return None
            self._busy = self._items[0].seq
            return self._items[0]

    def release(self) -> None:
        with self._lock:
            self._busy = None

    def done(self, item: Item) -> None:
        with self._lock:
            self._busy = None
            if item in self._items:
                self._items.remove(item)
        shutil.rmtree(item.path, ignore_errors=True)

    def waiting(self) -> list[Item]:
        with self._lock:
            return list(self._items)

    def pending_bytes(self) -> int:
        with self._lock:
            return sum(int(i.payload["bytes"]) for i in self._items)

    def remove_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


__all__ = ["Builder", "Item", "Spool"]
