"""The MLflow sink's uploader: one background thread sends the spool's items, oldest first.

Training never waits on the network for longer than the sink's bounded waits: the thread asks
the server first (:func:`.reach.probe`, a couple of seconds at most) and calls MLflow's client
only when it answers, so a dead server costs a probe per attempt, not MLflow's minutes of
retries. An item that fails stays in the spool and is tried again: at the next flush (which
wakes the thread at once) or on the thread's own back-off (1, 2, 4, ... up to 30 s), so uploads
resume by themselves when the server comes back, even while the sink is switched off.

Errors are judged by attempt: a flush raises only when an attempt made *after* it was called
failed (or nothing moved for ``idle_timeout_s``), so an old failure that a later retry mended is
never reported again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from deepvid_plugin.core.record import NewerSchemaError
from deepvid_plugin.mlflow import reach
from deepvid_plugin.mlflow.spool import Item, Spool

logger = logging.getLogger(__name__)

#: MLflow's limit on metrics per log_batch request.
MAX_BATCH_METRICS = 1000
_MAX_BACKOFF_S = 30.0
#: MLflow error codes that no retry can mend (the run is unknown or was deleted).
_PERMANENT = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND",
              "INVALID_STATE", "PERMISSION_DENIED")


def metric_chunks(metrics: list) -> list[list]:
    """The ``log_batch`` requests of an item's metrics (at least one: it carries the tags)."""
    return [metrics[i:i + MAX_BATCH_METRICS]
            for i in range(0, len(metrics), MAX_BATCH_METRICS)] or [[]]


def _readable(item: Item) -> bool:
    """Whether readers have what matters of ``item``: its artifacts and metrics (its step
    images may still be on their way)."""
    sent = bool(item.progress.get("artifacts")) or not os.listdir(item.artifacts)
    requests = len(metric_chunks(item.payload.get("metrics", [])))
    return sent and int(item.progress.get("metrics", 0)) >= requests


class MLflowUnavailableError(RuntimeError):
    """Uploads to MLflow failed or stalled; what was written waits on disk and is retried."""


def permanent(error: BaseException) -> bool:
    """Whether retrying cannot help (an unknown or deleted run, a writer conflict)."""
    from deepvid_plugin.core.writers import WriterConflictError

    return isinstance(error, WriterConflictError) or getattr(error, "error_code", "") in _PERMANENT


class Uploader:
    """Sends ``spool``'s items to run ``run_id`` through ``client`` on a daemon thread.

    Args:
        contact: called once before the first upload (after the server answered): checks the
            run and announces the writer; an exception is a failed attempt (``permanent`` ones
            stop the uploads).
        draw: ``(image spec, item) -> (H, W, 3) uint8`` picture of one step image.
        tags: ``item -> [RunTag]`` sent with the item's metrics (one request).
    """

    def __init__(self, spool: Spool, client: Any, run_id: str, *,
                 contact: Callable[[], None], draw: Callable[[dict, Item], Any],
                 tags: Callable[[Item], list]):
        self.spool, self.client, self.run_id = spool, client, run_id
        self._contact, self._draw, self._tags = contact, draw, tags
        self.uri = reach.tracking_uri_of(client)
        self._cond = threading.Condition()
        self._kicked = False
        self._stopping = False
        self._finishing = False
        self.attempts = 0  # upload attempts that failed, ever
        self.error: BaseException | None = None  # the last failed attempt's error
        self.fatal: BaseException | None = None  # a permanent error: nothing more is sent
        self.progress_at = time.monotonic()  # when a part was last accepted
        self.skipped: list[str] = []  # step images that could not be drawn (reported once)
        self._backoff = 0.0
        self._thread = threading.Thread(target=self._run, name="deepvid-mlflow-upload",
                                        daemon=True)
        self._thread.start()

    # ---- the caller's side ---------------------------------------------------------------
    def kick(self) -> None:
        """Try the waiting items now (skipping any back-off)."""
        with self._cond:
            self._kicked = True
            self._cond.notify_all()

    def wait(self, until: int, idle_timeout_s: float, whole: bool = True) -> None:
        """Block until every item up to seq ``until`` is sent (``whole=False``: until readers
        have them, their step images may still be on their way).

        Raises:
            MLflowUnavailableError: an attempt made during this wait failed, or nothing was
                accepted for ``idle_timeout_s`` (the items stay in the spool).
        """
        start = time.monotonic()
        with self._cond:
            failed_before = self.attempts
            self._kicked = True
            self._cond.notify_all()
            while True:
                if self.fatal is not None:
                    raise self.fatal
                if not any(i.seq <= until and (whole or not _readable(i))
                           for i in self.spool.waiting()):
                    return
                if self.attempts > failed_before:
                    raise self._unavailable(f"{type(self.error).__name__}: {self.error}")
                idle = time.monotonic() - max(start, self.progress_at)
                if idle >= idle_timeout_s:
                    raise self._unavailable(f"nothing was accepted for {idle_timeout_s:g} s")
                self._cond.wait(min(0.5, idle_timeout_s - idle))

    def finish(self) -> None:
        """The sink is closed: send what is still owed, then delete the spool and stop (the
        thread is a daemon, so what is still owed when the process exits stays on disk)."""
        with self._cond:
            self._finishing = True
            self._cond.notify_all()
            if not self.spool.waiting() or self.fatal is not None:
                self._stopping = True
        if self._stopping:
            self._thread.join(timeout=5)
            if not self.spool.waiting():
                self.spool.remove_all()

    def answers(self) -> bool:
        """Whether the server answers a probe now (what a switched-off sink is revived by)."""
        return reach.probe(self.uri) is None

    def _unavailable(self, why: str) -> MLflowUnavailableError:
        waiting = self.spool.waiting()
        held = ", ".join(i.label for i in waiting[:4]) + (", ..." if len(waiting) > 4 else "")
        return MLflowUnavailableError(
            f"MLflow at {self.uri or 'the tracking URI'} did not take the upload of run "
            f"{self.run_id} ({why}); {len(waiting)} upload(s) wait on disk in "
            f"{self.spool.root} ({held}) and are retried at the next flush and in the "
            "background, so nothing written is lost")

    # ---- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        next_try = 0.0
        contacted = False
        while True:
            with self._cond:
                while not self._stopping and (
                        not self.spool.waiting() or self.fatal is not None
                        or (not self._kicked and time.monotonic() < next_try)):
                    timeout = None if not self.spool.waiting() or self.fatal is not None \
                        else max(0.05, next_try - time.monotonic())
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                self._kicked = False
            item = self.spool.take()
            if item is None:
                continue
            try:
                why = reach.probe(self.uri)
                if why is not None:
                    raise MLflowUnavailableError(f"the server does not answer ({why})")
                if not contacted:
                    self._contact()
                    contacted = True
                self._send(item)
            except Exception as e:  # noqa: BLE001 - kept for the caller, who reports it
                self.spool.release()
                with self._cond:
                    self.attempts += 1
                    self.error = e
                    if permanent(e):
                        self.fatal = e
                    self._backoff = min(_MAX_BACKOFF_S, max(1.0, self._backoff * 2))
                    next_try = time.monotonic() + self._backoff
                    self._cond.notify_all()
                logger.debug("deepvid: MLflow upload of %s failed: %r", item.label, e)
                continue
            self.spool.done(item)
            with self._cond:
                self._backoff, next_try = 0.0, 0.0
                self.progress_at = time.monotonic()
                self._cond.notify_all()
                if self._finishing and not self.spool.waiting():
                    self.spool.remove_all()
                    return

    def _accepted(self, item: Item, **done: Any) -> None:
        item.mark(**done)
        with self._cond:
            self.progress_at = time.monotonic()

    def _send(self, item: Item) -> None:
        from mlflow.entities import Metric

        payload, progress = item.payload, item.progress
        if not progress.get("artifacts") and os.listdir(item.artifacts):
            self.client.log_artifacts(self.run_id, item.artifacts,
                                      artifact_path=payload["artifact_path"])
            self._accepted(item, artifacts=True)
        metrics = [Metric(*m) for m in payload.get("metrics", [])]
        chunks = metric_chunks(metrics)
        for n in range(int(progress.get("metrics", 0)), len(chunks)):
            # The item's tags ride on its last request: they say the item's artifacts are there.
            tags = self._tags(item) if n == len(chunks) - 1 else []
            if chunks[n] or tags:
                self.client.log_batch(self.run_id, metrics=chunks[n], tags=tags)
            self._accepted(item, metrics=n + 1)
        images = payload.get("images", [])
        for n in range(int(progress.get("images", 0)), len(images)):
            spec = images[n]
            try:
                picture = self._draw(spec, item)
            except NewerSchemaError:  # a record of a schema this version cannot interpret
                logger.debug("deepvid: no step image for %s at step %s: newer schema",
                             spec["key"], spec["step"])
                picture = None
            except Exception as e:  # noqa: BLE001 - a picture we cannot draw must not block
                self.skipped.append(f"{spec['key']} at step {spec['step']}: "
                                    f"{type(e).__name__}: {e}")
                logger.warning("deepvid: step image %s at step %s could not be drawn: %r",
                               spec["key"], spec["step"], e)
                picture = None
            if picture is not None:
                self.client.log_image(self.run_id, picture, key=spec["key"], step=spec["step"],
                                      timestamp=spec["timestamp"])
            self._accepted(item, images=n + 1)


__all__ = ["MAX_BATCH_METRICS", "MLflowUnavailableError", "Uploader", "metric_chunks",
           "permanent"]
