"""The plugin's overview cache: repeated requests are served from it, new data is never hidden.

In-process over TensorBoard's multiplexer (reloaded by hand, as TensorBoard's reload thread
would), queried with werkzeug's test client.
"""

import gzip
import json

import pytest
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins import base_plugin
from werkzeug.test import Client

from deepvid_plugin.tensorboard import TensorBoardSink
from deepvid_plugin.tensorboard.plugin import DeepVIDPlugin, _json_bytes
from deepvid_plugin.tensorboard.store import DataProviderStore, OverviewCache
from tests.factories import make_record
from tests.tensorboard.routes import q

IDS = ("a", "b")


def _write(sink, steps):
    for step in steps:
        for iid in IDS:
            sink.write(make_record(iid, step), step)
    sink.flush()


def _steps(client, path):
    r = client.get(path)
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    if "instances" in body:
        return [[s["step"] for s in i["steps"]] for i in body["instances"]]
    return [s["step"] for s in body["steps"]]


def test_cached_answers_follow_new_data(tmp_path):
    sink = TensorBoardSink(tmp_path / "r1")
    _write(sink, range(3))
    mux = EventMultiplexer(size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
                           tensor_size_guidance={"deepvid": 0})
    mux.AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    dp = MultiplexerDataProvider(mux, str(tmp_path))
    plugin = DeepVIDPlugin(base_plugin.TBContext(data_provider=dp, logdir=str(tmp_path)))
    client = Client(application.TensorBoardWSGI([plugin], data_provider=dp))

    assert _steps(client, q("instances", run="r1")) == [[0, 1, 2]] * 2
    assert _steps(client, q("timeline", run="r1", instance="b")) == [0, 1, 2]
    fingerprint = DataProviderStore(dp).fingerprint("r1", "deepvid")
    cached = plugin._cache.get(("", "r1", "deepvid"), fingerprint, "instances")
    assert cached is not None and plugin._cache.get(("", "r1", "deepvid"), fingerprint, "overview")
    # Asked again: the very same bytes come back, nothing is re-encoded.
    client.get(q("instances", run="r1"))
    assert plugin._cache.get(("", "r1", "deepvid"), fingerprint, "instances") is cached

    _write(sink, [3])
    mux.Reload()
    assert _steps(client, q("instances", run="r1")) == [[0, 1, 2, 3]] * 2
    assert _steps(client, q("timeline", run="r1", instance="b")) == [0, 1, 2, 3]
    runs = client.get(q("runs")).get_json()["runs"]
    assert [(r["run"], r["steps"]) for r in runs] == [("r1", 4)]
    sink.close()

    # A browser's request (gzip accepted) gets the cached gzip as is; the answer is the same.
    r = client.get(q("instances", run="r1"), headers={"Accept-Encoding": "gzip"})
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.headers.get("X-Content-Type-Options") == "nosniff"
    plain = client.get(q("instances", run="r1")).get_json()
    assert json.loads(gzip.decompress(r.get_data())) == plain
    # Errors are never cached: an unknown run or instance is still a JSON 404.
    r = client.get(q("timeline", run="r1", instance="zzz"))
    assert r.status_code == 404 and "'zzz' not found" in r.get_json()["error"]
    r = client.get(q("instances", run="nope"))
    assert r.status_code == 404 and "'nope' not found" in r.get_json()["error"]


def test_cache_is_bounded_and_checks_the_fingerprint():
    cache = OverviewCache(max_runs=2)
    cache.put(("", "r1"), (1,), "overview", "one")
    cache.put(("", "r2"), (1,), "overview", "two")
    assert cache.get(("", "r1"), (1,), "overview") == "one"  # r1 is now the most recent
    cache.put(("", "r3"), (1,), "overview", "three")
    assert cache.get(("", "r2"), (1,), "overview") is None  # evicted: least recently used
    assert cache.get(("", "r1"), (1,), "overview") == "one"
    assert cache.get(("", "r1"), (2,), "overview") is None  # the run changed since
    cache.put(("", "r1"), (2,), "instances", b"gz")
    assert cache.get(("", "r1"), (2,), "overview") is None  # the old overview went with (1,)
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="max_runs"):
            OverviewCache(max_runs=bad)


def test_json_falls_back_to_cleanse_for_non_finite_values():
    assert json.loads(_json_bytes({"a": [1, 0.5, "x"]})) == {"a": [1, 0.5, "x"]}
    assert json.loads(_json_bytes({"a": float("nan"), "b": float("inf")})) == {
        "a": "NaN", "b": "Infinity"}
