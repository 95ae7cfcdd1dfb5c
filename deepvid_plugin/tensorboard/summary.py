"""Write side: explanation records as TensorBoard summaries of the ``deepvid`` plugin.

Tag layout (documented in ``deepvid_plugin/http_api.md``), per tracked instance:

- ``deepvid/<id>/record``      BLOB_SEQUENCE, every step: the record without neighbour images;
- ``deepvid/<id>/summary``     TENSOR, every step: the JSON step summary the overview reads;
- ``deepvid/<id>/neighbours``  BLOB_SEQUENCE, once: the fixed neighbour images (``.npy``).

torch's ``SummaryWriter`` cannot write these itself: its ``tensor_proto`` leaves
``SummaryMetadata.data_class`` unset, and TensorBoard ignores such summaries. So the ``Summary``
protos are built here and handed to the writer's file writer (MONAI does the same).
"""

from __future__ import annotations

import atexit
import dataclasses
import io
import json
import os
import threading
import time
import weakref
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from deepvid_plugin.api import encode_image, step_summary
from deepvid_plugin.record import ExplanationRecord
from deepvid_plugin.tensorboard import metadata


def _string_tensor(values: list[bytes], scalar: bool = False) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[] if scalar else [tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))])
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape,
                                  string_val=values)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype="<f2"), allow_pickle=False)
    return buf.getvalue()


class _EventWriter:
    """Adapts what the user gave us to one ``add(summary, step)`` call."""

    def __init__(self, target: Any):
        self.owned = isinstance(target, (str, os.PathLike))
        if self.owned:
            # Imported here: the writer thread is only needed when we own the event file.
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self._file = EventFileWriter(os.fspath(target))
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
    """A :class:`~deepvid_plugin.sinks.Sink` writing records as ``deepvid`` summaries.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter`` (what Lightning's
            ``TensorBoardLogger.experiment`` is), a ``TensorBoardLogger``, or a logdir path (the
            sink then owns an event file in it and closes it in :meth:`close`).

    Neighbour images are written once per instance; the per-step record leaves them out. The
    sink remembers each instance's previous predicted class so the summaries' ``changed`` flag is
    right.
    """

    def __init__(self, writer: Any):
        self._writer = _EventWriter(_unwrap(writer))
        self._started: set[str] = set()  # instances whose first summary (with metadata) is out
        self._with_neighbours: set[str] = set()
        self._previous: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def write(self, record: ExplanationRecord, step: int) -> None:
        """Write ``record`` at TensorBoard step ``step`` (which the stored record then carries)."""
        if not isinstance(record, ExplanationRecord):
            raise TypeError(f"record: expected an ExplanationRecord, got {type(record).__name__}")
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step: expected an int, got {type(step).__name__} {step!r}")
        step = int(step)
        if record.step != step:
            record = dataclasses.replace(record, step=step)
        with self._lock:
            if self._closed:
                raise ValueError("TensorBoardSink: write() after close()")
            iid = record.instance_id
            summary = summary_pb2.Summary()
            first = iid not in self._started
            # Metadata goes with the first value of each tag only (as tf.summary does): readers
            # keep the first they see, so repeating it would only cost bytes.
            self._value(summary, iid, metadata.KIND_SUMMARY, first, _string_tensor(
                [json.dumps(step_summary(record, self._previous.get(iid)),
                            separators=(",", ":"), allow_nan=False).encode("utf-8")],
                scalar=True), **(self._instance_content(record) if first else {}))
            self._value(summary, iid, metadata.KIND_RECORD, first,
                        _string_tensor([record.without_neighbour_images().encode()]))
            if iid not in self._with_neighbours and record.has_neighbour_images \
                    and record.neighbours.shape[0] > 0:
                self._value(summary, iid, metadata.KIND_NEIGHBOURS, True,
                            _string_tensor([_npy(record.neighbours)]))
                self._with_neighbours.add(iid)
            self._writer.add(summary, step)
            self._started.add(iid)
            self._previous[iid] = record.predicted

    @staticmethod
    def _instance_content(record: ExplanationRecord) -> dict[str, Any]:
        return {"class_names": list(record.class_names), "label": record.label,
                "image": encode_image(record.image)}

    @staticmethod
    def _value(summary: summary_pb2.Summary, iid: str, kind: str, with_metadata: bool,
               tensor: tensor_pb2.TensorProto, **content: Any) -> None:
        value = summary.value.add(tag=metadata.tag(iid, kind), tensor=tensor)
        if with_metadata:
            value.metadata.CopyFrom(metadata.create_summary_metadata(kind, iid, **content))

    def flush(self) -> None:
        with self._lock:
            if not self._closed:
                self._writer.flush()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writer.close()

    def __enter__(self) -> TensorBoardSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# One sink per writer (or logdir), so write_record() also writes neighbours once per instance and
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


def write_record(writer: Any, record: ExplanationRecord, step: int) -> None:
    """Write one record as ``deepvid`` summaries and flush, so TensorBoard shows it at once.

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
