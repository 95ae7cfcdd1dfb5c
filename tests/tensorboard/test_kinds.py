"""Storage by kind: several kinds in one logdir, unknown kinds and newer kind versions."""

import json

import pytest
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.compat.proto import summary_pb2

from deepvid_plugin import api
from deepvid_plugin.core.record import Record, UnsupportedKindError
from deepvid_plugin.tensorboard import metadata
from deepvid_plugin.tensorboard.store import DataProviderStore
from deepvid_plugin.tensorboard.summary import TensorBoardSink, _string_tensor
from tests.factories import make_gradcam_record, make_record


def _store(root):
    mux = EventMultiplexer(tensor_size_guidance={"deepvid": 0})
    mux.AddRunsFromDirectory(str(root))
    mux.Reload()
    return DataProviderStore(MultiplexerDataProvider(mux, str(root)))


def _raw_summary(sink, step, kind, subject, summary):
    s = summary_pb2.Summary()
    s.value.add(tag=metadata.tag(subject, "summary", kind),
                tensor=_string_tensor([json.dumps(summary).encode()], scalar=True),
                metadata=metadata.create_summary_metadata("summary", subject, kind))
    sink._writer.add(s, step)


@pytest.fixture
def mixed(tmp_path):
    with TensorBoardSink(str(tmp_path / "run")) as sink:
        for s in range(3):
            sink.write(make_record("a", s), s)
            # step 1 stands for a newer gradcam writer: its summary says kind_version 3
            gc = make_gradcam_record("a", s, kind_version=3 if s == 1 else 2)
            if s == 1:
                _raw_summary(sink, s, "gradcam", "a", {"kind_version": 3, "headline": 0.1})
            else:
                sink.write(gc, s)
            _raw_summary(sink, s, "zz_future", "layer4", {"headline": 0.5})
    return _store(tmp_path)


def test_each_kind_reads_back_apart(mixed):
    assert mixed.kinds("run") == ["deepvid", "gradcam", "zz_future"]
    with pytest.warns(UserWarning, match="kind 'zz_future'"):
        deep = mixed.overview("run", kind="deepvid")
    assert [s["step"] for s in deep.instances[0].steps] == [0, 1, 2]
    assert any("'zz_future'" in w and "upgrade" in w for w in deep.warnings)
    with pytest.warns(UserWarning, match="gradcam kind_version 3"):
        gc = mixed.overview("run", kind="gradcam")
    [inst] = gc.instances
    assert [s["step"] for s in inst.steps] == [0, 2]  # the newer step is skipped, named
    assert inst.image.shape == (1, 28, 28) and gc.class_names == [str(k) for k in range(10)]
    assert inst.steps[1]["headline"] == make_gradcam_record("a", 2).meta["evidence"][
        "deletion_auc"]
    rec = mixed.record("run", "a", 2, kind="gradcam")
    assert isinstance(rec, Record) and rec == make_gradcam_record("a", 2)  # image put back
    assert mixed.record("run", "a", 2, kind="deepvid") == make_record("a", 2)
    with pytest.raises(UnsupportedKindError, match="'zz_future' is not a kind"):
        mixed.record("run", "layer4", 0, kind="zz_future")


def test_a_run_without_the_asked_kind_says_so(tmp_path):
    with TensorBoardSink(str(tmp_path / "run")) as sink:
        sink.write(make_gradcam_record("a", 0), 0)
    store = _store(tmp_path)
    with pytest.raises(api.NoDataError, match="run 'run' has no deepvid data"):
        store.overview("run", kind="deepvid")
    with pytest.raises(KeyError):
        store.overview("nope", kind="gradcam")
    assert [i.id for i in store.overview("run", kind="gradcam").instances] == ["a"]


def test_a_version_1_logdir_resumed_by_this_version_reads_as_one_series(tmp_path):
    """The committed version-1 logdir (``deepvid/<id>/...`` tags, steps 0-1) continued at step 2
    by the current writer (``deepvid/deepvid/<id>/...``): one row per instance, every step."""
    import os
    import shutil
    import warnings

    from deepvid_plugin.methods.deepvid.record import ExplanationRecord

    here = os.path.join(os.path.dirname(__file__), "..", "fixtures", "v1")
    shutil.copytree(os.path.join(here, "tb"), tmp_path / "tb")
    with open(os.path.join(here, "digit-0-step1.dvid"), "rb") as f:
        last = ExplanationRecord.decode(f.read())
    with TensorBoardSink(str(tmp_path / "tb" / "run1")) as sink:
        sink.write(last, 2)
    store = _store(tmp_path / "tb")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ov = store.overview("run1", kind="deepvid")
        got = store.record("run1", "digit-0", 2, kind="deepvid")
        old = store.record("run1", "digit-0", 1, kind="deepvid")
    steps = {i.id: [s["step"] for s in i.steps] for i in ov.instances}
    assert steps == {"digit-0": [0, 1, 2], "digit-1": [0, 1]} and ov.warnings == []
    assert [s["changed"] for s in ov.instances[0].steps][2] is False  # same prediction as step 1
    assert all(s["headline"] is not None for i in ov.instances for s in i.steps)
    assert got.step == 2 and got.has_neighbour_images
    assert old.without_neighbour_images() == last.without_neighbour_images()
