"""Two short DeepVID runs logged into a real MLflow server through ``MLflowSink``.

Run A goes through the fluent API (``mlflow.start_run``), run B through an explicit run id and
``MlflowClient``. They track different instance sets on purpose (B has one more), and one id is
a ``<script>`` tag, so every reader must escape names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid

from tests.factories import make_record

EVIL = "<script>alert('x')</script>"
STEPS = (0, 1, 2, 3)
IDS_A = ("a", "b", EVIL)
IDS_B = ("a", "b", EVIL, "only-b")
N_SHOWN = 8


def record(instance: str, step: int, seed: int):
    return make_record(instance, step, n_shown=N_SHOWN, seed=seed)


@dataclasses.dataclass
class LoggedRuns:
    url: str
    experiment_id: str
    a: str
    b: str
    seeds: dict  # run id -> seed used for its records
    ids: dict  # run id -> instance ids


@contextlib.contextmanager
def fluent_tracking(url: str):
    """Point the fluent API at ``url`` for a block (module-scoped fixtures cannot monkeypatch)."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(url)
    try:
        yield
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


def log_two_runs(server, viewer_every: int = 2) -> LoggedRuns:
    import mlflow

    from deepvid_plugin.mlflow.sink import MLflowSink

    client = server.client()
    exp = client.create_experiment(f"deepvid-two-runs-{uuid.uuid4().hex[:8]}")
    with fluent_tracking(server.url), mlflow.start_run(experiment_id=exp, run_name="run A") as run:
        sink = MLflowSink(viewer_every=viewer_every)
        for step in STEPS:
            for i in IDS_A:
                sink.write(record(i, step, seed=1), step)
            sink.flush()
            # the run's own metrics: through the sink, and straight from MLflow's API
            sink.log_metrics({"test_accuracy": 0.5 + step / 10}, step)
            mlflow.log_metric("train_loss", 1.0 / (step + 1), step=step)
        sink.close()
        a = run.info.run_id
    b = client.create_run(exp, run_name="run B").info.run_id
    # run A logs what the sink logs by default, run B everything it can (opt-in)
    with MLflowSink(b, client=client, viewer_every=viewer_every, subject_metrics=True,
                    log_images="all") as sink:
        for step in STEPS:
            for i in IDS_B:
                sink.write(record(i, step, seed=2), step)
    client.set_terminated(b)
    return LoggedRuns(server.url, exp, a, b, {a: 1, b: 2}, {a: IDS_A, b: IDS_B})
