import dataclasses
import json
import struct

import numpy as np
import pytest

from deepvid_plugin.record import (
    SCHEMA_VERSION,
    ExplanationRecord,
    NewerSchemaError,
    RecordDecodeError,
)


def _record(**over):
    rng = np.random.default_rng(0)
    kw = dict(instance_id="x<script>1", step=3, class_names=("a", "b", "c"),
              image=rng.random((1, 4, 4)), teacher_probs=[0.2, 0.5, 0.3],
              student_probs=[0.25, 0.45, 0.3], weights=rng.standard_normal((3, 1, 4, 4)),
              bias=[0.0, 0.1, -0.1], fidelity={"top1_agreement": 0.97, "trustworthy": True},
              neighbours=rng.random((5, 1, 4, 4)), neighbour_teacher=[0, 1, 1, 2, 1],
              neighbour_student=[0, 1, 2, 2, 1], settings={"seed": 0}, label=1)
    kw.update(over)
    return ExplanationRecord(**kw)


def test_round_trip_and_determinism():
    r = _record()
    assert ExplanationRecord.decode(r.encode()) == r
    assert r.encode() == _record().encode()
    assert r.predicted == 1 and r.trustworthy


def test_without_neighbour_images():
    r = _record()
    slim = r.without_neighbour_images()
    assert not slim.has_neighbour_images and r.has_neighbour_images
    assert len(slim.encode()) < len(r.encode())
    assert slim.with_neighbour_images(r.neighbours) == r


def _with_header(data: bytes, mutate) -> bytes:
    _, hlen = struct.unpack_from("<4sI", data)
    header = json.loads(data[8:8 + hlen])
    mutate(header)
    new = json.dumps(header).encode()
    return struct.pack("<4sI", b"DVID", len(new)) + new + data[8 + hlen:]


def test_newer_schema_is_a_specific_error():
    data = _with_header(_record().encode(), lambda h: h.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(NewerSchemaError, match=r"schema_version 2, but this deepvid-plugin reads up to 1") as e:
        ExplanationRecord.decode(data)
    assert e.value.found == SCHEMA_VERSION + 1
    assert isinstance(e.value, RecordDecodeError)


@pytest.mark.parametrize("data", [b"", b"PKLE" + b"\0" * 10, b"DVID\x05\0\0\0{bad}"])
def test_garbage_is_reported(data):
    with pytest.raises(RecordDecodeError):
        ExplanationRecord.decode(data)


def test_truncated_body():
    with pytest.raises(RecordDecodeError, match="corrupt record body"):
        ExplanationRecord.decode(_record().encode()[:-10])


@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        ({"weights": np.zeros((2, 1, 4, 4))}, r"weights: expected shape \(3, 1, 4, 4\), got \(2, 1, 4, 4\)"),
        ({"label": 7}, r"label: expected an int in \[0, 3\), got 7"),
        ({"image": np.zeros((4, 4))}, r"image: expected a 3-d array, got shape \(4, 4\)"),
        ({"neighbour_student": [0]}, r"neighbour_student: expected shape \(5,\), got \(1,\)"),
    ],
)
def test_validation(over, pattern):
    with pytest.raises(ValueError, match=pattern):
        _record(**over)


def test_bad_types():
    with pytest.raises(TypeError, match="instance_id: expected a non-empty str"):
        _record(instance_id="")
    with pytest.raises(TypeError, match="step: expected an int, got float"):
        _record(step=1.5)
    with pytest.raises(TypeError, match="settings: expected JSON-serialisable"):
        _record(settings={"f": object()})


def test_no_pickle_in_encoding():
    data = _record(settings={"nested": {"x": [1, 2]}}).encode()
    assert b"\x80\x04" not in data[:64]  # no pickle protocol header
    assert data.startswith(b"DVID")
    assert dataclasses.replace(_record(), step=4) != _record()
