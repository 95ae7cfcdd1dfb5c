"""summary.py: what lands in the event files, for every kind of writer a user may hand us."""

import glob
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto import summary_pb2

from deepvid_plugin.core.record import Record, decode_arrays
from deepvid_plugin.methods.deepvid.kind import step_summary
from deepvid_plugin.methods.deepvid.record import ExplanationRecord
from deepvid_plugin.tensorboard import metadata
from deepvid_plugin.tensorboard.summary import TensorBoardSink, close_logdir, write_record
from tests.factories import make_gradcam_record, make_record


def read_values(logdir):
    """Every (step, summary value) in the event files under ``logdir``, in file order."""
    files = sorted(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"),
                             recursive=True))
    assert files, f"no event file under {logdir}"
    out = []
    for f in files:
        for event in EventFileLoader(f).Load():
            out.extend((event.step, v) for v in event.summary.value)
    return out


def check_written(logdir, steps, instances=("a",)):
    values = [(s, v) for s, v in read_values(logdir) if v.tag.startswith("deepvid/")]
    for iid in instances:
        for role, expect_steps in [("summary", steps), ("record", steps),
                                   ("subject", steps[:1])]:
            mine = [(s, v) for s, v in values if v.tag == metadata.tag(iid, role, "deepvid")]
            assert [s for s, _ in mine] == list(expect_steps), (iid, role)
            # metadata (with data_class) on the first value only, as tf.summary does
            assert [v.HasField("metadata") for _, v in mine] == [True] + [False] * (len(mine) - 1)
            md = mine[0][1].metadata
            assert md.plugin_data.plugin_name == "deepvid"
            assert md.data_class in (summary_pb2.DATA_CLASS_TENSOR,
                                     summary_pb2.DATA_CLASS_BLOB_SEQUENCE)
    return values


def test_sink_writes_the_documented_layout(tmp_path):
    records = [make_record("a", s) for s in range(3)]
    with TensorBoardSink(str(tmp_path)) as sink:
        for r in records:
            sink.write(r, r.step)
    values = check_written(str(tmp_path), [0, 1, 2])
    by_tag = {}
    for s, v in values:
        by_tag.setdefault(v.tag, []).append((s, v))
    assert {t.rsplit("/", 1)[0] for t in by_tag} == {"deepvid/deepvid/a"}  # deepvid/<kind>/<id>
    # record blob: the record without the images stored once per subject (kind version 2: the
    # instance image and the neighbour images), decodable, and whole with them put back
    blob = by_tag["deepvid/deepvid/a/record"][1][1].tensor.string_val[0]
    subject = decode_arrays(by_tag["deepvid/deepvid/a/subject"][0][1].tensor.string_val[0])
    assert np.isnan(ExplanationRecord.decode(blob).image.astype(np.float32)).all()
    whole = Record.decode(blob).with_arrays({"image": subject["image"]})
    assert ExplanationRecord.from_record(whole) == records[1].without_neighbour_images()
    # summary: JSON step summary with `changed` relative to the previous step
    import json
    summ = json.loads(by_tag["deepvid/deepvid/a/summary"][2][1].tensor.string_val[0])
    assert summ == json.loads(json.dumps(step_summary(records[2], records[1].predicted)))
    content = metadata.parse_plugin_metadata(
        by_tag["deepvid/deepvid/a/summary"][0][1].metadata.plugin_data.content)
    assert content["class_names"] == list(records[0].class_names)
    assert content["label"] == records[0].label and content["image"]["shape"] == [1, 28, 28]
    assert content["kind"] == "deepvid" and content["role"] == "summary"
    # once per subject: the neighbour images (float16), framed without pickle
    arrays = decode_arrays(by_tag["deepvid/deepvid/a/subject"][0][1].tensor.string_val[0])
    arr = arrays["neighbours"]
    assert sorted(arrays) == ["image", "neighbours"]
    assert arr.dtype == np.float16 and np.array_equal(arr, records[0].neighbours)


def test_sink_writes_any_registered_kind_under_its_own_tags(tmp_path):
    records = [make_gradcam_record("a", s) for s in range(2)]
    with TensorBoardSink(str(tmp_path)) as sink:
        for r in records:
            sink.write(r, r.step)
        sink.write(make_record("a", 0), 0)  # the same subject under another kind: apart
    tags = sorted({v.tag for _, v in read_values(str(tmp_path))})
    assert tags == ["deepvid/deepvid/a/record", "deepvid/deepvid/a/subject",
                    "deepvid/deepvid/a/summary", "deepvid/gradcam/a/record",
                    "deepvid/gradcam/a/subject", "deepvid/gradcam/a/summary"]
    values = [v for _, v in read_values(str(tmp_path)) if v.tag == "deepvid/gradcam/a/record"]
    stored = Record.decode(values[1].tensor.string_val[0])
    assert stored == records[1].without(["image"])  # the image is stored once, apart
    with pytest.raises(ValueError, match="meta\\['pred'\\]"):
        TensorBoardSink(str(tmp_path / "x")).write(
            Record(kind="gradcam", subject="a", step=0, arrays=records[0].arrays,
                   meta={**records[0].meta, "pred": -1}), 0)


def test_step_argument_is_the_tensorboard_step(tmp_path):
    with TensorBoardSink(str(tmp_path)) as sink:
        sink.write(make_record("a", 0), 7)
    values = read_values(str(tmp_path))
    rec = [v for _, v in values if v.tag == "deepvid/deepvid/a/record"]
    assert ExplanationRecord.decode(rec[0].tensor.string_val[0]).step == 7


def test_sink_rejects_bad_input(tmp_path):
    sink = TensorBoardSink(str(tmp_path))
    with pytest.raises(TypeError, match=r"record: expected a deepvid_plugin.core.record.Record "
                                        r"\(or a typed view .*\), got dict"):
        sink.write({"step": 0}, 0)
    with pytest.raises(TypeError, match="step: expected an int"):
        sink.write(make_record(), "1")
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(ValueError, match="after close"):
        sink.write(make_record(), 0)
    with pytest.raises(TypeError, match="writer: expected a torch.utils.tensorboard.SummaryWriter"):
        TensorBoardSink(object())


def test_write_record_with_torch_summary_writer(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for s in range(3):
        write_record(writer, make_record("a", s), s)
        write_record(writer, make_record("b", s), s)
    # write_record flushes: readable before the user closes the writer
    check_written(str(tmp_path), [0, 1, 2], ("a", "b"))
    writer.close()


def test_write_record_with_a_logdir_path(tmp_path):
    logdir = tmp_path / "run"
    for s in range(3):
        write_record(logdir, make_record("a", s), s)  # a PathLike
        write_record(str(logdir), make_record("b", s), s)  # the same logdir as str: one file
    check_written(str(logdir), [0, 1, 2], ("a", "b"))
    close_logdir(logdir)
    assert len(glob.glob(str(logdir / "events.out.tfevents.*"))) == 1


def test_write_record_with_lightning_tensorboard_logger(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(save_dir=str(tmp_path), name="lt", version=0)
    for s in range(2):
        write_record(logger.experiment, make_record("a", s), s)
    write_record(logger, make_record("a", 2), 2)  # the logger itself: same writer, same state
    check_written(logger.log_dir, [0, 1, 2])
    logger.finalize("success")


def test_bytes_on_disk_per_instance_step(tmp_path, record_property):
    """28x28x1, 10 classes, 8 shown neighbours: the issue's target is <= 20 KB per instance-step."""
    n_inst, n_steps = 4, 25
    with TensorBoardSink(str(tmp_path)) as sink:
        for s in range(n_steps):
            for i in range(n_inst):
                sink.write(make_record(f"i{i}", s, n_shown=32), s)
    size = sum(os.path.getsize(f) for f in glob.glob(str(tmp_path / "events.out.tfevents.*")))
    per = size / (n_inst * n_steps)
    record_property("bytes_per_instance_step", per)
    print(f"bytes on disk per instance-step: {per:.0f}")
    assert per <= 20 * 1024


def test_public_names_load_lazily():
    import deepvid_plugin.tensorboard as tb

    assert tb.write_record is write_record and tb.TensorBoardSink is TensorBoardSink
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tb.nope  # noqa: B018
