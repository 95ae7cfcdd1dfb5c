"""Summary metadata of the ``deepvid`` plugin: its name, and a versioned content blob.

Like TensorBoard's own plugins, every time series carries ``plugin_data.content`` describing it.
Ours is compact JSON (no proto to compile), versioned by ``CONTENT_VERSION``. The first
``summary`` event of an instance also carries what the overview needs once per instance (class
names, true label, the instance image), so the overview never has to read a full record.

This module imports only ``tensorboard.compat.proto`` and the standard library.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from typing import Any

from tensorboard.compat.proto import summary_pb2

logger = logging.getLogger(__name__)

PLUGIN_NAME = "deepvid"
#: bumped when the content layout changes; readers accept newer versions and use what they know.
CONTENT_VERSION = 1
PROTO_VERSION = CONTENT_VERSION  # the name TensorBoard's own plugins use for the same thing

KIND_RECORD = "record"  # BLOB_SEQUENCE: ExplanationRecord.encode() without neighbour images
KIND_SUMMARY = "summary"  # TENSOR: string scalar, JSON step_summary
KIND_NEIGHBOURS = "neighbours"  # BLOB_SEQUENCE: .npy float16 neighbour images, once per instance
KINDS = (KIND_RECORD, KIND_SUMMARY, KIND_NEIGHBOURS)
_DATA_CLASS = {
    KIND_RECORD: summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    KIND_SUMMARY: summary_pb2.DATA_CLASS_TENSOR,
    KIND_NEIGHBOURS: summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
}


def tag(instance_id: str, kind: str) -> str:
    """``deepvid/<percent-encoded id>/<kind>``: any instance id makes a safe, unique tag."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    return f"{PLUGIN_NAME}/{urllib.parse.quote(instance_id, safe='')}/{kind}"


def parse_tag(name: str) -> tuple[str, str] | None:
    """``(instance_id, kind)`` for one of our tags, ``None`` for anything else."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != PLUGIN_NAME or parts[2] not in KINDS or not parts[1]:
        return None
    return urllib.parse.unquote(parts[1]), parts[2]


def create_summary_metadata(kind: str, instance_id: str,
                            **extra: Any) -> summary_pb2.SummaryMetadata:
    """Metadata for one of our time series; ``extra`` (JSON-able) goes into the content."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    content = {"version": CONTENT_VERSION, "kind": kind, "instance": instance_id, **extra}
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME,
            content=json.dumps(content, sort_keys=True, separators=(",", ":"),
                               allow_nan=False).encode("utf-8")),
        data_class=_DATA_CLASS[kind],
    )


def parse_plugin_metadata(content: bytes) -> dict[str, Any]:
    """The content dict of one of our time series.

    A newer ``version`` is accepted (its known keys are used, unknown ones ignored, and a
    message is logged): a newer writer must not make the tab unusable.

    Raises:
        ValueError: ``content`` is not our JSON content at all.
    """
    if not isinstance(content, (bytes, bytearray)):
        raise TypeError(f"content: expected bytes, got {type(content).__name__}")
    try:
        parsed = json.loads(bytes(content).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"content: not deepvid plugin content ({e})") from e
    if not isinstance(parsed, dict) or not isinstance(parsed.get("version"), int):
        raise ValueError(f"content: expected a JSON object with an int 'version', got {parsed!r}")
    if parsed["version"] > CONTENT_VERSION:
        logger.info("deepvid plugin content version %d is newer than %d; reading what is known",
                    parsed["version"], CONTENT_VERSION)
    return parsed
