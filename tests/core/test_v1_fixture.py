"""Records and logdirs written by version 1 (before the explanation-kinds envelope) stay readable.

The fixture under ``tests/fixtures/v1`` was written by the released code and must never be
regenerated; see its README.
"""

import json
import os
import warnings

from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins import base_plugin
from werkzeug.test import Client

from deepvid_plugin import api
from deepvid_plugin.api import viewer
from deepvid_plugin.methods.deepvid.record import ExplanationRecord
from deepvid_plugin.tensorboard.plugin import DeepVIDPlugin
from tests.tensorboard.routes import q

HERE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "v1")
IDS = ["digit-0", "digit-1"]


def _records():
    paths = sorted(p for p in os.listdir(HERE) if p.endswith(".dvid"))
    assert len(paths) == 4, paths
    out = []
    for p in paths:
        with open(os.path.join(HERE, p), "rb") as f:
            out.append(ExplanationRecord.decode(f.read()))
    return out


def test_v1_record_bytes_decode_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = _records()
    assert {r.instance_id for r in records} == set(IDS)
    assert {r.step for r in records} == {0, 1}
    for r in records:
        assert r.schema_version == 1
        assert r.weights.shape == (10, 1, 8, 8)
        assert "top1_agreement" in r.fidelity


def test_v1_logdir_through_the_tensorboard_plugin():
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

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        status, body = get(q("instances", run="run1"))
        assert status == 200 and body["warnings"] == []
        assert sorted(i["id"] for i in body["instances"]) == IDS
        for inst in body["instances"]:
            assert [s["step"] for s in inst["steps"]] == [0, 1]
        status, rec = get(q("record", run="run1", instance="digit-0", step="1"))
    assert status == 200, rec
    assert rec["instance"] == "digit-0" and rec["step"] == 1


def test_v1_records_in_the_viewer_snapshot():
    store = api.MemoryStore({"run1": _records()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        snap = api.snapshot(store)
    assert api.snapshot_key("record", {"run": "run1", "instance": "digit-1", "step": "0",
                                  "kind": "deepvid"}) in snap
    page = viewer.standalone_html(snap, title="v1")
    assert "digit-0" in page and "digit-1" in page
