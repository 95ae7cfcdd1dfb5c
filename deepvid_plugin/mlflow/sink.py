"""`MLflowSink`: write explanation records of any kind into an MLflow run (layout: :mod:`.layout`).

Works with the three ways people hold an MLflow run::

    MLflowSink()                                  # the fluent active run (mlflow.start_run())
    MLflowSink(run_id, client=MlflowClient(uri))  # an explicit run
    MLflowSink(logger=MLFlowLogger(...))          # Lightning: logger.experiment is a client

One write path for every kind: what differs between kinds (arrays stored once per subject,
step summary) is declared in the kind registry (:mod:`deepvid_plugin.core.kinds`), what MLflow
gets of each kind (metrics, step image) in :mod:`.hooks`, chosen per step in :mod:`.steps`; the
index, viewer and bundles are :mod:`.finals`', the hold on the run (checking it, one writer,
its tags) :mod:`.runlink`'s.

What is sent per step: one ``log_artifacts`` (every kind's records, per-subject arrays the first
time, the step's summaries, under ``deepvid/<kind>/``), one ``log_batch`` of the step's metrics
and the run's ``deepvid.*`` tags, and step cards. Which metrics and which cards is chosen in
:mod:`.selection`: by default a few run-level summaries per kind (``deepvid/fidelity_mean``,
``deepvid/trusted_share``, ``deepvid/gradcam/deletion_auc_mean``, ...), and a subject's step card
(DeepVID's ``render_weight_map``: its maps over the instance, its labels and trust, readable in
MLflow's thumbnail) at its first step, where its prediction changes and at its last.
Per-subject metrics are opt-in (``subject_metrics=True``). The run is tagged and described with
its address in the DeepVID app (:mod:`.links`). Every ``viewer_every`` steps, and on
``close()``, ``deepvid/viewer.html`` and ``deepvid/<kind>/index.json`` are rewritten;
``close()`` also writes one bundle per subject (:mod:`.bundle`).

Nothing written is lost while MLflow is away (``docs/reliability.md``). Records are kept on disk
as they are written (:mod:`.written`); a record of a new step, ``flush()`` or ``close()`` turns
the step into an upload waiting in a spool directory (:mod:`.spool`), which one background
thread sends (:mod:`.uploader`) and deletes only once MLflow has accepted it. ``flush()`` waits
for the uploads (raising :class:`MLflowUnavailableError` if MLflow does not take them) for at
most ``flush_timeout_s`` without progress; a server that does not answer costs a probe of two
seconds, not MLflow's minutes of retries. Failed uploads are retried at every flush and in the
background, so they resume by themselves when the server is back.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import weakref
from typing import Any

import numpy as np

from deepvid_plugin.core import kinds, writers
from deepvid_plugin.core.sink import scalar_metrics
from deepvid_plugin.mlflow import finals, layout, reach, selection
from deepvid_plugin.mlflow.runlink import RunLink
from deepvid_plugin.mlflow.spool import Item, Spool
from deepvid_plugin.mlflow.steps import Written, image_spec, step_upload
from deepvid_plugin.mlflow.uploader import MLflowUnavailableError, Uploader
from deepvid_plugin.mlflow.written import WrittenStore

#: bytes of waiting uploads the spool may hold on disk before it drops the oldest.
DEFAULT_MAX_SPOOL_BYTES = 2 << 30


def deletion_auc_metric(key: str) -> str:
    """MLflow metric of an instance's deletion AUC (lower: its map finds what the model uses)."""
    return f"{layout.ROOT}/deletion_auc/{key}"


def insertion_auc_metric(key: str) -> str:
    """MLflow metric of an instance's insertion AUC (higher is better)."""
    return f"{layout.ROOT}/insertion_auc/{key}"


def _non_negative(name: str, value: Any, what: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name}: expected a number >= 0 ({what}), got {value!r}")
    return value


class MLflowSink:
    """Persist records of any registered kind in an MLflow run (implements ``Sink``).

    Args:
        run_id: the run to write to. ``None``: the run of ``logger``, or else the fluent active
            run at the first write.
        client: an ``MlflowClient`` for ``run_id`` (default: one for ``tracking_uri``).
        logger: a Lightning ``MLFlowLogger``; its ``experiment`` (a client) and ``run_id`` are
            used. On non-zero ranks it has no run, and this sink then writes nothing.
        tracking_uri: used only to build the default client.
        viewer_every: rewrite ``deepvid/viewer.html`` every this many steps
            (``0``: only on ``close()``).
        log_images: ``log_image`` each subject's step card (MLflow's native step slider): at
            its first step, where its prediction changes and at its last (``True``, the
            default, or ``"changes"``), at every step (``"all"``), or never (``False``).
        subject_metrics: also log each subject's numbers as metrics
            (``deepvid/fidelity/<key>``, ...); by default only run-level summaries are logged
            (:mod:`.selection`), which keeps a run's page and charts readable.
        title: title of the viewer page (default: the run name).
        viewer_record_budget: bytes of full records (the detail panel) the viewer may carry;
            the newest steps of every instance that fit are kept (see :mod:`.pages`).
        spool_dir: where records and waiting uploads are kept on disk (default: a new temporary
            directory, deleted by ``close()`` once everything is uploaded).
        max_spool_bytes: disk the waiting uploads may use; past it the oldest waiting step is
            dropped with a warning (its records still reach the run in the final bundles).
        flush_timeout_s: how long ``flush()`` waits for uploads that make no progress.
        close_timeout_s: the same for ``close()``.
    """

    def __init__(self, run_id: str | None = None, *, client: Any = None, logger: Any = None,
                 tracking_uri: str | None = None, viewer_every: int = 10,
                 log_images: bool | str = True, subject_metrics: bool = False,
                 title: str | None = None,
                 viewer_record_budget: int = 3_000_000, spool_dir: str | None = None,
                 max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES,
                 flush_timeout_s: float = 10.0, close_timeout_s: float = 60.0):
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
        if isinstance(viewer_record_budget, bool) or not isinstance(viewer_record_budget, int) \
                or viewer_record_budget < 0:
            raise ValueError(f"viewer_record_budget: expected an int >= 0 (bytes), got "
                             f"{viewer_record_budget!r}")
        if spool_dir is not None and not isinstance(spool_dir, (str, os.PathLike)):
            raise TypeError(f"spool_dir: expected a directory path or None, got "
                            f"{type(spool_dir).__name__}")
        self._run_id = run_id
        self._client = client
        self._logger = logger
        self._tracking_uri = tracking_uri
        self.viewer_every = viewer_every
        if log_images not in (True, False, *selection.IMAGE_MODES):
            raise ValueError(f"log_images: expected True, False or one of "
                             f"{selection.IMAGE_MODES}, got {log_images!r}")
        self.log_images = log_images
        self._images = None if log_images is False else selection.ImagePlan(
            "changes" if log_images is True else log_images)
        self.subject_metrics = bool(subject_metrics)
        self.viewer_record_budget = viewer_record_budget
        self.max_spool_bytes = int(_non_negative("max_spool_bytes", max_spool_bytes, "bytes"))
        self.flush_timeout_s = float(_non_negative("flush_timeout_s", flush_timeout_s, "s"))
        self.close_timeout_s = float(_non_negative("close_timeout_s", close_timeout_s, "s"))
        self._spool_dir = None if spool_dir is None else os.fspath(spool_dir)
        self._title = title
        self._resolved = False
        self._disabled = False
        self._closed = False
        self._keys: dict[tuple[str, str], str] = {}  # (kind, subject) -> layout key
        self._owners: dict[tuple[str, str], str] = {}  # (kind, key) -> subject (collisions)
        self._previous: dict[tuple[str, str], dict] = {}  # (kind, subject) -> last summary
        self._imaged: set[tuple[str, str]] = set()  # (kind, subject) whose image was handed over
        self._buffer: list[Written] = []  # the step being written
        self._buffer_step: int | None = None
        self._steps_sealed = 0
        self._last_seq: int | None = None  # the newest upload handed to the uploader
        self._writer = writers.WriterId.new()
        self._link: RunLink | None = None
        self._store: WrittenStore | None = None
        self._spool: Spool | None = None
        self._uploader: Uploader | None = None

    # ---- run resolution ----------------------------------------------------------------------
    @property
    def run_id(self) -> str | None:
        self._resolve()
        return self._run_id

    @property
    def spool_dir(self) -> str | None:
        """Where this sink keeps its records and waiting uploads (``None`` before the first
        write)."""
        return None if self._spool is None else self._spool.root

    def _resolve(self) -> None:
        """Find the run (no request to the tracking server, so a dead one costs nothing here);
        when the server answers, check the run and claim it at once (:meth:`_contact`)."""
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
            root = self._spool_dir or tempfile.mkdtemp(prefix="deepvid-mlflow-")
            if self._spool_dir is not None:
                root = os.path.join(root, f"{self._run_id}-{self._writer.id}")
            self._spool = Spool(root, self.max_spool_bytes)
            self._store = WrittenStore(self._run_id, self._run_id, os.path.join(root, "written"))
            self._link = RunLink(self._client, self._run_id, self._writer, self._store)
            # The upload thread holds the link, not the sink: a sink dropped without close()
            # lets go of its run when collected, and what it owed is still sent.
            self._uploader = Uploader(self._spool, self._client, self._run_id,
                                      contact=self._link.contact, draw=self._link.draw,
                                      tags=self._link.tags)
            writers.opened(self._writer)
            self._finalizer = weakref.finalize(self, _let_go, self._uploader, self._writer)
        self._resolved = True
        if not self._disabled and self._uploader.answers():
            self._link.contact()  # an unknown run or another live writer is named right away

    def claim(self) -> None:
        """Check the run and claim it for this writer now, when the server answers (callbacks
        call it in their constructor, so a wrong run id or a second writer is refused before
        training starts); otherwise the first upload does it."""
        self._resolve()

    # ---- Sink protocol -----------------------------------------------------------------------
    def write(self, record: Any, step: int) -> None:
        """Keep ``record`` (a :class:`~deepvid_plugin.core.record.Record` of a registered kind,
        or its typed view) at ``step`` (``step`` wins over ``record.step``, as a
        ``SummaryWriter``'s step does); a record of a new step hands the previous one to the
        uploader. Touches only the local disk."""
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
            self._seal()
        subject = (kind.name, env.subject)
        key = self._key(*subject)
        if any((k.name, e.subject) == subject for k, e, _, _ in self._buffer):
            raise ValueError(f"record: {kind.name} subject {env.subject!r} was already written "
                             f"at step {step}")
        summary = kinds.summarize(env, self._previous.get(subject))
        once = {n: env.arrays[n] for n in kind.per_subject
                if n in env.arrays and env.arrays[n].size > 0}
        first = self._store.add(env, key, summary, env.without(kind.per_subject).encode(), once)
        self._previous[subject] = summary
        self._buffer.append((kind, env, summary, first))
        self._buffer_step = step

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        """The run's own scalar metrics (test accuracy, loss), sent through the same spool as
        the records (kept while MLflow is away); the viewer keeps them too, to show beside the
        explanations."""
        values = scalar_metrics(values)
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step: expected an int, got {type(step).__name__} {step!r}")
        self._resolve()
        if self._disabled or not values:
            return
        self._store.add_metrics(values, int(step))
        now = int(time.time() * 1000)
        builder = self._spool.begin()
        try:
            item = self._spool.commit(builder, {
                "label": f"metrics at step {int(step)}", "artifact_path": layout.ROOT,
                "metrics": [[k, v, now, int(step)] for k, v in values.items()]})
        except BaseException:
            self._spool.discard(builder)
            raise
        self._handed(item)

    def flush(self) -> None:
        """Hand the step being written to the uploader and wait until MLflow has everything
        written so far.

        Raises:
            MLflowUnavailableError: MLflow did not take it (it waits on disk and is retried).
        """
        if self._resolved and not self._disabled and not self._closed:
            self._seal()
            self._wait(self.flush_timeout_s)

    def close(self) -> None:
        """Flush, then write the final ``viewer.html``, ``index.json`` and bundles and wait for
        every upload (``close_timeout_s`` without progress at most). Idempotent.

        Raises:
            MLflowUnavailableError: uploads are still owed; they stay in :attr:`spool_dir` and
                are retried in the background while this process runs.
        """
        if self._closed:
            return
        self._closed = True
        if not self._resolved or self._disabled:
            return
        try:
            self._seal()
            if self._store.by_kind:
                self._seal_final()
            self._wait(self.close_timeout_s, whole=True)
        finally:
            # Uploads still owed keep going while this process lives; the spool goes when done.
            self._finalizer()

    def save_artifact(self, name: str, write: Any, folder: str) -> None:
        """Upload a file (``write(path)`` makes it) to ``folder`` of the run, through the same
        spool as the records (a fitted VAE saved by an explainer)."""
        self._resolve()
        if self._disabled:
            return
        builder = self._spool.begin()
        try:
            write(os.path.join(builder.artifacts, name))
            item = self._spool.commit(builder, {"label": f"artifact {folder}/{name}",
                                                "artifact_path": folder})
        except BaseException:
            self._spool.discard(builder)
            raise
        self._handed(item)
        self._wait(self.flush_timeout_s)

    def reachable(self) -> bool:
        """Whether the tracking server answers now (a switched-off sink comes back when it
        does; see ``callbacks/safety.py``)."""
        if self._uploader is not None:
            return self._uploader.answers()
        return reach.probe(reach.tracking_uri_of(self._client) or self._tracking_uri) is None

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

    def _handed(self, item: Item) -> None:
        self._last_seq = item.seq
        self._uploader.kick()

    def _wait(self, timeout_s: float, whole: bool = False) -> None:
        if self._last_seq is not None:
            self._uploader.wait(self._last_seq, timeout_s, whole=whole)
        skipped, self._uploader.skipped = self._uploader.skipped, []
        if skipped:
            raise RuntimeError(f"deepvid: step images that could not be drawn were left out "
                               f"of run {self._run_id}: {'; '.join(skipped)}")

    def _seal(self) -> None:
        """Turn the step being written into an upload waiting in the spool (disk only)."""
        buffered, step = self._buffer, self._buffer_step
        self._buffer, self._buffer_step = [], None
        if not buffered:
            return
        builder = self._spool.begin()
        try:
            metrics, images, tags = step_upload(step, buffered, builder, self._store, self._imaged,
                                          self._images, self.subject_metrics)
            self._steps_sealed += 1
            if self.viewer_every and self._steps_sealed % self.viewer_every == 0:
                finals.add_index_and_viewer(builder, self._store, self._title,
                                            self.viewer_record_budget)
            item = self._spool.commit(builder, {
                "label": f"step {step}", "step": step, "artifact_path": layout.ROOT,
                "metrics": metrics, "images": images, "tags": tags})
        except BaseException:
            self._spool.discard(builder)
            raise
        self._handed(item)

    def _seal_final(self) -> None:
        """The last uploads: every subject's bundle, then index.json and the viewer, covering
        everything this sink holds (steps whose own upload was dropped included)."""
        builder = self._spool.begin()
        try:
            finals.add_bundles(builder, self._store)
            item = self._spool.commit(builder, {"label": "bundles", "artifact_path": layout.ROOT})
        except BaseException:
            self._spool.discard(builder)
            raise
        self._handed(item)
        # In their own upload after the bundles: a reader that lists a bundle finds it whole.
        builder = self._spool.begin()
        try:
            finals.add_index_and_viewer(builder, self._store, self._title,
                                        self.viewer_record_budget)
            # each subject's last step card, when its step did not draw one (.selection)
            now = int(time.time() * 1000)
            last = [] if self._images is None else [
                image_spec(self._store, name, subject, step, now)
                for name, subject, step, _ in self._images.at_close()]
            item = self._spool.commit(builder, {"label": "index and viewer", "final": True,
                                                "artifact_path": layout.ROOT, "images": last})
        except BaseException:
            self._spool.discard(builder)
            raise
        self._handed(item)


def _let_go(uploader: Uploader, writer: writers.WriterId) -> None:
    """The sink is closed or gone: its run is free, its owed uploads finish on their own."""
    writers.closed(writer)
    uploader.finish()


__all__ = ["DEFAULT_MAX_SPOOL_BYTES", "MLflowSink", "MLflowUnavailableError",
           "deletion_auc_metric", "insertion_auc_metric"]
