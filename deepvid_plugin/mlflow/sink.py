"""`MLflowSink`: write explanation records of any kind into an MLflow run (layout: :mod:`.layout`).

Works with the three ways people hold an MLflow run::

    MLflowSink()                                  # the fluent active run (mlflow.start_run())
    MLflowSink(run_id, client=MlflowClient(uri))  # an explicit run
    MLflowSink(logger=MLFlowLogger(...))          # Lightning: logger.experiment is a client

One write path for every kind: what differs between kinds (arrays stored once per subject,
step summary, metrics, step image) is declared in the kind registry (:mod:`deepvid_plugin.core.kinds`).

Per step it costs one ``log_artifacts`` upload (every kind's records, per-subject arrays the first
time, the step's summaries, under ``deepvid/<kind>/``) and one ``log_batch`` (each kind's metrics
per subject, e.g. DeepVID's ``deepvid/fidelity/<key>`` and, for records with faithfulness
evidence, ``deepvid/deletion_auc/<key>`` and ``deepvid/insertion_auc/<key>``; plus the mean
headline, ``deepvid/fidelity_mean`` for DeepVID); one ``log_image`` per subject of a kind that
draws one (DeepVID's ``render_weight_map``: weight and contribution over the instance, with
colour bars, so MLflow's own image slider shows a readable timeline with no extra code) goes out
on a background thread. Writes are buffered per step: a record of a new step, ``flush()`` or
``close()`` uploads the buffered one. Every ``viewer_every`` uploaded steps, and on ``close()``,
``deepvid/viewer.html`` (self-contained; DeepVID data) and ``deepvid/<kind>/index.json`` are
rewritten; ``close()`` also writes one bundle per subject (:mod:`.bundle`), so readers of the
finished run need one request per subject, not per step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from deepvid_plugin.core import kinds
from deepvid_plugin.core.encode import encode_image
from deepvid_plugin.core.record import Record, encode_arrays
from deepvid_plugin.mlflow import bundle, hooks, layout
from deepvid_plugin.mlflow.written import WrittenStore

logger = logging.getLogger(__name__)

#: steps of weight-map images that may wait for upload before write() blocks.
_MAX_PENDING_IMAGE_STEPS = 4


def deletion_auc_metric(key: str) -> str:
    """MLflow metric of an instance's deletion AUC (lower: its map finds what the model uses)."""
    return f"{layout.ROOT}/deletion_auc/{key}"


def insertion_auc_metric(key: str) -> str:
    """MLflow metric of an instance's insertion AUC (higher is better)."""
    return f"{layout.ROOT}/insertion_auc/{key}"


#: MLflow's limit on metrics per log_batch request.
_MAX_BATCH_METRICS = 1000


class MLflowSink:
    """Persist records of any registered kind in an MLflow run (implements ``Sink``).

    Args:
        run_id: the run to write to. ``None``: the run of ``logger``, or else the fluent active
            run at the first write.
        client: an ``MlflowClient`` for ``run_id`` (default: one for ``tracking_uri``).
        logger: a Lightning ``MLFlowLogger``; its ``experiment`` (a client) and ``run_id`` are
            used. On non-zero ranks it has no run, and this sink then writes nothing.
        tracking_uri: used only to build the default client.
        viewer_every: rewrite ``deepvid/viewer.html`` every this many uploaded steps
            (``0``: only on ``close()``).
        log_images: also ``log_image`` each weight map (MLflow's native step slider).
        title: title of the viewer page (default: the run name).
        viewer_record_budget: bytes of full records (the detail panel) the viewer may carry;
            the newest steps of every instance that fit are kept (see :mod:`.pages`).
    """

    def __init__(self, run_id: str | None = None, *, client: Any = None, logger: Any = None,
                 tracking_uri: str | None = None, viewer_every: int = 10,
                 log_images: bool = True, title: str | None = None,
                 viewer_record_budget: int = 3_000_000):
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise TypeError(f"run_id: expected a non-empty str or None, got {run_id!r}")
        if isinstance(viewer_every, bool) or not isinstance(viewer_every, int) or viewer_every < 0:
            raise ValueError(f"viewer_every: expected an int >= 0 (0 = only on close), got "
                             f"{viewer_every!r}")
        if logger is not None and (run_id is not None or client is not None):
            raise ValueError("logger: pass either logger=MLFlowLogger(...) or run_id/client, "
                             "not both")
        if logger is not None and not hasattr(logger, "experiment"):
            raise TypeError(f"logger: expected a Lightning MLFlowLogger (with .experiment and "
                            f".run_id), got {type(logger).__name__}")
        self._run_id = run_id
        self._client = client
        self._logger = logger
        self._tracking_uri = tracking_uri
        self.viewer_every = viewer_every
        self.log_images = bool(log_images)
        if isinstance(viewer_record_budget, bool) or not isinstance(viewer_record_budget, int) \
                or viewer_record_budget < 0:
            raise ValueError(f"viewer_record_budget: expected an int >= 0 (bytes), got "
                             f"{viewer_record_budget!r}")
        self.viewer_record_budget = viewer_record_budget
        self._title = title
        self._resolved = False
        self._disabled = False
        self._closed = False
        self._keys: dict[tuple[str, str], str] = {}  # (kind, subject) -> layout key
        self._owners: dict[tuple[str, str], str] = {}  # (kind, key) -> subject (collisions)
        self._previous: dict[tuple[str, str], dict] = {}  # (kind, subject) -> last summary
        self._subject_sent: set[tuple[str, str]] = set()  # per-subject data uploaded
        self._buffer: list[tuple[Any, Record, dict]] = []
        self._buffer_step: int | None = None
        self._steps_uploaded = 0
        self._store: WrittenStore | None = None
        self._image_pool: ThreadPoolExecutor | None = None
        self._image_jobs: list[Future] = []

    # ---- run resolution ----------------------------------------------------------------------
    @property
    def run_id(self) -> str | None:
        self._resolve()
        return self._run_id

    def _resolve(self) -> None:
        if self._resolved:
            return
        if self._logger is not None:
            experiment = self._logger.experiment  # creates the run on rank zero
            run_id = getattr(self._logger, "run_id", None)
            if run_id is None:  # non-zero rank: Lightning hands out a dummy experiment
                self._disabled = True
            else:
                self._client, self._run_id = experiment, run_id
        elif self._run_id is None:
            import mlflow

            active = mlflow.active_run()
            if active is None:
                raise RuntimeError(
                    "MLflowSink: no run to write to: call mlflow.start_run() first, or pass "
                    "run_id=... (with client=MlflowClient(...)) or logger=MLFlowLogger(...)")
            self._run_id = active.info.run_id
            self._client = self._client or mlflow.MlflowClient(mlflow.get_tracking_uri())
        if self._client is None and not self._disabled:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self._tracking_uri)
        if not self._disabled:
            run = self._client.get_run(self._run_id)  # fails early, naming the run, if unknown
            self._store = WrittenStore(self._run_id, run.info.run_name or self._run_id)
            self._client.set_tag(self._run_id, layout.LAYOUT_TAG, str(layout.LAYOUT_VERSION))
        self._resolved = True

    # ---- Sink protocol -----------------------------------------------------------------------
    def write(self, record: Any, step: int) -> None:
        """Buffer ``record`` (a :class:`~deepvid_plugin.core.record.Record` of a registered kind,
        or its typed view) at ``step`` (``step`` wins
        over ``record.step``, as a ``SummaryWriter``'s step does); a record of a new step
        uploads the previous one."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step: expected an int, got {type(step).__name__} {step!r}")
        kind, env = kinds.prepare(record)
        if self._closed:
            raise ValueError("record: this MLflowSink is closed; create a new one to write more")
        step = int(step)
        self._resolve()
        if self._disabled:
            return
        if env.step != step:
            env = dataclasses.replace(env, step=step)
        if self._buffer_step is not None and step != self._buffer_step:
            self._upload()
        subject = (kind.name, env.subject)
        self._key(*subject)
        if any((k.name, e.subject) == subject for k, e, _ in self._buffer):
            raise ValueError(f"record: {kind.name} subject {env.subject!r} was already written "
                             f"at step {step}")
        summary = kinds.summarize(env, self._previous.get(subject))
        self._previous[subject] = summary
        self._buffer.append((kind, env, summary))
        self._buffer_step = step
        once = {n: env.arrays[n] for n in kind.per_subject
                if n in env.arrays and env.arrays[n].size > 0}
        self._store.add(env, summary, env.without(kind.per_subject).encode(), once)

    def flush(self) -> None:
        """Upload the buffered step, so readers see everything written so far (the weight-map
        step images follow in the background; :meth:`close` waits for them)."""
        if self._resolved and not self._disabled:
            self._upload()
            self._raise_image_errors(wait=False)

    def close(self) -> None:
        """Flush, then write the final ``viewer.html`` and ``index.json``. Idempotent."""
        if self._closed:
            return
        try:
            if self._resolved and not self._disabled:
                self._upload(final=True)
        finally:
            self._closed = True
            if self._image_pool is not None:
                self._image_pool.shutdown(wait=True)
        self._raise_image_errors(wait=True)

    def __enter__(self) -> MLflowSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals ---------------------------------------------------------------------------
    def _key(self, kind: str, subject: str) -> str:
        key = self._keys.get((kind, subject))
        if key is None:
            key = layout.instance_key(subject)
            owner = self._owners.get((kind, key))
            if owner is not None:  # two ids slugged to one name: refuse rather than mix them
                raise ValueError(f"record: subjects {owner!r} and {subject!r} map to the same "
                                 f"MLflow key {key!r}; rename one")
            self._keys[(kind, subject)], self._owners[(kind, key)] = key, subject
        return key

    def _upload(self, final: bool = False) -> None:
        buffered, step = self._buffer, self._buffer_step
        self._buffer, self._buffer_step = [], None
        if buffered:
            self._upload_step(step, buffered)
            self._steps_uploaded += 1
        due = (self.viewer_every and buffered and self._steps_uploaded % self.viewer_every == 0)
        if (final and self._store.by_kind) or due:
            self._upload_viewer(final=final)

    def _upload_step(self, step: int, buffered: list[tuple[Any, Record, dict]]) -> None:
        from mlflow.entities import Metric

        started = time.perf_counter()
        metrics, images, tags = [], [], {}
        now = int(time.time() * 1000)
        by_kind: dict[str, list[tuple[Any, Record, dict]]] = {}
        for item in buffered:
            by_kind.setdefault(item[0].name, []).append(item)
        with tempfile.TemporaryDirectory(prefix="deepvid-mlflow-") as tmp:
            for name, items in by_kind.items():
                kind, where = items[0][0], os.path.join(tmp, name)
                data = self._store.by_kind[name]
                entries, headlines = [], []
                for _, env, summary in items:
                    subject, key = env.subject, self._keys[(name, env.subject)]
                    path = os.path.join(where, "records", layout.record_file(key, step))
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    blob = data.blobs[(subject, step)]
                    with open(path, "wb") as f:
                        f.write(blob)
                    entry = {"id": subject, "key": key, "label": data.labels[subject],
                             "summary": summary, "record_crc32": bundle.crc32(blob)}
                    if (name, subject) not in self._subject_sent:
                        # First sighting: the instance image and the per-subject arrays, once.
                        if data.images[subject] is not None:
                            entry["image"] = encode_image(data.images[subject])
                        if subject in data.once:
                            spath = os.path.join(where, "subjects",
                                                 layout.paths(name).subject_file(key))
                            os.makedirs(os.path.dirname(spath), exist_ok=True)
                            with open(spath, "wb") as f:
                                f.write(encode_arrays(data.once[subject]))
                        self._subject_sent.add((name, subject))
                    entries.append(entry)
                    backend = hooks.of(kind)
                    for metric_name, value in hooks.metrics(kind, env, summary).items():
                        full = (layout.run_metric(metric_name) if backend.run_metrics
                                else layout.metric(name, metric_name, key,
                                                   backend.subject_first_metrics))
                        metrics.append(Metric(full, value, now, step))
                        if metric_name == backend.headline_metric and not backend.run_metrics:
                            headlines.append(value)
                    if self.log_images and backend.step_image is not None:
                        images.append((layout.image_key(key, name), env, backend.step_image))
                    if backend.tags is not None:
                        tags.update(backend.tags(env))
                if headlines:
                    metrics.append(Metric(layout.mean_metric(name), float(np.mean(headlines)),
                                          now, step))
                os.makedirs(os.path.join(where, "steps"))
                with open(os.path.join(where, "steps", layout.step_file(step)), "w",
                          encoding="utf-8") as f:
                    json.dump({"layout": layout.LAYOUT_VERSION, "kind": name, "step": step,
                               "class_names": list(data.class_names), "instances": entries},
                              f, separators=(",", ":"), allow_nan=False)
            # One upload for the whole step; steps/ last in the listing order does not matter
            # because readers treat a summary whose record is missing as a skipped record.
            self._client.log_artifacts(self._run_id, tmp, artifact_path=layout.ROOT)
        for start in range(0, len(metrics), _MAX_BATCH_METRICS):
            self._client.log_batch(self._run_id,
                                   metrics=metrics[start:start + _MAX_BATCH_METRICS])
        for tag, value in tags.items():  # e.g. the alert kind's latest sentence
            self._client.set_tag(self._run_id, tag, value)
        if images:
            # Each log_image costs three requests (PNG, WebP thumbnail, tag), about 10x the
            # rest of the step, and drawing one costs ~9 ms, so both happen on one background
            # thread (records are frozen); close() waits for them.
            self._submit_images(step, images)
        logger.debug("deepvid: step %d (%d records) logged to MLflow run %s in %.3fs", step,
                     len(buffered), self._run_id, time.perf_counter() - started)

    def _submit_images(self, step: int, images: list[tuple[str, Record, Any]]) -> None:
        if self._image_pool is None:
            self._image_pool = ThreadPoolExecutor(max_workers=1,
                                                  thread_name_prefix="deepvid-mlflow-images")
        client, run_id = self._client, self._run_id

        def send() -> None:
            for key, env, draw in images:
                client.log_image(run_id, draw(env), key=key, step=step)

        self._image_jobs.append(self._image_pool.submit(send))
        # Back-pressure: a training loop faster than the uploads must not queue without bound.
        while len(self._image_jobs) > _MAX_PENDING_IMAGE_STEPS:
            self._image_jobs.pop(0).result()
        self._raise_image_errors(wait=False)

    def _raise_image_errors(self, wait: bool) -> None:
        """Re-raise the first failed image upload in the caller's thread (never swallowed)."""
        pending = []
        for job in self._image_jobs:
            if wait or job.done():
                job.result()
            else:
                pending.append(job)
        self._image_jobs = pending

    def _upload_viewer(self, final: bool = False) -> None:
        from deepvid_plugin.api import viewer
        from deepvid_plugin.mlflow import pages

        store = self._store
        html = None
        if store.by_kind:  # the frontend has a view for every kind
            title = self._title or f"DeepVID: {store.name}"
            snap = pages.budgeted_snapshot(store, [store.run],
                                           record_budget=self.viewer_record_budget)
            html = viewer.standalone_html(snap, title=title)
        if final:
            # Before index.json and the viewer, in their own upload: a reader that lists a
            # bundle finds it whole (readers use bundles of finished runs only anyway).
            self._upload_bundles()
        with tempfile.TemporaryDirectory(prefix="deepvid-mlflow-") as tmp:
            for name, data in store.by_kind.items():
                index = {"layout": layout.LAYOUT_VERSION, "kind": name,
                         "class_names": list(data.class_names),
                         "steps": sorted({s for steps in data.summaries.values() for s in steps}),
                         "instances": [{"id": iid, "key": self._keys[(name, iid)],
                                        "label": data.labels[iid],
                                        "image": None if data.images[iid] is None
                                        else encode_image(data.images[iid]),
                                        "summaries": [s for _, s in sorted(steps.items())],
                                        "record_crc32": [bundle.crc32(data.blobs[(iid, step)])
                                                         for step in sorted(steps)]}
                                       for iid, steps in data.summaries.items()]}
                os.makedirs(os.path.join(tmp, name))
                with open(os.path.join(tmp, name, "index.json"), "w", encoding="utf-8") as f:
                    json.dump(index, f, separators=(",", ":"), allow_nan=False)
            if html is not None:
                with open(os.path.join(tmp, "viewer.html"), "w", encoding="utf-8") as f:
                    f.write(html)
            self._client.log_artifacts(self._run_id, tmp, artifact_path=layout.ROOT)

    def _upload_bundles(self) -> None:
        store = self._store
        with tempfile.TemporaryDirectory(prefix="deepvid-mlflow-") as tmp:
            for name, data in store.by_kind.items():
                os.makedirs(os.path.join(tmp, name, "bundles"))
                for iid, steps in data.summaries.items():
                    key = self._keys[(name, iid)]
                    once = data.once.get(iid)
                    blob = bundle.encode_bundle(
                        iid, key, [(step, data.blobs[(iid, step)]) for step in sorted(steps)],
                        subject=None if not once else encode_arrays(once), kind=name)
                    with open(os.path.join(tmp, name, "bundles", layout.bundle_file(key)),
                              "wb") as f:
                        f.write(blob)
            self._client.log_artifacts(self._run_id, tmp, artifact_path=layout.ROOT)


__all__ = ["MLflowSink", "deletion_auc_metric", "insertion_auc_metric"]
