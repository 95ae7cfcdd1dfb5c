"""DeepVID records written before issue 18 (kind_version 1 in the schema-2 envelope: every class's
pixel weights, the image in every record) still read, through the record class and through the
TensorBoard plugin, with no warning. The fixture was written by commit f7dddfd and is never
regenerated (tests/fixtures/deepvid_kv1/README.md)."""

import json
import os
import warnings

import numpy as np
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins import base_plugin
from werkzeug.test import Client

from deepvid_plugin.api import compare
from deepvid_plugin.core.encode import decode_map
from deepvid_plugin.methods.deepvid.record import ExplanationRecord
from deepvid_plugin.tensorboard.plugin import DeepVIDPlugin
from tests.tensorboard.routes import q

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "fixtures",
                    "deepvid_kv1")


def _bytes_records():
    paths = sorted(p for p in os.listdir(HERE) if p.endswith(".dvid"))
    assert len(paths) == 4, paths
    out = []
    for p in paths:
        with open(os.path.join(HERE, p), "rb") as f:
            out.append(ExplanationRecord.decode(f.read()))
    return out


def test_kind_version_1_bytes_read_as_pixel_records_of_every_class():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = _bytes_records()
    for r in records:
        assert r.to_record().kind_version == 2  # re-encoded as the current version
        assert r.weights.shape == (10, 1, 8, 8) and not r.regions and r.has_image
        np.testing.assert_array_equal(r.classes, np.arange(10))
        for c in (0, r.predicted, 9):  # every class has its map, as version 1 promised
            np.testing.assert_allclose(r.weight_map(c), r.weights[c, 0].astype(np.float64))
        env = r.to_record()
        assert np.allclose(compare.class_map(env, 3), r.weights[3].astype(np.float64).mean(0))


def test_kind_version_1_logdir_through_the_tensorboard_plugin():
    logdir = os.path.join(HERE, "tb")
    mux = EventMultiplexer(size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
                           tensor_size_guidance={**data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE,
                                                 "deepvid": 0})
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    dp = MultiplexerDataProvider(mux, logdir)
    plugin = DeepVIDPlugin(base_plugin.TBContext(data_provider=dp, logdir=logdir))
    client = Client(application.TensorBoardWSGI([plugin], data_provider=dp))

    def get(path):
        r = client.get(path)
        return r.status_code, json.loads(r.get_data(as_text=True))

    expect = {(r.instance_id, r.step): r for r in _bytes_records()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        status, body = get(q("instances", run="run1"))
        assert status == 200 and body["warnings"] == []
        assert sorted(i["id"] for i in body["instances"]) == ["digit-0", "digit-1"]
        status, rec = get(q("record", run="run1", instance="digit-1", step="1"))
    assert status == 200, rec
    assert rec["classes"] == list(range(10)) and rec["segments"] is None
    assert len(rec["weights"]) == 10 and len(rec["neighbours"]) == 4 and rec["warnings"] == []
    want = expect["digit-1", 1]
    np.testing.assert_allclose(decode_map(rec["weights"][4]), want.weights[4].astype(float),
                               atol=rec["weights"][4]["scale"] / 127 + 1e-3)
    assert rec["input"]["shape"] == [1, 8, 8]
