"""Row 3: the first artifact upload fails once (a 502).

Before: step 0 was never uploaded; the per-instance neighbour file was marked sent before its
upload, so it was never sent; and the running ``mlflow server --app-name deepvid`` kept
answering "neighbour images ... missing" after the run finished.

The fault is in MLflow's own transport (its artifact repository's ``http_request`` answers 502
to the first upload of a neighbour file, below MLflow's retry layer: what a proxy in front of the
server does once MLflow's retries are spent); the app is a real server reading the real store.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
import requests

from deepvid_plugin.mlflow import layout
from deepvid_plugin.mlflow.sink import MLflowSink, MLflowUnavailableError
from deepvid_plugin.mlflow.store import MLflowStore
from tests.factories import make_record


class FailOnce:
    """Answers 502 to the first PUT whose path ends with ``suffix``; passes the rest on."""

    def __init__(self, real, suffix: str):
        self.real, self.suffix, self.failed = real, suffix, []

    def __call__(self, host_creds, endpoint, method, **kwargs):
        if method == "PUT" and endpoint.endswith(self.suffix) and not self.failed:
            self.failed.append(endpoint)
            answer = requests.Response()
            answer.status_code, answer.reason = 502, "Bad Gateway"
            answer._content, answer.url = b"bad gateway", f"{host_creds.host}{endpoint}"
            return answer
        return self.real(host_creds, endpoint, method, **kwargs)


def _record_json(server, run_id, instance, step) -> dict:
    query = urllib.parse.urlencode({"run": run_id, "instance": instance, "step": step,
                                    "kind": "deepvid"})
    with urllib.request.urlopen(f"{server.url}/deepvid/api/record?{query}", timeout=60) as r:
        return json.loads(r.read())


@pytest.mark.e2e
def test_a_failed_upload_is_retried_whole(mlflow_server, monkeypatch, tmp_path):
    from mlflow.store.artifact import http_artifact_repo

    fault = FailOnce(http_artifact_repo.http_request, layout.SUBJECT_SUFFIX)
    monkeypatch.setattr(http_artifact_repo, "http_request", fault)
    client = mlflow_server.client()
    run_id = client.create_run(client.create_experiment("fails-once")).info.run_id
    sink = MLflowSink(run_id, client=client, viewer_every=0)
    written = {(i, s): make_record(i, s) for s in (0, 1) for i in ("a", "b")}
    for i in ("a", "b"):
        sink.write(written[(i, 0)], 0)
    with pytest.raises(MLflowUnavailableError, match="502"):
        sink.flush()  # the user is told (the callback warns), the step waits on disk
    assert fault.failed and fault.failed[0].endswith(".dvia")
    for i in ("a", "b"):
        sink.write(written[(i, 1)], 1)
    sink.close()  # step 0 goes first, whole, then step 1
    store = MLflowStore(client)
    for (i, s), rec in written.items():
        got = store.record(run_id, i, s, kind="deepvid")
        assert got == rec and got.has_neighbour_images, (i, s)
    history = client.get_metric_history(run_id, layout.run_metric("deepvid", "fidelity_mean"))
    assert sorted(m.step for m in history) == [0, 1]
    assert os.listdir(tmp_path) == []  # nothing of the sink left behind here ...
    assert not os.path.exists(sink.spool_dir)  # ... nor in its spool: everything was sent


@pytest.mark.e2e
def test_the_app_forgets_a_missing_file_when_the_run_changes(mlflow_app_server):
    # What the app saw before the fix: a run whose neighbour file came after its first read.
    client = mlflow_app_server.client()
    run_id = client.create_run(client.create_experiment("late-file")).info.run_id
    sink = MLflowSink(run_id, client=client, viewer_every=0, log_images=False)
    rec = make_record("a", 0)
    sink.write(rec, 0)
    sink.flush()  # no bundles: the app reads the per-step files
    client.set_terminated(run_id)  # finished: the app caches what it reads of it for good
    info = client.get_run(run_id).info
    root = os.path.join(mlflow_app_server.artifacts_destination, info.experiment_id, run_id,
                        "artifacts", layout.SUBJECTS_DIR)
    late = os.path.join(root, "a" + layout.SUBJECT_SUFFIX)
    os.rename(late, late + ".away")  # not there yet when the app first reads the record
    first = _record_json(mlflow_app_server, run_id, "a", 0)
    assert any("neighbour images" in w and "missing" in w for w in first["warnings"]), first
    os.rename(late + ".away", late)  # the writer's retry delivers it ...
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(layout.REVISION_TAG, "retried")])  # ... and says so
    time.sleep(MLflowStore(client).live_ttl_s + 0.5)  # the app re-checks a run this often
    again = _record_json(mlflow_app_server, run_id, "a", 0)
    assert again["warnings"] == [], again
    assert len(again["neighbours"]) == len(rec.neighbours)
    np.testing.assert_array_equal(again["neighbour_teacher"], rec.neighbour_teacher)
    sink.close()
