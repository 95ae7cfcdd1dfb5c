"""The ``mlflow.app`` entry point ``deepvid``: ``mlflow server --app-name deepvid``.

MLflow has no UI plugin API, but ``--app-name`` loads a factory from the ``mlflow.app`` entry
point group instead of the plain server, as its built-in ``basic-auth`` app does. Like that app,
:func:`create_app` adds routes to MLflow's own Flask app and, under the default uvicorn server,
wraps it with ``mlflow.server.fastapi_app.create_fastapi_app`` so MLflow's FastAPI routes keep
working. Next to MLflow's UI it serves:

- ``/deepvid/``: the shared frontend (pick an experiment and runs; compare view), live;
- ``/deepvid/static/<file>``: the built frontend;
- ``/deepvid/api/<route>``: the JSON API of ``http_api.md`` (``runs`` also takes
  ``experiment=ID`` and lists the experiments to pick from).

Data is read in-process from the server's own backend store and artifact destination (no HTTP
round trip to itself). Bad parameters answer 400/404 with ``{"error": ...}``; everything is JSON
or escaped HTML.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import threading
import urllib.parse
from importlib import resources
from typing import Any

logger = logging.getLogger(__name__)

_STATIC_FILE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")
_CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                  ".map": "application/json", ".svg": "image/svg+xml", ".png": "image/png",
                  ".woff2": "font/woff2"}
_VIEWS = ("compare", "overview")
# A view name the page itself cannot check (a page kind such as "dissection", or a typo): the
# frontend reads it from the address, opens it or names it in its warnings banner.
_VIEW_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")

_store = None
_store_lock = threading.Lock()


# ---- where the data is ----------------------------------------------------------------------
def _server_env(name: str) -> str | None:
    from mlflow.server import constants

    return os.environ.get(getattr(constants, name)) or None


def _resolve_artifact_uri(uri: str) -> str:
    """``mlflow-artifacts:/0/<run>/artifacts`` -> the real location under
    ``--artifacts-destination``, exactly as MLflow's proxy handlers resolve it."""
    parsed = urllib.parse.urlparse(uri)
    destination = _server_env("ARTIFACTS_DESTINATION_ENV_VAR")
    if parsed.scheme != "mlflow-artifacts" or destination is None:
        return uri
    if "://" not in destination:
        destination = os.path.abspath(destination)
    return posixpath.join(destination.rstrip("/"), parsed.path.lstrip("/"))


def get_store():
    """The process-wide :class:`MLflowStore` over this server's own backend (built lazily)."""
    global _store
    with _store_lock:
        if _store is None:
            from mlflow import MlflowClient

            from deepvid_plugin.mlflow.store import MLflowStore

            backend = _server_env("BACKEND_STORE_URI_ENV_VAR")
            _store = MLflowStore(MlflowClient(tracking_uri=backend),
                                 resolve_artifact_uri=_resolve_artifact_uri)
        return _store


def _warm_store() -> None:
    try:
        from deepvid_plugin.api import viewer  # noqa: F401  (imported once, off the request path)

        get_store().client.search_experiments(max_results=1)
    except Exception:  # the first request builds it again and reports the error as JSON
        logger.exception("deepvid: could not open the backend store at startup")


class _ExperimentView:
    """The shared store, with ``runs()`` limited to one experiment (caches stay shared)."""

    def __init__(self, store, experiment_id: str):
        self._store, self._experiment_id = store, experiment_id

    def runs(self) -> list[tuple[str, str]]:
        return self._store.runs(experiment_ids=[self._experiment_id])

    def kinds(self, run: str) -> list[str]:
        return self._store.kinds(run)

    def overview(self, run: str, *, kind: str, instance: str | None = None):
        return self._store.overview(run, kind=kind, instance=instance)

    def record(self, run: str, instance: str, step: int, *, kind: str):
        return self._store.record(run, instance, step, kind=kind)

    def metrics(self, run: str):
        return self._store.metrics(run)

    def started(self, run: str):
        return self._store.started(run)


# ---- the API's work -------------------------------------------------------------------------
def runs_impl(store, experiment: str | None) -> dict[str, Any]:
    """``runs`` plus the experiments to pick from; the default experiment is the one of the
    newest run with DeepVID data."""
    from deepvid_plugin import api
    from deepvid_plugin.mlflow import layout, links

    client = store.client
    experiments = [{"id": e.experiment_id, "name": e.name} for e in client.search_experiments()]
    known = {e["id"] for e in experiments}
    if experiment is None:
        newest = client.search_runs([e["id"] for e in experiments],
                                    filter_string=f"tags.`{layout.LAYOUT_TAG}` != ''",
                                    max_results=1, order_by=["attributes.start_time DESC"])
        if newest:
            experiment = newest[0].info.experiment_id
        elif experiments:
            experiment = experiments[0]["id"]
    elif experiment not in known:
        raise api.ApiError(404, f"experiment {experiment!r} not found")
    body = (api.runs_impl(_ExperimentView(store, experiment)) if experiment is not None
            else {"runs": [], "warnings": []})
    for run in body["runs"]:  # a link back to each run's page in MLflow's own UI
        run["url"] = links.run_page(experiment, run["run"], _prefix())
    body["experiments"] = experiments
    body["experiment"] = experiment
    return body


def api_response(route: str, args) -> tuple[dict[str, Any], int]:
    """``(body, status)`` for ``GET /deepvid/api/<route>?args``; never raises for bad input."""
    from deepvid_plugin import api

    store = get_store()
    if route == "runs":  # the one route MLflow answers differently: runs of one experiment
        try:
            return runs_impl(store, args.get("experiment") or None), 200
        except api.ApiError as e:
            return e.to_json(), e.status
    return api.respond(store, route, args)


# ---- Flask wiring ---------------------------------------------------------------------------
def _static_dir():
    # The same built files the TensorBoard plugin and the viewer serve (deepvid_plugin/static).
    return resources.files("deepvid_plugin").joinpath("static")


def _prefix() -> str:
    # Honour `mlflow server --static-prefix`, like MLflow's own routes.
    from mlflow.server.handlers import STATIC_PREFIX_ENV_VAR

    return os.environ.get(STATIC_PREFIX_ENV_VAR, "").rstrip("/")


def register(app) -> None:
    """Add the ``/deepvid/...`` routes to MLflow's Flask ``app``."""
    import flask

    from deepvid_plugin.api import viewer

    prefix = _prefix()
    base = f"{prefix}/deepvid"

    def json_response(body: dict, status: int):
        resp = flask.jsonify(body)
        resp.status_code = status
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def page():
        # The page is a deep link (docs/ui.md, "Links"): the frontend reads view, experiment,
        # run, a, b, instance and kind from this address and keeps it up to date.
        view = flask.request.args.get("view", "compare")
        if view not in _VIEWS:
            if not _VIEW_TOKEN.fullmatch(view):  # not a name at all: markup, a path, ...
                return json_response({"error": f"query parameter 'view': expected one of "
                                               f"{list(_VIEWS)} or a kind's page name "
                                               f"([A-Za-z0-9_-]), got {view!r}"}, 400)
            view = "compare"  # the default view; the frontend opens the page kind or warns
        html = viewer.served_html(api_base=f"{base}/api/", static_base=f"{base}/static/",
                                  title="DeepVID · MLflow", view=view)
        resp = flask.Response(html, mimetype="text/html")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    def redirect():
        return flask.redirect(f"{base}/", code=308)

    def static(name: str):
        suffix = os.path.splitext(name)[1]
        if not _STATIC_FILE.fullmatch(name) or suffix not in _CONTENT_TYPES:
            return json_response({"error": f"static file {name!r} not found"}, 404)
        item = _static_dir().joinpath(name)
        if not item.is_file():
            return json_response({"error": f"static file {name!r} not found"}, 404)
        resp = flask.Response(item.read_bytes(), content_type=_CONTENT_TYPES[suffix])
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    def api_route(route: str):
        try:
            body, status = api_response(route, flask.request.args)
        except Exception as e:  # a real server fault: logged in full, answered as JSON
            logger.exception("deepvid: %s failed", route)
            body, status = {"error": f"internal error in {route!r}: {type(e).__name__}: {e}"}, 500
        return json_response(body, status)

    app.add_url_rule(f"{base}", "deepvid_redirect", redirect, methods=["GET"])
    app.add_url_rule(f"{base}/", "deepvid_page", page, methods=["GET"])
    app.add_url_rule(f"{base}/static/<path:name>", "deepvid_static", static, methods=["GET"])
    app.add_url_rule(f"{base}/api/<path:route>", "deepvid_api", api_route, methods=["GET"])


def create_app(app=None):
    """Factory for ``mlflow server --app-name deepvid`` (entry point group ``mlflow.app``).

    Returns MLflow's Flask app with the DeepVID routes, wrapped in MLflow's FastAPI app when the
    server runs under uvicorn (MLflow's default), as ``mlflow.server.auth.create_app`` does.
    """
    if app is None:
        from mlflow.server import app as mlflow_app

        app = mlflow_app
    register(app)
    # Open the backend store (sqlite schema check, ~0.1-0.4 s) while the server starts, not on
    # the first page load; a failure here is logged and retried by the first request.
    if _server_env("BACKEND_STORE_URI_ENV_VAR"):  # only inside `mlflow server`
        threading.Thread(target=_warm_store, name="deepvid-warm-store", daemon=True).start()
    from mlflow.environment_variables import _MLFLOW_SGI_NAME

    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app


__all__ = ["api_response", "create_app", "get_store", "register", "runs_impl"]
