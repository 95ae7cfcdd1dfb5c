"""The byte framing shared by DeepVID's binary formats (records, MLflow bundles):

    4-byte magic | uint32 LE header length | UTF-8 JSON header (sorted keys) | body

One implementation, so every format rejects garbage, truncation and corrupt headers the same way.
"""

from __future__ import annotations

import json
import struct
from typing import Any

_PREFIX = struct.Struct("<4sI")


def pack(magic: bytes, header: dict[str, Any], body: bytes) -> bytes:
    raw = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return _PREFIX.pack(magic, len(raw)) + raw + body


def unpack(data: Any, magic: bytes, what: str, error: type[Exception]) -> tuple[dict, memoryview]:
    """``(header, body)`` of framed ``data``; raises ``error`` naming ``what`` when unreadable."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREFIX.size:
        raise error(f"{what} is truncated: {len(data)} bytes")
    found, hlen = _PREFIX.unpack_from(data)
    if found != magic:
        raise error(f"not a DeepVID {what} (magic {found!r}, expected {magic!r})")
    try:
        header = json.loads(data[_PREFIX.size:_PREFIX.size + hlen].decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError(f"expected a JSON object, got {type(header).__name__}")
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"corrupt {what} header: {e}") from e
    return header, memoryview(data)[_PREFIX.size + hlen:]
