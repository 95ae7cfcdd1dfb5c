"""Write side: explanation records as TensorBoard summaries of the ``deepvid`` plugin.

Tag layout (documented in ``deepvid_plugin/http_api.md``), per explanation kind and subject:

- ``deepvid/<kind>/<subject>/record``   BLOB_SEQUENCE, every step: the record (envelope) without
  its once-per-subject arrays;
- ``deepvid/<kind>/<subject>/summary``  TENSOR, every step: the kind's JSON step summary the
  overview reads (the first one's metadata carries class names, label and instance image);
- ``deepvid/<kind>/<subject>/subject``  BLOB_SEQUENCE, once: the kind's once-per-subject arrays
  (DeepVID's neighbour images), :func:`deepvid_plugin.core.record.encode_arrays`.

One write path for every kind: what differs between kinds is declared in the kind registry
(:mod:`deepvid_plugin.core.kinds`). Version 1 wrote ``deepvid/<id>/record|summary|neighbours``; the
reader still reads those.

torch's ``SummaryWriter`` cannot write these itself: its ``tensor_proto`` leaves
``SummaryMetadata.data_class`` unset, and TensorBoard ignores such summaries. So the ``Summary``
protos are built here and handed to the writer's file writer (MONAI does the same).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import threading
import time
import weakref
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from deepvid_plugin.core import kinds
from deepvid_plugin.core.encode import encode_image
from deepvid_plugin.core.record import Record, encode_arrays
from deepvid_plugin.core.sink import scalar_metrics
from deepvid_plugin.tensorboard import metadata
from deepvid_plugin.tensorboard.eventfile import EventFile
from deepvid_plugin.tensorboard.lock import RunLock, check_run_dir
from deepvid_plugin.tensorboard.manifest import Manifest


def _string_tensor(values: list[bytes], scalar: bool = False) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[] if scalar else [tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))])
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape,
                                  string_val=values)


class _EventWriter:
    """Adapts what the user gave us to one ``add(summary, step)`` call."""

    def __init__(self, target: Any):
        self.owned = isinstance(target, (str, os.PathLike))
        if self.owned:
            # Written in the caller's thread, whole events or nothing (see .eventfile).
            self._file = EventFile(os.fspath(target))
            self._add = lambda s, step: self._file.add_event(
                event_pb2.Event(summary=s, step=step, wall_time=time.time()))
        elif hasattr(target, "_get_file_writer"):  # torch's SummaryWriter (also Lightning's)
            self._file = target._get_file_writer()
            self._add = lambda s, step: self._file.add_summary(s, global_step=step)
        else:
            raise TypeError(
                "writer: expected a torch.utils.tensorboard.SummaryWriter, a Lightning "
                "TensorBoardLogger (or its .experiment), or a logdir path; got "
                f"{type(target).__module__}.{type(target).__qualname__}")

    @staticmethod
    def directory(target: Any) -> str:
        """The run directory ``target`` (a path or a ``SummaryWriter``) writes to."""
        if isinstance(target, (str, os.PathLike)):
            return os.path.abspath(os.fspath(target))
        found = getattr(target, "log_dir", None) or getattr(target, "get_logdir", lambda: None)()
        if not found:
            raise TypeError(f"writer: expected a SummaryWriter with a log_dir, got "
                            f"{type(target).__name__}")
        return os.path.abspath(os.fspath(found))

    def add(self, summary: summary_pb2.Summary, step: int) -> None:
        self._add(summary, step)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self.owned:  # a SummaryWriter belongs to the user, who closes it
            self._file.close()
        else:
            self._file.flush()


def _unwrap(target: Any) -> Any:
    # Lightning's TensorBoardLogger: its public .experiment is the SummaryWriter.
    if not isinstance(target, (str, os.PathLike)) and not hasattr(target, "_get_file_writer") \
            and hasattr(type(target), "experiment"):
        return target.experiment
    return target


class TensorBoardSink:
    """A :class:`~deepvid_plugin.core.sink.Sink` writing records of any kind as ``deepvid``
    summaries.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter`` (what Lightning's
            ``TensorBoardLogger.experiment`` is), a ``TensorBoardLogger``, or a logdir path (the
            sink then owns an event file in it and closes it in :meth:`close`).

    A kind's once-per-subject arrays are written once per subject; the per-step record leaves
    them out. The sink remembers each subject's previous summary so ``changed`` is right.

    Example::

        >>> import tempfile
        >>> import numpy as np
        >>> from deepvid_plugin.core import kinds
        >>> from deepvid_plugin.tensorboard.summary import TensorBoardSink
        >>> rec = kinds.get("gradcam").record(
        ...     "a", 0, {"cam_pred": np.ones((4, 4)), "probs": [0.9, 0.1]},
        ...     meta={"class_names": ["cat", "dog"], "pred": 0, "layer": "conv"})
        >>> with TensorBoardSink(tempfile.mkdtemp()) as sink:
        ...     sink.write(rec, step=0)
    """

    def __init__(self, writer: Any):
        target = _unwrap(writer)
        if isinstance(target, (str, os.PathLike)) or hasattr(target, "_get_file_writer"):
            # Both refused before a file of ours is made: a run TensorBoard could not read back,
            # and a second writer on one run directory (the message names the first).
            directory = _EventWriter.directory(target)
            check_run_dir("logdir", directory)
            self._run_lock = RunLock(directory, owner=self)
            # what this writer wrote, so readers can tell what TensorBoard lost (.manifest)
            self._manifest = Manifest(directory, self._run_lock.writer.id)
        self._writer = _EventWriter(target)  # a TypeError naming what it got, for the rest
        self._started: set[tuple[str, str]] = set()  # (kind, subject) with metadata written
        self._with_subject: set[tuple[str, str]] = set()  # (kind, subject): per-subject arrays out
        self._previous: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()
        self._closed = False

    def write(self, record: Any, step: int) -> None:
        """Write ``record`` (a :class:`~deepvid_plugin.core.record.Record` of a registered kind,
        or its typed view) at TensorBoard step ``step`` (which the stored record then
        carries)."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step: expected an int, got {type(step).__name__} {step!r}")
        kind, env = kinds.prepare(record)
        step = int(step)
        if env.step != step:
            env = dataclasses.replace(env, step=step)
        with self._lock:
            if self._closed:
                raise ValueError("TensorBoardSink: write() after close()")
            key = (kind.name, env.subject)
            summary = summary_pb2.Summary()
            first = key not in self._started
            # Metadata goes with the first value of each tag only (as tf.summary does): readers
            # keep the first they see, so repeating it would only cost bytes.
            step_summary = kinds.summarize(env, self._previous.get(key))
            self._value(summary, env, metadata.ROLE_SUMMARY, first, _string_tensor(
                [json.dumps(step_summary, separators=(",", ":"), allow_nan=False).encode("utf-8")],
                scalar=True), **(self._subject_content(env) if first else {}))
            self._value(summary, env, metadata.ROLE_RECORD, first,
                        _string_tensor([env.without(kind.per_subject).encode()]))
            once = {n: env.arrays[n] for n in kind.per_subject
                    if n in env.arrays and env.arrays[n].size > 0}
            if key not in self._with_subject and once:
                self._value(summary, env, metadata.ROLE_SUBJECT, True,
                            _string_tensor([encode_arrays(once)]))
                self._with_subject.add(key)
            self._writer.add(summary, step)
            self._manifest.add(kind.name, env.subject, step)
            self._started.add(key)
            self._previous[key] = step_summary

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        """Write the run's own scalar metrics (test accuracy, loss) as ordinary TensorBoard
        scalars: the Scalars dashboard charts them, and the DeepVID tab shows the chosen one
        above its grid, on the same steps as the explanations."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step: expected an int, got {type(step).__name__} {step!r}")
        summary = summary_pb2.Summary()
        for name, value in scalar_metrics(values).items():
            summary.value.add(tag=name, simple_value=value)
        with self._lock:
            if self._closed:
                raise ValueError("TensorBoardSink: log_metrics() after close()")
            if summary.value:
                self._writer.add(summary, int(step))

    @staticmethod
    def _subject_content(env: Record) -> dict[str, Any]:
        header = kinds.subject_header(env)
        content = {"class_names": header["class_names"], "label": header["label"]}
        if header["image"] is not None:
            content["image"] = encode_image(header["image"])
        return content

    @staticmethod
    def _value(summary: summary_pb2.Summary, env: Record, role: str, with_metadata: bool,
               tensor: tensor_pb2.TensorProto, **content: Any) -> None:
        value = summary.value.add(tag=metadata.tag(env.subject, role, env.kind), tensor=tensor)
        if with_metadata:
            value.metadata.CopyFrom(
                metadata.create_summary_metadata(role, env.subject, env.kind, **content))

    def flush(self) -> None:
        with self._lock:
            if not self._closed:
                self._writer.flush()
                self._manifest.save()  # after the events it lists are on disk
                self._run_lock.touch()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._writer.close()
                    self._manifest.save()
                finally:
                    self._run_lock.release()

    def __enter__(self) -> TensorBoardSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# One sink per writer (or logdir), so write_record() also writes per-subject arrays once and
# gets `changed` right across calls.
_sinks_by_writer: weakref.WeakKeyDictionary[Any, TensorBoardSink] = weakref.WeakKeyDictionary()
_sinks_by_logdir: dict[str, TensorBoardSink] = {}
_sinks_lock = threading.Lock()


def _sink_for(writer: Any) -> TensorBoardSink:
    target = _unwrap(writer)
    with _sinks_lock:
        if isinstance(target, (str, os.PathLike)):
            key = os.path.realpath(os.fspath(target))
            sink = _sinks_by_logdir.get(key)
            if sink is None or sink._closed:
                sink = _sinks_by_logdir[key] = TensorBoardSink(key)
            return sink
        sink = _sinks_by_writer.get(target)
        if sink is None:
            sink = _sinks_by_writer[target] = TensorBoardSink(target)
        return sink


def write_record(writer: Any, record: Any, step: int) -> None:
    """Write one record (of any registered kind) as ``deepvid`` summaries and flush, so
    TensorBoard shows it at once.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``, Lightning's ``TensorBoardLogger``
            or its ``.experiment``, or a logdir path (an event file there stays open until
            :func:`close_logdir` or interpreter exit).
        record: the explanation.
        step: the TensorBoard step (epoch or global step).
    """
    sink = _sink_for(writer)
    sink.write(record, step)
    sink.flush()


def close_logdir(logdir: str | os.PathLike) -> None:
    """Close the event file :func:`write_record` opened for ``logdir`` (if any)."""
    with _sinks_lock:
        sink = _sinks_by_logdir.pop(os.path.realpath(os.fspath(logdir)), None)
    if sink is not None:
        sink.close()


@atexit.register
def _close_all() -> None:
    for key in list(_sinks_by_logdir):
        close_logdir(key)
