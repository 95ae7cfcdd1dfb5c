"""One file per subject holding all of its records: what readers of a finished run download.

Per-step record files (``deepvid/<kind>/records/<key>/<step>.dvid``) let a live reader follow a
run, but reading a finished run through them costs one HTTP request per subject-step (3,200 for
two runs of 16 instances x 100 steps). On ``close()`` the sink therefore also writes, per kind and
subject, ``deepvid/<kind>/bundles/<key>.dvib``, read in one request::

    b"DVIB" | uint32 LE header length | UTF-8 JSON header | blobs

The header (``{"layout", "kind", "instance", "key", "subject", "records"}``) gives each blob's
byte range inside the blob section and, for records, the step and CRC-32. Record blobs are
exactly ``Record.encode()`` without the kind's per-subject arrays; the ``subject`` blob is those
arrays (``record.encode_arrays()``, the bytes of ``subjects/<key>.dvia``). Layout-1 bundles
(DeepVID only) had a ``neighbours`` blob instead, the ``.npy`` bytes of the neighbour images; they
decode with :attr:`Bundle.neighbours` set. No pickle anywhere. The per-step files stay the source of
truth: a reader uses a bundle only for finished runs and only where its CRC matches the one the
step file names, so a bundle that a later (resumed) writer made stale is never served.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterable

from deepvid_plugin.core import framing
from deepvid_plugin.mlflow import layout

_MAGIC = b"DVIB"


class BundleDecodeError(ValueError):
    """The bytes are not a readable bundle (wrong magic, truncated, corrupt or newer header)."""


@dataclasses.dataclass
class Bundle:
    instance: str
    key: str
    records: dict[int, bytes]  # step -> Record.encode() bytes (CRC checked)
    crcs: dict[int, int]  # step -> CRC-32 of its record blob
    neighbours: bytes | None  # layout 1: .npy bytes of the neighbour images, or None
    problems: list[str]  # blobs that were dropped (bad CRC, out of range), for warnings
    kind: str
    subject: bytes | None = None  # layout 2: encode_arrays() of the per-subject arrays, or None


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_bundle(instance: str, key: str, records: Iterable[tuple[int, bytes]], *,
                  kind: str, subject: bytes | None = None) -> bytes:
    """The bundle of one subject of ``kind``: ``records`` are ``(step, record.encode())``
    pairs, ``subject`` the ``encode_arrays()`` bytes of its per-subject arrays."""
    if not isinstance(instance, str) or not instance:
        raise TypeError(f"instance: expected a non-empty str, got {instance!r}")
    blobs: list[bytes] = []
    offset = 0
    entries = []
    for step, blob in records:
        if not isinstance(blob, (bytes, bytearray)):
            raise TypeError(f"records: expected (step, bytes) pairs, got a {type(blob).__name__} "
                            f"at step {step!r}")
        entries.append({"step": int(step), "offset": offset, "nbytes": len(blob),
                        "crc32": crc32(blob)})
        blobs.append(bytes(blob))
        offset += len(blob)
    sb = None
    if subject is not None:
        sb = {"offset": offset, "nbytes": len(subject)}
        blobs.append(bytes(subject))
    header = {"layout": layout.LAYOUT_VERSION, "kind": kind, "instance": instance, "key": key,
              "subject": sb, "records": entries}
    return framing.pack(_MAGIC, header, b"".join(blobs))


def decode_bundle(data: bytes) -> Bundle:
    """Inverse of :func:`encode_bundle`; a damaged record blob is dropped and named in
    ``problems``, a damaged header raises.

    Raises:
        BundleDecodeError: not a bundle, truncated header, or written in a newer layout.
    """
    header, body = framing.unpack(data, _MAGIC, "bundle", BundleDecodeError)
    try:
        version = int(header["layout"])
        instance, key = str(header["instance"]), str(header["key"])
        entries = list(header["records"])
        kind = str(header.get("kind", layout.LEGACY_KIND))  # layout 1 had one kind
        # layout 1 named its one extra blob "neighbours" (.npy), layout 2 "subject" (arrays)
        extra_name = "neighbours" if version < 2 else "subject"
        nb = header.get(extra_name)
    except (ValueError, KeyError, TypeError) as e:
        raise BundleDecodeError(f"corrupt bundle header: {e!r}") from e
    if version > layout.LAYOUT_VERSION:
        raise BundleDecodeError(f"written in DeepVID MLflow layout {version}, this "
                                f"deepvid-plugin reads up to {layout.LAYOUT_VERSION}; upgrade "
                                "deepvid-plugin to read it")
    records: dict[int, bytes] = {}
    crcs: dict[int, int] = {}
    problems: list[str] = []
    for e in entries:
        try:
            step, start, n, crc = int(e["step"]), int(e["offset"]), int(e["nbytes"]), int(e["crc32"])
        except (KeyError, TypeError, ValueError) as err:
            problems.append(f"malformed entry {e!r}: {err!r}")
            continue
        blob = bytes(body[start:start + n])
        if start < 0 or len(blob) != n:
            problems.append(f"record of step {step} runs past the end of the bundle")
        elif crc32(blob) != crc:
            problems.append(f"record of step {step} fails its CRC check")
        else:
            records[step], crcs[step] = blob, crc
    extra = None
    if isinstance(nb, dict):
        try:
            start, n = int(nb["offset"]), int(nb["nbytes"])
            extra = bytes(body[start:start + n])
            if start < 0 or len(extra) != n:
                raise ValueError("runs past the end of the bundle")
        except (KeyError, TypeError, ValueError) as err:
            problems.append(f"{'neighbour images' if version < 2 else 'per-subject arrays'} "
                            f"unreadable: {err}")
            extra = None
    if version < 2:
        return Bundle(instance, key, records, crcs, extra, problems, kind)
    return Bundle(instance, key, records, crcs, None, problems, kind, subject=extra)


__all__ = ["Bundle", "BundleDecodeError", "crc32", "decode_bundle", "encode_bundle"]
