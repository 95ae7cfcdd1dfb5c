"""An event file the TensorBoard sink writes in the caller's thread, whole events or nothing.

TensorBoard's own ``EventFileWriter`` writes from a background thread: when the disk fills up
(or ``ulimit -f`` is reached) the error is a traceback printed by that thread, the caller hears
of it one write later, and the half-written event left at the end of the file stops TensorBoard's
Python loader from reading anything after it. Here the events of one flush are written by the
caller, so the error reaches it at once (the callback warns and counts it), and a failed flush
cuts the file back to its last complete event, so later writes, once there is room again, read
back fine. What the failed flush held is lost, and the error says so.
"""

from __future__ import annotations

import itertools
import os
import socket
import time

from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

_uid = itertools.count()
#: pending bytes past which a write flushes by itself (the sink flushes at every step anyway).
_AUTO_FLUSH_BYTES = 8 << 20


class EventFile:
    """``events.out.tfevents.<time>.<host>.<pid>.<n>`` in ``logdir``, named as TensorBoard's
    writers name theirs; ``add_event`` buffers, ``flush`` writes."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        self.path = os.path.join(logdir, f"events.out.tfevents.{int(time.time()):010d}."
                                         f"{socket.gethostname()}.{os.getpid()}.{next(_uid)}")
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._pending = bytearray()
        self._good = 0  # bytes of complete events on disk
        self._records = RecordWriter(self)
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    # the file-like side RecordWriter writes to
    def write(self, data: bytes) -> None:
        self._pending += data

    def add_event(self, event: event_pb2.Event) -> None:
        if self._fd is None:
            raise OSError(f"event file {self.path} is closed")
        self._records.write(event.SerializeToString())
        if len(self._pending) > _AUTO_FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the pending events; on failure cut the file back to its last complete event
        and raise, naming what was lost."""
        if self._fd is None or not self._pending:
            return
        data = memoryview(bytes(self._pending))
        self._pending.clear()
        size = len(data)
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as e:
            os.ftruncate(self._fd, self._good)
            os.lseek(self._fd, self._good, os.SEEK_SET)
            raise OSError(e.errno, f"{e.strerror}: {size} bytes of events were not written to "
                          f"{self.path} (it was cut back to its last complete event, so "
                          f"what it holds still reads)") from e
        self._good += size

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = None


__all__ = ["EventFile"]
