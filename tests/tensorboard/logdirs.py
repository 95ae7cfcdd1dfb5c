"""Real logdirs for the read-side tests, written through the real write side.

``write_logdir(root, steps)`` writes three runs:

- ``r1``: instances ``a`` and ``<script>b``, steps ``0..steps-1``, class names with markup;
- ``r2``: instances ``a`` and ``c`` (so compare has a note), same steps, another seed;
- ``bad``: instance ``a`` with one record written by a newer schema (step 1), a corrupt record
  blob (step 2) and a corrupt summary (step 3); instance ``ok`` is intact.
"""

import json
import os

from tensorboard.compat.proto import summary_pb2

from deepvid_plugin.methods.deepvid.kind import step_summary
from deepvid_plugin.tensorboard import metadata
from deepvid_plugin.tensorboard.summary import TensorBoardSink, _string_tensor
from tests.factories import make_record

HOSTILE = "<script>b"
CLASS_NAMES = [f"<b>{k}</b>" for k in range(10)]


def _write(run_dir, records):
    with TensorBoardSink(run_dir) as sink:
        for r in records:
            sink.write(r, r.step)


def _raw(sink, step, values):
    """Write summary values the sink would never write (corrupt ones) through its event file.

    Same file and step order as the good ones: both loaders treat a step going backwards as a
    restart and drop what came after it.
    """
    summary = summary_pb2.Summary()
    for tag, tensor, kind in values:
        summary.value.add(tag=tag, tensor=tensor,
                          metadata=metadata.create_summary_metadata(kind, "a", "deepvid"))
    sink._writer.add(summary, step)


def write_logdir(root, steps=5):
    root = os.fspath(root)
    _write(os.path.join(root, "r1"), [make_record(i, s, class_names=CLASS_NAMES)
                                      for s in range(steps) for i in ("a", HOSTILE)])
    _write(os.path.join(root, "r2"), [make_record(i, s, seed=1, class_names=CLASS_NAMES)
                                      for s in range(steps) for i in ("a", "c")])
    with TensorBoardSink(os.path.join(root, "bad")) as sink:
        for s in range(steps):
            for i in ("a", "ok"):
                if (i, s) == ("a", 1):
                    sink.write(make_record(i, s, schema_version=3), s)
                elif (i, s) == ("a", 2):
                    _raw(sink, s, [
                        (metadata.tag(i, "record", "deepvid"), _string_tensor([b"DVID\x00garbage"]),
                         "record"),
                        (metadata.tag(i, "summary", "deepvid"), _string_tensor(
                            [json.dumps(step_summary(make_record(i, s), None)).encode()],
                            scalar=True), "summary")])
                elif (i, s) == ("a", 3):
                    _raw(sink, s, [
                        (metadata.tag(i, "record", "deepvid"), _string_tensor([make_record(i, s).encode()]),
                         "record"),
                        (metadata.tag(i, "summary", "deepvid"), _string_tensor([b"{not json"], scalar=True),
                         "summary")])
                else:
                    sink.write(make_record(i, s), s)
    return root
