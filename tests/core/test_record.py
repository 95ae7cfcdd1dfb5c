import dataclasses
import json
import struct

import numpy as np
import pytest

from deepvid_plugin.core.record import SCHEMA_VERSION, NewerSchemaError, RecordDecodeError
from deepvid_plugin.methods.deepvid.record import ExplanationRecord


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
    with pytest.raises(NewerSchemaError, match=rf"schema_version {SCHEMA_VERSION + 1}, but this deepvid-plugin reads up to {SCHEMA_VERSION}") as e:
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


# ---- the envelope and the kind registry --------------------------------------------------------
from deepvid_plugin.core import kinds  # noqa: E402
from deepvid_plugin.core.record import Record, UnsupportedKindError, decode_arrays, encode_arrays  # noqa: E402
from tests.factories import FACTORIES, make_gradcam_record  # noqa: E402


def test_every_registered_kind_has_a_factory():
    assert kinds.names()[:2] == ("deepvid", "gradcam")
    assert set(kinds.names()) == set(FACTORIES)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_envelope_round_trip_per_kind(kind):
    env = kinds.as_record(FACTORIES[kind]("x<1>", 4))
    assert env.kind == kind and env.subject == "x<1>" and env.step == 4
    assert env.schema_version == SCHEMA_VERSION and env.kind_version == kinds.get(kind).version
    data = env.encode()
    assert Record.decode(data) == env and data == kinds.as_record(FACTORIES[kind]("x<1>", 4)).encode()
    summary = kinds.summarize(env)
    assert summary["step"] == 4 and summary["schema_version"] == SCHEMA_VERSION
    # absent means 1: keeps the overview small
    assert summary.get("kind_version", 1) == kinds.get(kind).version
    assert summary["headline"] is None or isinstance(summary["headline"], float)
    slim = env.without(kinds.get(kind).per_subject)
    assert set(slim.arrays) == set(env.arrays) - set(kinds.get(kind).per_subject)
    assert slim.with_arrays({k: env.arrays[k] for k in kinds.get(kind).per_subject}) == env


def test_deepvid_view_and_envelope_agree():
    r = _record()
    env = r.to_record()
    assert env.kind == "deepvid" and env.subject == r.instance_id
    assert env.meta == {"class_names": ["a", "b", "c"], "label": 1,
                        "fidelity": {"top1_agreement": 0.97, "trustworthy": True},
                        "image_shape": list(r.image.shape)}
    assert ExplanationRecord.from_record(env) == r
    assert ExplanationRecord.from_record(env.without(["neighbours"])) == r.without_neighbour_images()
    # The image is stored once per instance; a reader that cannot put it back still gets the
    # maps, with a NaN image of the right shape that says so.
    lost = ExplanationRecord.from_record(env.without(["image"]))
    assert r.has_image and not lost.has_image and lost.image.shape == r.image.shape
    np.testing.assert_array_equal(lost.weights, r.weights)
    assert kinds.view(env) == r
    assert kinds.summarize(env)["headline"] == 0.97  # DeepVID's headline: top1 agreement


def test_v1_bytes_decode_as_deepvid_envelope():
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "v1",
                        "digit-0-step1.dvid")
    with open(path, "rb") as f:
        data = f.read()
    env = Record.decode(data)
    assert (env.kind, env.subject, env.step, env.schema_version) == ("deepvid", "digit-0", 1, 1)
    assert env.arrays["weights"].shape == (10, 1, 8, 8)
    view = ExplanationRecord.decode(data)
    assert view == ExplanationRecord.from_record(env)
    # Re-encoding writes the current layout, which reads back to the same content.
    again = Record.decode(env.encode())
    assert again.schema_version == SCHEMA_VERSION and again.arrays.keys() == env.arrays.keys()


def test_gradcam_record_validation_names_the_problem():
    env = make_gradcam_record()
    with pytest.raises(ValueError, match=r"probs: expected shape \(10,\), got \(3,\)"):
        kinds.prepare(env.with_arrays({"probs": np.ones(3)}))
    with pytest.raises(ValueError, match=r"cam_true: expected shape \(28, 28\)"):
        kinds.prepare(env.with_arrays({"cam_true": np.ones((4, 4))}))
    with pytest.raises(ValueError, match=r"unknown array 'weights'"):
        kinds.prepare(env.with_arrays({"weights": np.ones(3)}))
    with pytest.raises(ValueError, match=r"need \['cam_pred'\]"):
        kinds.prepare(env.without(["cam_pred"]))
    with pytest.raises(ValueError, match=r"meta\['pred'\]: expected an int in \[0, 10\), got 12"):
        kinds.prepare(Record(kind="gradcam", subject="a", step=0, arrays=env.arrays,
                             meta={**env.meta, "pred": 12}))
    # the instance image is fixed per instance: a per-step record may leave it out
    assert kinds.prepare(env.without(["image"]))[1].arrays.keys() == {"cam_pred", "cam_true",
                                                                     "probs"}


def test_unknown_kind_and_newer_kind_version_are_reported():
    strange = Record(kind="netdissect_v9", subject="layer4", step=0, arrays={"x": np.ones(2)})
    decoded = Record.decode(strange.encode())  # the envelope itself stays readable
    with pytest.raises(UnsupportedKindError, match="'netdissect_v9' is not a kind"):
        kinds.check(decoded)
    newer = make_gradcam_record(kind_version=3)
    with pytest.raises(UnsupportedKindError, match="gradcam kind_version 3, but this "
                                                   "deepvid-plugin reads up to 2"):
        kinds.prepare(newer)
    with pytest.raises(UnsupportedKindError, match="expected kind 'deepvid', got 'gradcam'"):
        ExplanationRecord.decode(make_gradcam_record().encode())
    assert isinstance(UnsupportedKindError("x"), RecordDecodeError)


def test_registering_twice_is_refused():
    with pytest.raises(ValueError, match="'gradcam' is already registered"):
        kinds.register(dataclasses.replace(kinds.get("gradcam")))
    with pytest.raises(ValueError, match="per_subject: expected names among arrays"):
        dataclasses.replace(kinds.get("gradcam"), per_subject=("nope",))


def test_array_blob_round_trip_and_garbage():
    arrays = {"neighbours": np.arange(24, dtype="<f2").reshape(2, 3, 4)}
    back = decode_arrays(encode_arrays(arrays))
    assert back.keys() == arrays.keys() and np.array_equal(back["neighbours"], arrays["neighbours"])
    with pytest.raises(RecordDecodeError):
        decode_arrays(b"DVID" + b"\0" * 8)


def test_gradcam_records_from_result():
    from deepvid_plugin.methods.gradcam.engine import GradCAMResult
    from deepvid_plugin.methods.gradcam.explainer import records as records_from_result

    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=2).astype(np.float32)
    result = GradCAMResult(layer="features.3", ids=("p", "q"),
                           cam_pred=rng.random((2, 5, 5)).astype(np.float32),
                           cam_true=rng.random((2, 5, 5)).astype(np.float32), probs=probs,
                           pred=probs.argmax(1), labels=np.array([0, 2]),
                           evidence=({"deletion_auc": 0.2, "better_than_random": True},
                                     {"deletion_auc": 0.6, "better_than_random": False}))
    images = rng.random((2, 1, 5, 5))
    recs = records_from_result(result, 7, ["a", "b", "c"], images=images,
                               settings={"layer": "features.3"})
    assert [(r.kind, r.subject, r.step) for r in recs] == [("gradcam", "p", 7), ("gradcam", "q", 7)]
    assert np.allclose(recs[1].arrays["cam_pred"], result.cam_pred[1])
    assert recs[1].meta["label"] == 2 and recs[1].meta["pred"] == int(probs[1].argmax())
    summaries = [kinds.summarize(r) for r in recs]
    assert [s["headline"] for s in summaries] == [0.2, 0.6]
    assert [s["trustworthy"] for s in summaries] == [True, False]
    with pytest.raises(ValueError, match="class_names: expected 3 names"):
        records_from_result(result, 7, ["a", "b"])
    with pytest.raises(ValueError, match=r"images: expected \(2, C, H, W\)"):
        records_from_result(result, 7, ["a", "b", "c"], images=images[:1])
