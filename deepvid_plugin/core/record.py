"""The record envelope: the one data format every sink writes and every reader reads.

A :class:`Record` is one explanation of one *subject* (an instance id, a layer, a class or
``"model"``) at one training step, of one *kind* (``deepvid``, ``gradcam``, ...)::

    Record(kind, kind_version, subject, step, settings, arrays, meta, schema_version)

``arrays`` are typed numpy arrays, ``meta`` and ``settings`` JSON. What each kind's arrays and
metadata must be is declared by the kind registry (:mod:`deepvid_plugin.core.kinds`), which also
validates a record and gives its typed view (:class:`ExplanationRecord` is DeepVID's).

The byte encoding is deliberately boring and pickle-free, so a record logged today can be read by
any later version of this package (or by hand) without executing code:

    b"DVID" | uint32 LE header length | UTF-8 JSON header | zlib(concatenated raw arrays)

The JSON header carries ``schema_version`` (2), ``kind``, ``kind_version``, ``subject``,
``step``, ``settings``, ``meta`` and, for each array, its dtype, shape and byte offset inside the
decompressed payload. Keys are sorted and compression is fixed, so the same record always encodes
to the same bytes (the determinism test relies on it).

Version 1 (DeepVID only, before kinds) put DeepVID's fields in ``fields``; :meth:`Record.decode`
reads such bytes as a ``deepvid`` record (``kind_version`` 1, ``schema_version`` 1), so every
record ever written stays readable.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from deepvid_plugin.core import framing

SCHEMA_VERSION = 2
_MAGIC = b"DVID"
_ARRAYS_MAGIC = b"DVIA"

class RecordDecodeError(ValueError):
    """The bytes are not a readable DeepVID record (wrong magic, truncated, corrupt header)."""


class NewerSchemaError(RecordDecodeError):
    """The record was written by a newer deepvid-plugin whose schema this version cannot read.

    Readers catch this, show a visible warning naming both versions, and keep serving the records
    they can read. Upgrade deepvid-plugin to read it.
    """

    def __init__(self, found: int, supported: int = SCHEMA_VERSION):
        self.found = found
        self.supported = supported
        super().__init__(
            f"record has schema_version {found}, but this deepvid-plugin reads up to "
            f"{supported}; upgrade deepvid-plugin to read it"
        )


class UnsupportedKindError(RecordDecodeError):
    """A readable envelope of a kind this deepvid-plugin does not know, or of a newer
    ``kind_version`` than its kind module reads. Readers skip it with a visible warning."""


# ---- array packing (shared by records and the once-per-subject blobs) --------------------------
def _pack_arrays(arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, Any], bytes]:
    specs: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        raw = value.tobytes()
        specs[name] = {"dtype": value.dtype.str, "shape": list(value.shape), "offset": offset,
                       "nbytes": len(raw)}
        chunks.append(raw)
        offset += len(raw)
    return specs, zlib.compress(b"".join(chunks), 6)


def _unpack_arrays(specs: Mapping[str, Any], body: Any) -> dict[str, np.ndarray]:
    payload = zlib.decompress(body)
    out = {}
    for name, spec in specs.items():
        start, nbytes = int(spec["offset"]), int(spec["nbytes"])
        if start + nbytes > len(payload):
            raise ValueError(f"array {name!r} runs past the payload")
        dtype = np.dtype(spec["dtype"])
        if dtype.hasobject:  # never: object arrays would need pickle
            raise ValueError(f"array {name!r}: object dtype is not allowed")
        out[name] = np.frombuffer(payload, dtype=dtype, count=nbytes // dtype.itemsize,
                                  offset=start).reshape(spec["shape"])
    return out


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Named arrays alone (what sinks store once per subject), framed like a record:
    ``b"DVIA" | header length | {"arrays": ...} | zlib(raw arrays)``. No pickle."""
    specs, body = _pack_arrays({str(k): np.asarray(v) for k, v in arrays.items()})
    return framing.pack(_ARRAYS_MAGIC, {"arrays": specs}, body)


def decode_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_arrays`; ``RecordDecodeError`` when unreadable."""
    header, body = framing.unpack(data, _ARRAYS_MAGIC, "array blob", RecordDecodeError)
    try:
        return _unpack_arrays(header["arrays"], body)
    except (zlib.error, ValueError, KeyError, TypeError, AttributeError) as e:
        raise RecordDecodeError(f"corrupt array blob: {e}") from e


# ---- the envelope --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Record:
    """One explanation of one subject at one step, of any kind.

    Attributes:
        kind: the registered kind's name (``deepvid``, ``gradcam``, ...).
        subject: what is explained: an instance id, a layer name, a class name or ``"model"``.
        step: training step or epoch.
        arrays: the kind's typed arrays by name (see the kind's ``arrays`` declaration).
        meta: JSON metadata of the kind (class names, label, evidence, ...).
        settings: JSON settings the explainer used.
        kind_version: version of the kind's own layout (its module reads up to its own).
        schema_version: version of the envelope; records decoded from version 1 bytes say 1.

    The envelope checks only its own structure; :func:`deepvid_plugin.core.kinds.make` also coerces
    the arrays to the kind's dtypes and runs the kind's validation.

    Example::

        >>> import numpy as np
        >>> from deepvid_plugin.core.record import Record
        >>> r = Record(kind="gradcam", subject="test-7", step=3,
        ...            arrays={"probs": np.array([0.25, 0.75], np.float32)},
        ...            meta={"pred": 1})
        >>> Record.decode(r.encode()) == r
        True
    """

    kind: str
    subject: str
    step: int
    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    kind_version: int = 1
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here, then never again
        for name in ("kind", "subject"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise TypeError(f"{name}: expected a non-empty str, got {value!r}")
        set_(self, "step", as_int("step", self.step))
        set_(self, "kind_version", as_int("kind_version", self.kind_version))
        set_(self, "schema_version", as_int("schema_version", self.schema_version))
        if not isinstance(self.arrays, Mapping):
            raise TypeError(f"arrays: expected a mapping of name -> array, got "
                            f"{type(self.arrays).__name__}")
        arrays = {}
        for name, value in self.arrays.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"arrays: expected non-empty str names, got {name!r}")
            arr = np.ascontiguousarray(np.asarray(value))
            if arr.dtype.hasobject:
                raise TypeError(f"arrays[{name!r}]: expected a numeric array, got dtype object")
            arrays[name] = arr
        set_(self, "arrays", arrays)
        set_(self, "meta", jsonable("meta", self.meta))
        set_(self, "settings", jsonable("settings", self.settings))

    def without(self, names: Iterable[str]) -> Record:
        """A copy without the arrays ``names`` (sinks store once-per-subject arrays apart)."""
        drop = set(names)
        return dataclasses.replace(
            self, arrays={k: v for k, v in self.arrays.items() if k not in drop})

    def with_arrays(self, arrays: Mapping[str, np.ndarray]) -> Record:
        """A copy with ``arrays`` added (or replaced): the inverse of :meth:`without`."""
        return dataclasses.replace(self, arrays={**self.arrays, **arrays})

    def encode(self) -> bytes:
        """Serialise to bytes without pickle; deterministic for equal records.

        Always in the current layout: a record decoded from version-1 bytes is written as
        version 2. A record that says it is *newer* keeps its number (tests use that to stand
        for a newer writer).
        """
        specs, body = _pack_arrays(self.arrays)
        header = {"schema_version": max(self.schema_version, SCHEMA_VERSION), "kind": self.kind,
                  "kind_version": self.kind_version, "subject": self.subject, "step": self.step,
                  "settings": self.settings, "meta": self.meta, "arrays": specs}
        return framing.pack(_MAGIC, header, body)

    @classmethod
    def decode(cls, data: bytes) -> Record:
        """Inverse of :meth:`encode`; version-1 bytes decode as a ``deepvid`` record.

        Raises:
            NewerSchemaError: the record's ``schema_version`` is newer than this package reads.
            RecordDecodeError: the bytes are not a valid record.
        """
        header, body = framing.unpack(data, _MAGIC, "record", RecordDecodeError)
        try:
            version = int(header["schema_version"])
        except (ValueError, KeyError, TypeError) as e:
            raise RecordDecodeError(f"corrupt record header: {e}") from e
        if version > SCHEMA_VERSION:
            raise NewerSchemaError(version)
        try:
            arrays = _unpack_arrays(header["arrays"], body)
            if version == 1:
                return _from_v1(header["fields"], arrays)
            return cls(kind=header["kind"], subject=header["subject"], step=header["step"],
                       arrays=arrays, meta=header["meta"], settings=header["settings"],
                       kind_version=header["kind_version"], schema_version=version)
        except (zlib.error, ValueError, KeyError, TypeError, AttributeError) as e:
            raise RecordDecodeError(f"corrupt record body: {e}") from e

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        if (self.kind, self.subject, self.step, self.kind_version, self.schema_version,
                self.meta, self.settings) != (other.kind, other.subject, other.step,
                                              other.kind_version, other.schema_version,
                                              other.meta, other.settings):
            return False
        return self.arrays.keys() == other.arrays.keys() and all(
            same_array(a, other.arrays[k]) for k, a in self.arrays.items())

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays: not hashable


def _from_v1(fields: Mapping[str, Any], arrays: dict[str, np.ndarray]) -> Record:
    """A version-1 (DeepVID-only) header's fields as a ``deepvid`` envelope."""
    return Record(kind="deepvid", subject=fields["instance_id"], step=fields["step"],
                  arrays=arrays,
                  meta={"class_names": list(fields["class_names"]), "label": fields.get("label"),
                        "fidelity": fields.get("fidelity", {})},
                  settings=fields.get("settings", {}), kind_version=1, schema_version=1)


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    return int(value)


def ndim_shape(name: str, arr: np.ndarray, ndim: int) -> tuple[int, ...]:
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got shape {tuple(arr.shape)}")
    return tuple(arr.shape)


def expect_shape(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(arr.shape)}")


def jsonable(name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so the record holds exactly what decode() will give back."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}: expected a mapping, got {type(value).__name__}")

    def clean(v: Any) -> Any:
        if isinstance(v, (np.floating, float)):
            f = float(v)
            return f if math.isfinite(f) else None
        if isinstance(v, (np.bool_, bool)):
            return bool(v)
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.ndarray):
            return clean(v.tolist())
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        return v

    try:
        return json.loads(json.dumps(clean(value), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected JSON-serialisable values, got {value!r}: {e}") from e
