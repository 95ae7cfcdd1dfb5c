"""One writer per run: who is writing, and is that writer still alive?

Two writers on one run (a notebook cell re-run while the first callback is still open, two
processes given one log directory or one MLflow run) silently merge: TensorBoard's loaders show
one writer's records next to the other's summaries, MLflow counts every metric twice. So each
sink that owns a run announces itself (a lock file next to TensorBoard's event files, a tag on
the MLflow run) with a :class:`WriterId`, and refuses to start while another live writer holds
the run.

"Live": a writer in this process until its sink is closed (or garbage collected); a writer in
another process on this host while that process exists; a writer on another host while it was
seen within :data:`STALE_AFTER_S` (nothing else can be known about a remote process).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
import uuid

#: a writer on another host that has not been seen for this long is taken to be gone.
STALE_AFTER_S = 15 * 60

_live: set[str] = set()  # ids of the writers open in this process
_lock = threading.Lock()


class WriterConflictError(ValueError):
    """Another live writer holds the run; the message names it and what to do."""


@dataclasses.dataclass(frozen=True)
class WriterId:
    """A sink writing one run: a random id, its host and process, when it started."""

    id: str
    host: str
    pid: int
    started: float
    closed: bool = False

    @classmethod
    def new(cls) -> WriterId:
        return cls(uuid.uuid4().hex[:12], socket.gethostname(), os.getpid(), time.time())

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> WriterId | None:
        """The writer ``text`` describes, or ``None`` when it is not one (unreadable)."""
        try:
            obj = json.loads(text)
            return cls(str(obj["id"]), str(obj["host"]), int(obj["pid"]),
                       float(obj["started"]), bool(obj.get("closed", False)))
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        here = " (this process)" if self.in_this_process() else ""
        return f"writer {self.id}: pid {self.pid} on host {self.host!r}{here}, since {when}"

    def in_this_process(self) -> bool:
        return self.host == socket.gethostname() and self.pid == os.getpid()

    def live(self, last_seen: float | None = None) -> bool:
        """Whether this writer may still be writing (see the module docstring)."""
        if self.closed:
            return False
        if self.in_this_process():
            with _lock:
                return self.id in _live
        if self.host == socket.gethostname():
            return _pid_exists(self.pid)
        seen = last_seen if last_seen is not None else self.started
        return time.time() - seen < STALE_AFTER_S


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return False
    return True


def opened(writer: WriterId) -> None:
    """``writer`` is writing in this process (until :func:`closed`)."""
    with _lock:
        _live.add(writer.id)


def closed(writer: WriterId) -> None:
    with _lock:
        _live.discard(writer.id)


def conflict_message(what: str, where: str, other: WriterId, *, last_seen: float | None = None,
                     remedy: str) -> str:
    """The refusal: which run, which writer holds it, and what the user can do."""
    seen = ""
    if last_seen is not None:
        seen = f", last seen {time.strftime('%H:%M:%S', time.localtime(last_seen))}"
    return (f"{what}: {where} is being written by another live DeepVID {other.describe()}"
            f"{seen}. Two writers on one run mix their records, so this one refuses to start. "
            f"{remedy}")


__all__ = ["STALE_AFTER_S", "WriterConflictError", "WriterId", "closed", "conflict_message",
           "opened"]
