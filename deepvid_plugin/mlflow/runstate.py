"""What has been read of one kind's data in one MLflow run: the step summaries merged from
``index.json`` and the step files, with everything unreadable skipped and named in ``warnings``.

:class:`~deepvid_plugin.mlflow.store.MLflowStore` fetches the files; this module interprets them.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import warnings
from typing import Any

import numpy as np

from deepvid_plugin.core import kinds
from deepvid_plugin.mlflow import layout

logger = logging.getLogger("deepvid_plugin.mlflow.store")


def _decode_image(obj: dict) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(obj["data"]), dtype=np.uint8)
    return q.reshape(obj["shape"]).astype(np.float32) / 255.0


class RunState:
    """What has been read of one kind's data in one run: merged step summaries plus the files
    already seen."""

    def __init__(self, run: str, kind: str) -> None:
        self.run, self.kind = run, kind
        self.paths = layout.paths(kind)  # layout 1 (legacy) decided on the first listing
        self.class_names: list[str] = []
        self.instances: dict[str, dict[str, Any]] = {}  # id -> {"key", "label", "image", steps}
        self.read_steps: set[int] = set()
        self.index_read = False
        self.finished = False
        self.complete = False  # finished and fully read: nothing more to list
        self.warnings: list[str] = []
        self.name = ""
        self.artifact_uri = ""
        self.refreshed = float("-inf")
        self.skipped: set[tuple[str, int]] = set()  # (instance, step) of newer-schema summaries
        self.unknown_warned = False
        self.located = False  # which layout holds this kind's data is known
        self.crcs: dict[tuple[str, int], int] = {}  # (key, step) -> CRC-32 the writer named
        self.bundles: dict[str, str] = {}  # key -> artifact path of its bundle (finished runs)
        self.revision: str | None = None  # the run's revision tag when this was read

    def merge(self, iid: str, key: str, label: Any, image: Any, summary: dict | None) -> None:
        inst = self.instances.get(iid)
        if inst is None:
            try:
                label = kinds.read_label(label, self.class_names)
            except kinds.SummaryError as e:
                self.warn(f"run {self.run!r}: the true label of {iid!r} is shown as unknown: "
                          f"its stored {e}")
                label = None
            inst = self.instances[iid] = {"key": key, "label": label, "image": None,
                                          "steps": {}}
        if image is not None and inst["image"] is None:
            inst["image"] = _decode_image(image)
        if summary is not None:
            inst["steps"][int(summary["step"])] = summary

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, stacklevel=4)
        logger.warning(message)

    def _parse(self, path: str, text: str | None) -> dict | None:
        try:
            if text is None:
                raise ValueError("download failed")
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            version = int(obj.get("layout", 0))
        except (ValueError, TypeError) as e:
            self.warn(f"run {self.run!r}: skipped corrupt artifact {path}: {e}")
            return None
        if version > layout.LAYOUT_VERSION:
            self.warn(f"run {self.run!r}: skipped {path}: written in DeepVID MLflow layout "
                              f"{version}, this deepvid-plugin reads up to "
                              f"{layout.LAYOUT_VERSION}; upgrade deepvid-plugin to read it")
            return None
        return obj

    def _summary_ok(self, iid: str, summary: Any) -> bool:
        step = summary.get("step") if isinstance(summary, dict) else None
        if not isinstance(step, int) or isinstance(step, bool):
            self.warn(f"run {self.run!r}: skipped a malformed summary of instance {iid!r} "
                      f"(its step is {step!r:.40})")
            return False
        problem = kinds.summary_problem(kinds.get(self.kind), summary)
        if problem is not None:
            # Left out of the overview, but record() still reads it and raises NewerSchemaError
            # (the API then answers 404 naming both versions) instead of "unknown step".
            self.skipped.add((iid, int(summary["step"])))
            self.warn(f"run {self.run!r}: skipped instance {iid!r} at step {summary['step']}: "
                              f"{problem}")
            return False
        try:
            kinds.read_summary(kinds.get(self.kind), summary, len(self.class_names) or None)
        except kinds.SummaryError as e:
            self.warn(f"run {self.run!r}: skipped instance {iid!r} at step {step}: its "
                      f"summary's {e}")
            return False
        return True

    def read_index(self, text: str | None) -> None:
        """Merge the run's ``index.json`` (``text``; ``None`` when its download failed)."""
        obj = self._parse(self.paths.index, text)
        if obj is None:
            return
        try:
            self.class_names = self.class_names or [str(c) for c in obj["class_names"]]
            for inst in obj["instances"]:
                iid = str(inst["id"])
                self.merge(iid, str(inst["key"]), inst.get("label"), inst.get("image"), None)
                crcs = inst.get("record_crc32") or []
                for summary, crc in itertools.zip_longest(inst.get("summaries", []), crcs):
                    if summary is None:
                        break
                    if isinstance(crc, int) and isinstance(summary, dict) and "step" in summary:
                        self.crcs[(str(inst["key"]), int(summary["step"]))] = crc
                    if self._summary_ok(iid, summary):
                        self.merge(iid, str(inst["key"]), inst.get("label"), None, summary)
            self.read_steps.update(int(s) for s in obj.get("steps", []))
        except (KeyError, TypeError, ValueError) as e:
            self.warn(f"run {self.run!r}: skipped corrupt artifact {self.paths.index}: {e!r}")

    def read_step_file(self, step: int, text: str | None) -> None:
        """Merge one step file (``text``; ``None`` when its download failed)."""
        path = f"{self.paths.steps}/{layout.step_file(step)}"
        obj = self._parse(path, text)
        if obj is None:
            return
        try:
            self.class_names = self.class_names or [str(c) for c in obj["class_names"]]
            for entry in obj["instances"]:
                iid = str(entry["id"])
                summary = entry["summary"]
                crc = entry.get("record_crc32")
                if isinstance(crc, int) and isinstance(summary, dict) and "step" in summary:
                    self.crcs[(str(entry["key"]), int(summary["step"]))] = crc
                ok = self._summary_ok(iid, summary)
                self.merge(iid, str(entry["key"]), entry.get("label"), entry.get("image"),
                            summary if ok else None)
        except (KeyError, TypeError, ValueError) as e:
            self.warn(f"run {self.run!r}: skipped corrupt artifact {path}: {e!r}")


__all__ = ["RunState"]
