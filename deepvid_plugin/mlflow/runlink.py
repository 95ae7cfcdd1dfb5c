"""The MLflow sink's hold on its run: checking the run, claiming it for one writer, the tags
each upload carries, and the step images drawn on the upload thread.

Kept apart from :class:`~deepvid_plugin.mlflow.sink.MLflowSink` so the upload thread holds only
this small object, never the sink: a sink dropped without ``close()`` (a notebook cell run
again) is garbage collected, lets go of its run, and what it still owed is sent.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Any

import numpy as np

from deepvid_plugin.core import kinds, writers
from deepvid_plugin.core.record import Record, decode_arrays
from deepvid_plugin.mlflow import hooks, layout, links
from deepvid_plugin.mlflow.spool import Item
from deepvid_plugin.mlflow.written import WrittenStore


class RunLink:
    """Run ``run_id`` through ``client``, held by ``writer``; ``store`` is the sink's copy."""

    def __init__(self, client: Any, run_id: str, writer: writers.WriterId, store: WrittenStore):
        self.client, self.run_id, self.writer, self.store = client, run_id, writer, store
        self._contacted = False
        self._lock = threading.Lock()

    def contact(self) -> None:
        """Check the run exists and no other live writer holds it, then announce this one."""
        from mlflow.entities import RunTag

        with self._lock:
            if self._contacted:
                return
            run = self.client.get_run(self.run_id)  # fails, naming the run, if unknown
            self.store.name = run.info.run_name or self.run_id
            self._check_writer(run.data.tags)
            self.client.log_batch(self.run_id, tags=[
                RunTag(layout.LAYOUT_TAG, str(layout.LAYOUT_VERSION)),
                RunTag(layout.WRITER_TAG, self.writer.to_json()),
                RunTag(layout.SEEN_TAG, str(time.time()))])
            # Two writers that started at once both found the run free: the tag's last value wins.
            self._check_writer(self.client.get_run(self.run_id).data.tags)
            links.link_run(self.client, run)  # MLflow's run page -> the DeepVID app
            self._contacted = True

    def _check_writer(self, tags: dict[str, str]) -> None:
        other = writers.WriterId.from_json(tags.get(layout.WRITER_TAG, ""))
        if other is None or other.id == self.writer.id:
            return
        try:
            seen = float(tags.get(layout.SEEN_TAG, other.started))
        except ValueError:
            seen = other.started
        if other.live(last_seen=seen):
            raise writers.WriterConflictError(writers.conflict_message(
                "mlflow", f"MLflow run {self.run_id}", other, last_seen=seen,
                remedy="Close the other writer (callback.close()), or log to a new run; if "
                       f"that process is gone, delete the run's tag {layout.WRITER_TAG!r}."))

    def tags(self, item: Item) -> list:
        """What an upload's last request carries: a new revision (readers that cached the run
        re-read it), when the writer was last seen, and, with the final upload, that it closed."""
        from mlflow.entities import RunTag

        tags = [RunTag(layout.REVISION_TAG, f"{self.writer.id}:{item.seq}"),
                RunTag(layout.SEEN_TAG, str(time.time()))]
        # tags the item's records set (the alert kind's latest sentence, deepvid.alerts)
        tags += [RunTag(k, v) for k, v in item.payload.get("tags", {}).items()]
        if item.payload.get("final"):
            closed = dataclasses.replace(self.writer, closed=True)
            tags.append(RunTag(layout.WRITER_TAG, closed.to_json()))
        return tags

    def draw(self, spec: dict, item: Item) -> np.ndarray:
        """A step image, drawn on the upload thread from the files of the upload, or from the
        sink's copy of the run (a subject's last card, drawn at close, whose record went up with
        an earlier step)."""
        path = os.path.join(item.artifacts, spec["record"])
        if not os.path.exists(path):
            path = self.store.path(spec["record"])
        with open(path, "rb") as f:
            env = Record.decode(f.read())
        if spec.get("subject"):
            with open(self.store.path(spec["subject"]), "rb") as f:
                env = env.with_arrays(decode_arrays(f.read()))
        return hooks.of(kinds.get(spec["kind"])).step_image(env)


__all__ = ["RunLink"]
