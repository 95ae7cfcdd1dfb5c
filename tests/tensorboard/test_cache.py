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
from deepvid_plugin.tensorboard.store import DataProviderStore, OverviewCache, RecordCache
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


def test_compare_is_cached_per_run_pair_and_follows_new_data(tmp_path):
    # Compare reads a record per common step in both runs; its answer is kept while both runs
    # are unchanged, and a step written to either run shows up at once.
    sinks = {r: TensorBoardSink(tmp_path / r) for r in ("r1", "r2")}
    for sink in sinks.values():
        _write(sink, range(2))
    mux = EventMultiplexer(size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
                           tensor_size_guidance={"deepvid": 0})
    mux.AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    dp = MultiplexerDataProvider(mux, str(tmp_path))
    plugin = DeepVIDPlugin(base_plugin.TBContext(data_provider=dp, logdir=str(tmp_path)))
    client = Client(application.TensorBoardWSGI([plugin], data_provider=dp))
    path = q("compare", instance="a", runs="r1,r2", kind="deepvid")

    first = client.get(path).get_json()
    assert first["steps"] == [0, 1] and len(first["maps"]) == 2
    store = DataProviderStore(dp)
    prints = (store.fingerprint("r1", "deepvid"), store.fingerprint("r2", "deepvid"))
    key = (("", "r1", "deepvid"), "r2")
    cached = plugin._answers.get(key, prints, "compare\0a\0")
    assert cached is not None and json.loads(gzip.decompress(cached)) == first
    # another class is another answer, read from the records decoded for the first one
    own = client.get(q("compare", instance="a", runs="r1,r2", kind="deepvid", **{"class": "own"}))
    assert own.status_code == 200 and plugin._answers.get(key, prints, "compare\0a\0own")
    # the reverse pair is its own answer
    assert client.get(q("compare", instance="a", runs="r2,r1")).get_json()["runs"] == ["r2", "r1"]

    _write(sinks["r2"], [2])
    _write(sinks["r1"], [2])
    mux.Reload()
    assert client.get(path).get_json()["steps"] == [0, 1, 2]
    for sink in sinks.values():
        sink.close()
    # bad input is never cached
    r = client.get(q("compare", instance="zzz", runs="r1,r2"))
    assert r.status_code == 404 and "'zzz'" in r.get_json()["error"]


def test_record_cache_is_bounded_and_keyed_by_blob():
    cache = RecordCache(max_records=2)
    cache.put(("r", "a", 0, "blob-1"), "one")
    cache.put(("r", "a", 1, "blob-2"), "two")
    assert cache.get(("r", "a", 0, "blob-1")) == "one"
    cache.put(("r", "a", 2, "blob-3"), "three")
    assert cache.get(("r", "a", 1, "blob-2")) is None  # least recently used went first
    assert cache.get(("r", "a", 0, "blob-9")) is None  # a re-written step is a new blob
    for bad in (0, -2, True, "8"):
        with pytest.raises(ValueError, match="max_records"):
            RecordCache(max_records=bad)


def test_records_reads_a_batch_like_one_record_at_a_time(tmp_path):
    sink = TensorBoardSink(tmp_path / "r1")
    _write(sink, range(3))
    sink.close()
    mux = EventMultiplexer(size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
                           tensor_size_guidance={"deepvid": 0})
    mux.AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    dp = MultiplexerDataProvider(mux, str(tmp_path))
    cache = RecordCache()
    store = DataProviderStore(dp, records=cache)
    wanted = [("r1", "a", 0), ("r1", "b", 2), ("r1", "a", 7), ("nope", "a", 0)]
    got = store.records(wanted, kind="deepvid")
    assert got[0] == make_record("a", 0) and got[1] == make_record("b", 2)
    assert isinstance(got[2], KeyError) and isinstance(got[3], KeyError)
    # a second store (the next request) gets the very same decoded records from the cache
    again = DataProviderStore(dp, records=cache).record("r1", "a", 0, kind="deepvid")
    assert again is got[0]
