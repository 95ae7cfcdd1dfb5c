"""The plugin in-process over TensorBoard's multiplexer data provider (--load_fast=false path).

The plugin is mounted in TensorBoard's own WSGI app (real routing, real error handling) and
queried with werkzeug's test client.
"""

import json
import os

import pytest
from tensorboard import program
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.core import core_plugin
from werkzeug.test import Client

from deepvid_plugin.tensorboard import plugin as plugin_mod
from deepvid_plugin.tensorboard.loader import DeepVIDLoader
from deepvid_plugin.tensorboard.plugin import DeepVIDPlugin
from deepvid_plugin.tensorboard.store import DataProviderStore
from tests.factories import make_record
from tests.tensorboard.logdirs import write_logdir
from tests.tensorboard.routes import P, check_round_trip, q

STEPS = 12  # more than the multiplexer's default of 10 samples per tag


def _flags(*argv):
    tb = program.TensorBoard(plugins=[core_plugin.CorePluginLoader(), DeepVIDLoader()])
    tb.configure(argv=["tensorboard", "--logdir", "/unused", *argv])
    return tb.flags


def _app(logdir, samples_per_plugin):
    # Sized exactly as TensorBoard's LocalDataIngester sizes its multiplexer.
    mux = EventMultiplexer(size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
                           tensor_size_guidance={**data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE,
                                                 **samples_per_plugin})
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    dp = MultiplexerDataProvider(mux, logdir)
    plugin = DeepVIDPlugin(base_plugin.TBContext(data_provider=dp, logdir=logdir))
    return Client(application.TensorBoardWSGI([plugin], data_provider=dp)), plugin, dp


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    return write_logdir(tmp_path_factory.mktemp("logs"), steps=STEPS)


@pytest.fixture(scope="module")
def client(logdir):
    # default command line, fixed by DeepVIDLoader.fix_flags
    return _app(logdir, _flags().samples_per_plugin)[0]


def _get(client):
    def get(path):
        r = client.get(path)
        assert r.headers["Content-Type"].startswith("application/json"), (path, r.headers)
        assert r.headers.get("X-Content-Type-Options") == "nosniff"
        return r.status_code, json.loads(r.get_data(as_text=True))
    return get


def test_round_trip_every_route(client):
    with pytest.warns(UserWarning):  # the "bad" run's skipped records are also warned about
        check_round_trip(_get(client), STEPS)


def test_without_fix_flags_the_multiplexer_would_drop_steps(logdir):
    # Why the loader matters: TensorBoard's default keeps 10 samples per tag of our plugin.
    client = _app(logdir, {})[0]
    _, body = _get(client)(q("timeline", run="r1", instance="a"))
    assert len(body["steps"]) == 10 < STEPS


def test_hostile_strings_stay_data(client):
    _, body = _get(client)(q("instances", run="r1"))
    raw = json.dumps(body)
    assert "<script>b" in raw and "<b>3</b>" in raw  # delivered as JSON text, escaping is the UI's


def test_frontend_metadata_and_activity(client):
    plugin = DeepVIDPlugin(base_plugin.TBContext(data_provider=None))
    md = plugin.frontend_metadata()
    assert md.es_module_path == "/index.js" and md.tab_name == "DeepVID"
    assert plugin.data_plugin_names() == ("deepvid",)
    listing = client.get("/data/plugins_listing").get_json()
    assert listing["deepvid"]["enabled"] is True
    assert listing["deepvid"]["tab_name"] == "DeepVID"


def test_inactive_without_deepvid_data(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path / "plain")) as w:
        w.add_scalar("loss", 1.0, 0)
    client = _app(str(tmp_path), {"deepvid": 0})[0]
    assert client.get("/data/plugins_listing").get_json()["deepvid"]["enabled"] is False
    status, body = _get(client)(q("runs"))
    assert status == 200 and body == {"runs": [], "warnings": []}
    status, body = _get(client)(q("instances", run="plain"))
    assert status == 404 and "run 'plain' not found" in body["error"]


def test_store_lives_in_store_module_and_old_import_works():
    # DataProviderStore moved to tensorboard/store.py (mirroring mlflow/store.py); code that
    # imported it from the plugin module keeps working.
    from deepvid_plugin.tensorboard import store

    assert store.DataProviderStore.__module__ == "deepvid_plugin.tensorboard.store"
    assert plugin_mod.DataProviderStore is store.DataProviderStore
    assert plugin_mod.OverviewCache is store.OverviewCache


def test_static_files(client, tmp_path, monkeypatch):
    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.js").write_text("export function render() {}\n")
    (static / "assets" / "app.css").write_text("body{}")
    (tmp_path / "secret.txt").write_text("TOPSECRET")
    monkeypatch.setattr(plugin_mod, "STATIC_DIR", str(static))
    r = client.get(P + "index.js")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/javascript")
    assert r.get_data(as_text=True).startswith("export function render")
    r = client.get(P + "assets/app.css")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/css")
    for hostile in ["../secret.txt", "..%2Fsecret.txt", "assets/../../secret.txt",
                    "%2e%2e/secret.txt", "assets", "/etc/passwd", "assets//app.css",
                    "index.js%00.png"]:
        r = client.get(P + hostile)
        assert r.status_code == 404, hostile
        assert "TOPSECRET" not in r.get_data(as_text=True)
        assert r.get_json()["error"].startswith("no such file"), hostile
    os.symlink(tmp_path / "secret.txt", static / "link.txt")
    assert client.get(P + "link.txt").status_code == 404  # resolves outside static/


def test_store_skips_a_run_that_vanished(logdir):
    _, _, dp = _app(logdir, {"deepvid": 0})
    store = DataProviderStore(dp)
    with pytest.raises(KeyError):
        store.overview("nope", kind="deepvid")
    with pytest.raises(KeyError):
        store.record("r1", "a", 999, kind="deepvid")
    assert store.record("r1", "a", 0, kind="deepvid") == make_record(
        "a", 0, class_names=[f"<b>{k}</b>" for k in range(10)])
