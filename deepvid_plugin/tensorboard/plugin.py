"""Read side: the DeepVID tab's HTTP backend inside TensorBoard.

Routes (``http_api.md``) live under ``/data/plugin/deepvid/``; every other path under it serves a
file of the built frontend in ``static/``. Data is read only through ``context.data_provider``,
so the plugin works the same under the Python multiplexer (``--load_fast=false``) and RustBoard
(``--load_fast=true``, where ``context.multiplexer`` is None). The reading itself is
:class:`~deepvid_plugin.tensorboard.store.DataProviderStore` (:mod:`.store`); this module is the
HTTP half: the shared route table's WSGI apps and the static files.
"""

from __future__ import annotations

import gzip
import json
import mimetypes
import os
from collections.abc import Callable

from tensorboard import plugin_util
from tensorboard.backend import http_util, json_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from deepvid_plugin import api
from deepvid_plugin.tensorboard import metadata

# DataProviderStore and OverviewCache live in .store; imported here also so that
# ``from deepvid_plugin.tensorboard.plugin import DataProviderStore`` keeps working.
from deepvid_plugin.tensorboard.store import DataProviderStore, OverviewCache, RecordCache

# The built frontend, shared with the MLflow app and the viewer: deepvid_plugin/static.
STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
_MIMETYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
              ".map": "application/json", ".json": "application/json", ".html": "text/html",
              ".svg": "image/svg+xml", ".png": "image/png", ".woff2": "font/woff2",
              ".wasm": "application/wasm"}


# No spaces after separators: 6% of the 64 x 200 overview (8.6 MB -> 8.1 MB of JSON).
_COMPACT = (",", ":")


def _json_bytes(body: dict) -> bytes:
    """``body`` as the ASCII JSON ``http_util.Respond`` would send.

    Respond runs ``json_util.Cleanse`` over every value first (NaN -> "NaN"), which costs more
    than reading the data for a 12,800-summary overview. Our answers are finite by construction
    (summaries are written with ``allow_nan=False``), so Cleanse is only the fallback for a
    hand-made summary that smuggled a NaN in.
    """
    try:
        text = json.dumps(body, ensure_ascii=True, allow_nan=False, separators=_COMPACT)
    except ValueError:
        text = json.dumps(json_util.Cleanse(body), ensure_ascii=True, separators=_COMPACT)
    return text.encode("ascii")


def _gzip_json(body: dict) -> bytes:
    return gzip.compress(_json_bytes(body), compresslevel=3, mtime=0)  # Respond's level


class DeepVIDPlugin(base_plugin.TBPlugin):
    """The DeepVID tab: JSON routes of ``http_api.md`` plus the bundled frontend."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        self._data_provider = context.data_provider
        self._cache = OverviewCache()
        # Only to read the writers' manifests beside local event files (.manifest): the data
        # itself is read through the data provider alone.
        self._logdir = getattr(context, "logdir", None) or None
        # answers that depend on several runs (compare): small, keyed by the runs and the kind
        self._answers = OverviewCache(max_runs=64)
        self._records = RecordCache()

    def get_plugin_apps(self):
        # One WSGI app per entry of the shared route table: a new route needs no edit here.
        apps = {f"/{name}": self._route_app(route) for name, route in api.ROUTES.items()}
        apps["/*"] = self._static_route
        return apps

    def is_active(self):
        # TensorBoard 2.21 decides activity from data_plugin_names() (any run with "deepvid"
        # data); this is only consulted as a fallback, and listing runs here would be slow.
        return False

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="DeepVID")

    # ---- routes: parse the request, call the *_impl in deepvid_plugin.api ---------------------
    def _store(self, request) -> DataProviderStore:
        return DataProviderStore(self._data_provider, plugin_util.context(request.environ),
                                 plugin_util.experiment_id(request.environ), self._cache,
                                 logdir=self._logdir, records=self._records)

    def _answer(self, request, work: Callable[[DataProviderStore], dict]):
        try:
            body, code = work(self._store(request)), 200
        except api.ApiError as e:
            body, code = e.to_json(), e.status
        return http_util.Respond(request, _json_bytes(body), "application/json", code=code)

    def _route_app(self, route: api.Route):
        @wrappers.Request.application
        def app(request):
            if route.cache_name is not None:
                return self._answer_run(request, route)
            return self._answer(request, lambda s: route.handle(s, request.args))

        return app

    def _answer_run(self, request, route: api.Route):
        """Like :meth:`_answer`, for an answer that depends only on the data of one kind in the
        runs ``route.cache_runs`` names (``route.cache_name`` names the answer).

        Its gzipped bytes are kept while those runs are unchanged, so asking again costs one
        listing per run: the overview is megabytes of JSON at 64 x 200, and encoding it costs
        more than reading it; a compare reads one record per step in each run. Answers of one
        run sit with its overview (:class:`OverviewCache`), answers of several in their own
        cache, so a burst of compares never evicts the overviews.
        """
        store = self._store(request)
        try:
            runs = list(route.cache_runs(request.args))
            if len(runs) > 1:
                store.runs()  # one listing of every run, which the fingerprints reuse
            kind = api.resolve_kind(store, runs, api.parse_kind(request.args))
            what = route.cache_name(request.args)
            try:
                prints = [store.fingerprint(r, kind) for r in runs]
                fingerprint = prints[0] if len(prints) == 1 else tuple(prints)
            except KeyError:
                fingerprint = None  # the route answers the 404
            if len(runs) == 1:
                cache, key = self._cache, store.cache_key(runs[0], kind)
            else:
                cache, key = self._answers, (store.cache_key(runs[0], kind), *runs[1:])
            gz = None if fingerprint is None else cache.get(key, fingerprint, what)
            if gz is None:
                gz = _gzip_json(route.handle(store, request.args))
                if fingerprint is not None:
                    cache.put(key, fingerprint, what, gz)
        except api.ApiError as e:
            return http_util.Respond(request, _json_bytes(e.to_json()), "application/json",
                                     code=e.status)
        return http_util.Respond(request, gz, "application/json", content_encoding="gzip")

    @wrappers.Request.application
    def _static_route(self, request):
        # Served under /data/plugin/deepvid/ (behind any --path_prefix): the name is what follows.
        marker = f"/plugin/{metadata.PLUGIN_NAME}/"
        path = request.path
        name = path[path.index(marker) + len(marker):] if marker in path else ""
        return self._static_file(request, name)

    def _static_file(self, request, name: str):
        missing = http_util.Respond(request, {"error": f"no such file: {name!r}"},
                                    "application/json", code=404)
        # Only plain relative names: no "..", no empty or hidden-dot parts, no NUL/backslash.
        if not name or "\\" in name or "\x00" in name or any(
                p in ("", ".", "..") for p in name.split("/")):
            return missing
        root = os.path.realpath(STATIC_DIR)
        full = os.path.realpath(os.path.join(root, name))
        if os.path.commonpath([root, full]) != root or not os.path.isfile(full):
            return missing  # also a symlink that leads out of static/
        ext = os.path.splitext(full)[1].lower()
        mimetype = _MIMETYPES.get(ext) or mimetypes.guess_type(full)[0] or \
            "application/octet-stream"
        with open(full, "rb") as f:
            content = f.read()
        return http_util.Respond(request, content, mimetype)
