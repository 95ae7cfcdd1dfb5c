"""`mlflow server --app-name deepvid` (MLflow's default uvicorn server): page, static files and
the JSON API, with hostile input."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.mlflow.runs import EVIL, STEPS, log_two_runs


def get(server, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=60) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def get_json(server, path: str) -> tuple[int, dict]:
    status, ctype, body = get(server, path)
    assert ctype.startswith("application/json"), (path, status, ctype, body[:200])
    return status, json.loads(body)


@pytest.fixture(scope="module")
def app_runs(mlflow_app_server):
    return log_two_runs(mlflow_app_server)


def q(**params) -> str:
    return urllib.parse.urlencode(params)


def test_page_and_static_files(mlflow_app_server):
    status, ctype, body = get(mlflow_app_server, "/deepvid/")
    assert status == 200 and ctype.startswith("text/html")
    html = body.decode()
    assert 'data-api-base="/deepvid/api/"' in html and 'src="/deepvid/static/deepvid.js"' in html
    for name, kind in (("deepvid.js", "javascript"), ("deepvid.css", "text/css")):
        status, ctype, body = get(mlflow_app_server, f"/deepvid/static/{name}")
        assert status == 200 and kind in ctype and len(body) > 1000
    # MLflow itself still works next to the app (FastAPI routes + Flask routes)
    assert get(mlflow_app_server, "/health")[0] == 200
    assert get(mlflow_app_server, "/api/2.0/mlflow/experiments/search?max_results=1")[0] == 200


def test_api_answers_like_the_tensorboard_plugin(mlflow_app_server, app_runs):
    s = mlflow_app_server
    status, body = get_json(s, "/deepvid/api/runs?" + q(experiment=app_runs.experiment_id))
    assert status == 200 and body["experiment"] == app_runs.experiment_id
    assert {r["run"]: (r["name"], r["instances"], r["steps"]) for r in body["runs"]} == {
        app_runs.a: ("run A", 3, len(STEPS)), app_runs.b: ("run B", 4, len(STEPS))}
    assert app_runs.experiment_id in [e["id"] for e in body["experiments"]]
    # each run links back to its page in MLflow's own UI, and says when it began
    for r in body["runs"]:
        assert r["url"] == f"/#/experiments/{app_runs.experiment_id}/runs/{r['run']}"
    started = {r["run"]: r["started"] for r in body["runs"]}
    assert started[app_runs.a] <= started[app_runs.b]  # run A was created first
    status, body = get_json(s, "/deepvid/api/metrics?" + q(run=app_runs.a))
    assert status == 200 and [m["name"] for m in body["metrics"]] == ["test_accuracy",
                                                                      "train_loss"]
    assert body["metrics"][0] == {"name": "test_accuracy", "steps": list(STEPS),
                                  "values": [0.5 + s / 10 for s in STEPS]}
    status, body = get_json(s, "/deepvid/api/metrics?" + q(run=app_runs.b))
    assert status == 200 and body["metrics"] == []  # DeepVID's own metrics are left out
    status, body = get_json(s, "/deepvid/api/instances?" + q(run=app_runs.a))
    assert status == 200 and [i["id"] for i in body["instances"]] == ["a", "b", EVIL]
    status, body = get_json(s, "/deepvid/api/timeline?" + q(run=app_runs.a, instance=EVIL))
    assert status == 200 and [st["step"] for st in body["steps"]] == list(STEPS)
    status, body = get_json(s, "/deepvid/api/record?" + q(run=app_runs.b, instance="only-b",
                                                            step=2))
    assert status == 200 and body["step"] == 2 and len(body["weights"]) == 10
    assert len(body["neighbours"]) == 8 and body["warnings"] == []
    status, body = get_json(s, "/deepvid/api/compare?" + q(
        instance="a", runs=f"{app_runs.a},{app_runs.b}"))
    assert status == 200 and [m["step"] for m in body["maps"]] == list(STEPS)
    assert "different instance sets" in body["note"]


@pytest.mark.parametrize("path, status", [
    ("/deepvid/api/instances", 400),
    ("/deepvid/api/instances?run=", 400),
    ("/deepvid/api/instances?" + q(run=EVIL), 404),
    ("/deepvid/api/instances?" + q(run="../../etc/passwd"), 404),
    ("/deepvid/api/timeline?" + q(run="nope", instance="a"), 404),
    ("/deepvid/api/timeline?" + q(run="{A}", instance=EVIL + "x"), 404),
    ("/deepvid/api/record?" + q(run="{A}", instance="a", step="1.5"), 400),
    ("/deepvid/api/record?" + q(run="{A}", instance="a", step="9" * 40), 400),
    ("/deepvid/api/record?" + q(run="{A}", instance="a", step="99"), 404),
    ("/deepvid/api/record?" + q(run="{A}", instance="a"), 400),
    ("/deepvid/api/compare?" + q(instance="a", runs="{A}"), 400),
    ("/deepvid/api/compare?" + q(instance="a", runs="{A},{A}"), 400),
    ("/deepvid/api/compare?" + q(instance="a", runs="{A},nope"), 404),
    # compare draws two runs; a third is rejected (400) before anything is read, not ignored
    ("/deepvid/api/compare?" + q(instance="a", runs="{A},{B},nope"), 400),
    ("/deepvid/api/compare?" + q(instance="only-b", runs="{A},{B}"), 404),
    ("/deepvid/api/runs?" + q(experiment="999999"), 404),
    ("/deepvid/api/metrics", 400),
    ("/deepvid/api/metrics?" + q(run="nope"), 404),
    ("/deepvid/api/runs?" + q(experiment=EVIL), 404),
    ("/deepvid/api/" + urllib.parse.quote(EVIL), 404),
    ("/deepvid/static/..%2F..%2Fsetup.cfg", 404),
    ("/deepvid/static/%3Cscript%3E.js", 404),
    ("/deepvid/?" + q(view=EVIL), 400),
])
def test_bad_input_is_a_json_400_or_404(mlflow_app_server, app_runs, path, status):
    path = path.replace("%7BA%7D", app_runs.a).replace("%7BB%7D", app_runs.b)
    got, body = get_json(mlflow_app_server, path)
    assert got == status, (path, body)
    assert set(body) == {"error"} and body["error"]
