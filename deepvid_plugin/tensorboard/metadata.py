"""Summary metadata of the ``deepvid`` plugin: its name, and a versioned content blob.

Like TensorBoard's own plugins, every time series carries ``plugin_data.content`` describing it.
Ours is compact JSON (no proto to compile), versioned by ``CONTENT_VERSION``. The first
``summary`` event of a subject also carries what the overview needs once per subject (class
names, true label, the instance image), so the overview never has to read a full record.

Tags are ``deepvid/<kind>/<percent-encoded subject>/<role>`` (roles ``record``, ``summary``,
``subject``); version 1 wrote ``deepvid/<id>/record|summary|neighbours``, which
:func:`parse` still reads as kind ``deepvid``.

This module imports only ``tensorboard.compat.proto`` and the standard library.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import urllib.parse
from typing import Any

from tensorboard.compat.proto import summary_pb2

logger = logging.getLogger(__name__)

PLUGIN_NAME = "deepvid"
#: bumped when the content layout changes; readers accept newer versions and use what they know.
#: 2: tags by explanation kind (``deepvid/<kind>/<subject>/<role>``), ``role``/``kind``/``subject``
#: in the content.
CONTENT_VERSION = 2
PROTO_VERSION = CONTENT_VERSION  # the name TensorBoard's own plugins use for the same thing

# The role of a time series (its tag's last part).
ROLE_RECORD = "record"  # BLOB_SEQUENCE: Record.encode() without the once-per-subject arrays
ROLE_SUMMARY = "summary"  # TENSOR: string scalar, JSON step summary of the record's kind
ROLE_SUBJECT = "subject"  # BLOB_SEQUENCE: record.encode_arrays() of the per-subject arrays, once
ROLES = (ROLE_RECORD, ROLE_SUMMARY, ROLE_SUBJECT)
# Version 1 wrote ``deepvid/<id>/<role>`` with these roles; still read. It held the records of one
# kind only (DeepVID's, before kinds existed), so its tags read as that kind.
LEGACY_KIND = "deepvid"
KIND_NEIGHBOURS = "neighbours"  # BLOB_SEQUENCE: .npy float16 neighbour images, once per instance
LEGACY_ROLES = (ROLE_RECORD, ROLE_SUMMARY, KIND_NEIGHBOURS)
_DATA_CLASS = {
    ROLE_RECORD: summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    ROLE_SUMMARY: summary_pb2.DATA_CLASS_TENSOR,
    ROLE_SUBJECT: summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    KIND_NEIGHBOURS: summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
}
_KIND_NAME = re.compile(r"[a-z0-9_]+")


@dataclasses.dataclass(frozen=True)
class TagInfo:
    """What one of our tags names: the explanation ``kind``, the ``subject`` and the ``role``;
    ``legacy`` for version-1 tags (``deepvid/<id>/<role>``, kind :data:`LEGACY_KIND`)."""

    kind: str
    subject: str
    role: str
    legacy: bool = False


def tag(subject: str, role: str, kind: str) -> str:
    """``deepvid/<kind>/<percent-encoded subject>/<role>``: any subject makes a safe, unique tag.

    ``role`` is one of :data:`ROLES`.
    """
    if role not in ROLES:
        raise ValueError(f"role: expected one of {ROLES}, got {role!r}")
    if not isinstance(kind, str) or not _KIND_NAME.fullmatch(kind):
        raise ValueError(f"kind: expected a [a-z0-9_] kind name, got {kind!r}")
    return f"{PLUGIN_NAME}/{kind}/{urllib.parse.quote(subject, safe='')}/{role}"


def legacy_tag(instance_id: str, role: str) -> str:
    """Version 1's ``deepvid/<percent-encoded id>/<role>`` (read, never written any more)."""
    if role not in LEGACY_ROLES:
        raise ValueError(f"role: expected one of {LEGACY_ROLES}, got {role!r}")
    return f"{PLUGIN_NAME}/{urllib.parse.quote(instance_id, safe='')}/{role}"


def parse(name: str) -> TagInfo | None:
    """What one of our tags (either layout) names; ``None`` for anything else."""
    parts = name.split("/")
    if len(parts) == 4 and parts[0] == PLUGIN_NAME and _KIND_NAME.fullmatch(parts[1]) \
            and parts[2] and parts[3] in ROLES:
        return TagInfo(parts[1], urllib.parse.unquote(parts[2]), parts[3])
    if len(parts) == 3 and parts[0] == PLUGIN_NAME and parts[1] and parts[2] in LEGACY_ROLES:
        return TagInfo(LEGACY_KIND, urllib.parse.unquote(parts[1]), parts[2], legacy=True)
    return None


def create_summary_metadata(role: str, subject: str, kind: str,
                            **extra: Any) -> summary_pb2.SummaryMetadata:
    """Metadata for one of our time series; ``extra`` (JSON-able) goes into the content."""
    if role not in _DATA_CLASS:
        raise ValueError(f"role: expected one of {ROLES}, got {role!r}")
    content = {"version": CONTENT_VERSION, "role": role, "kind": kind, "subject": subject,
               **extra}
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME,
            content=json.dumps(content, sort_keys=True, separators=(",", ":"),
                               allow_nan=False).encode("utf-8")),
        data_class=_DATA_CLASS[role],
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
