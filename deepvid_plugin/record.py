"""The record envelope: the one data format every sink writes and every reader reads.

A :class:`Record` is one explanation of one *subject* (an instance id, a layer, a class or
``"model"``) at one training step, of one *kind* (``deepvid``, ``gradcam``, ...)::

    Record(kind, kind_version, subject, step, settings, arrays, meta, schema_version)

``arrays`` are typed numpy arrays, ``meta`` and ``settings`` JSON. What each kind's arrays and
metadata must be is declared by the kind registry (:mod:`deepvid_plugin.kinds`), which also
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

from deepvid_plugin import framing

SCHEMA_VERSION = 2
_MAGIC = b"DVID"
_ARRAYS_MAGIC = b"DVIA"

# DeepVID's arrays: name -> dtype the array is stored with. float16 weights/images halve the size
# on disk; the precision loss (~1e-3 relative) is invisible in a colour map.
_ARRAY_FIELDS: dict[str, str] = {
    "image": "<f2",
    "teacher_probs": "<f4",
    "student_probs": "<f4",
    "weights": "<f2",
    "bias": "<f4",
    "neighbours": "<f2",
    "neighbour_teacher": "<i2",
    "neighbour_student": "<i2",
}
#: DeepVID's JSON fields that live in the envelope's ``meta``.
_DEEPVID_META = ("class_names", "label", "fidelity")


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

    The envelope checks only its own structure; :func:`deepvid_plugin.kinds.make` also coerces
    the arrays to the kind's dtypes and runs the kind's validation.
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
        set_(self, "step", _int("step", self.step))
        set_(self, "kind_version", _int("kind_version", self.kind_version))
        set_(self, "schema_version", _int("schema_version", self.schema_version))
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
        set_(self, "meta", _jsonable("meta", self.meta))
        set_(self, "settings", _jsonable("settings", self.settings))

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
            _same_array(a, other.arrays[k]) for k, a in self.arrays.items())

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays: not hashable


def _from_v1(fields: Mapping[str, Any], arrays: dict[str, np.ndarray]) -> Record:
    """A version-1 (DeepVID-only) header's fields as a ``deepvid`` envelope."""
    return Record(kind="deepvid", subject=fields["instance_id"], step=fields["step"],
                  arrays=arrays,
                  meta={"class_names": list(fields["class_names"]), "label": fields.get("label"),
                        "fidelity": fields.get("fidelity", {})},
                  settings=fields.get("settings", {}), kind_version=1, schema_version=1)


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


# ---- DeepVID's typed view ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class ExplanationRecord:
    """DeepVID's explanation of one instance at one training step: the typed view of a
    ``deepvid`` :class:`Record` (:meth:`to_record`, :meth:`from_record`).

    Shapes use ``K`` classes, ``C`` channels, ``H x W`` pixels and ``N`` shown neighbours.

    Attributes:
        instance_id: stable id of the tracked instance (any string): the envelope's subject.
        step: training step or epoch this explanation belongs to.
        class_names: ``K`` class names.
        image: ``(C, H, W)`` the instance, in the model's input space.
        teacher_probs: ``(K,)`` the model's probabilities on the instance (T=1).
        student_probs: ``(K,)`` the linear student's probabilities on the instance (T=1).
        weights: ``(K, C, H, W)`` the student's weight image per class: the explanation.
        bias: ``(K,)`` the student's bias.
        fidelity: held-out fidelity metrics, see :mod:`deepvid_plugin.explain.fidelity`.
        neighbours: ``(N, C, H, W)`` a display sample of the generated neighbours.
        neighbour_teacher: ``(N,)`` teacher's top-1 class on each shown neighbour.
        neighbour_student: ``(N,)`` student's top-1 class on each shown neighbour.
        settings: JSON-able settings used (n_neighbours, radius, temperature, l2, seed, ...).
        label: the true class index, when known.
        schema_version: the envelope's version (1 for records decoded from version-1 bytes).
    """

    instance_id: str
    step: int
    class_names: tuple[str, ...]
    image: np.ndarray
    teacher_probs: np.ndarray
    student_probs: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    fidelity: Mapping[str, Any]
    neighbours: np.ndarray
    neighbour_teacher: np.ndarray
    neighbour_student: np.ndarray
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    label: int | None = None
    schema_version: int = SCHEMA_VERSION

    #: the kind this view belongs to, and the layout version of its arrays and metadata.
    KIND = "deepvid"
    KIND_VERSION = 1

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here, then never again
        if not isinstance(self.instance_id, str) or not self.instance_id:
            raise TypeError(
                f"instance_id: expected a non-empty str, got {self.instance_id!r}"
            )
        set_(self, "step", _int("step", self.step))
        set_(self, "schema_version", _int("schema_version", self.schema_version))
        set_(self, "class_names", tuple(str(c) for c in self.class_names))
        for name, dtype in _ARRAY_FIELDS.items():
            set_(self, name, np.ascontiguousarray(np.asarray(getattr(self, name)), dtype=dtype))
        k = len(self.class_names)
        c, h, w = _shape("image", self.image, 3)
        _expect_shape("teacher_probs", self.teacher_probs, (k,))
        _expect_shape("student_probs", self.student_probs, (k,))
        _expect_shape("weights", self.weights, (k, c, h, w))
        _expect_shape("bias", self.bias, (k,))
        n = _shape("neighbour_teacher", self.neighbour_teacher, 1)[0]
        _expect_shape("neighbour_student", self.neighbour_student, (n,))
        # 0 rows means "images stored separately" (see without_neighbour_images).
        rows = self.neighbours.shape[0] if self.neighbours.ndim == 4 else -1
        _expect_shape("neighbours", self.neighbours, (n if rows != 0 else 0, c, h, w))
        if self.label is not None:
            label = _int("label", self.label)
            if not 0 <= label < k:
                raise ValueError(f"label: expected an int in [0, {k}), got {label}")
            set_(self, "label", label)
        set_(self, "fidelity", _jsonable("fidelity", self.fidelity))
        set_(self, "settings", _jsonable("settings", self.settings))

    # ---- the envelope ------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def subject(self) -> str:
        return self.instance_id

    def to_record(self) -> Record:
        """This explanation as a ``deepvid`` envelope (what sinks store)."""
        return Record(kind=self.KIND, subject=self.instance_id, step=self.step,
                      arrays={name: getattr(self, name) for name in _ARRAY_FIELDS},
                      meta={"class_names": list(self.class_names), "label": self.label,
                            "fidelity": self.fidelity},
                      settings=self.settings, kind_version=self.KIND_VERSION,
                      schema_version=self.schema_version)

    @classmethod
    def from_record(cls, record: Record) -> ExplanationRecord:
        """The typed view of a ``deepvid`` envelope; a missing ``neighbours`` array means "stored
        apart" (0 rows), as :meth:`without_neighbour_images` makes it.

        Raises:
            ValueError, TypeError: ``record`` is not a valid ``deepvid`` record.
        """
        if not isinstance(record, Record):
            raise TypeError(f"record: expected a Record, got {type(record).__name__}")
        if record.kind != cls.KIND:
            raise ValueError(f"record: expected kind {cls.KIND!r}, got {record.kind!r}")
        arrays = dict(record.arrays)
        missing = [n for n in _ARRAY_FIELDS if n not in arrays and n != "neighbours"]
        if missing:
            raise ValueError(f"record: deepvid arrays {missing} are missing; it has "
                             f"{sorted(arrays)}")
        if "neighbours" not in arrays:
            c_h_w = np.asarray(arrays["image"]).shape
            arrays["neighbours"] = np.zeros((0, *c_h_w), dtype=_ARRAY_FIELDS["neighbours"])
        meta = record.meta
        return cls(instance_id=record.subject, step=record.step,
                   class_names=tuple(meta.get("class_names", ())), fidelity=meta.get("fidelity", {}),
                   label=meta.get("label"), settings=record.settings,
                   schema_version=record.schema_version,
                   **{name: arrays[name] for name in _ARRAY_FIELDS})

    # ---- convenience -------------------------------------------------------------------------
    @property
    def predicted(self) -> int:
        """The teacher's top-1 class on the instance."""
        return int(np.argmax(self.teacher_probs))

    @property
    def trustworthy(self) -> bool:
        return bool(self.fidelity.get("trustworthy", False))

    def without_neighbour_images(self) -> ExplanationRecord:
        """A copy with the neighbour *images* dropped; their per-step labels are kept.

        Neighbours are fixed per instance, so sinks store their images once and per-step records
        without them (about 25 KB saved per instance-step at 28x28 with 32 shown neighbours).
        :meth:`with_neighbour_images` puts them back on read.
        """
        return dataclasses.replace(self, neighbours=self.neighbours[:0])

    def with_neighbour_images(self, neighbours: np.ndarray) -> ExplanationRecord:
        return dataclasses.replace(self, neighbours=neighbours)

    @property
    def has_neighbour_images(self) -> bool:
        return self.neighbours.shape[0] == self.neighbour_teacher.shape[0]

    # ---- encoding ----------------------------------------------------------------------------
    def encode(self) -> bytes:
        """Serialise to bytes (a ``deepvid`` envelope) without pickle; deterministic."""
        return self.to_record().encode()

    @classmethod
    def decode(cls, data: bytes) -> ExplanationRecord:
        """Inverse of :meth:`encode`; also reads version-1 bytes.

        Raises:
            NewerSchemaError: the record's ``schema_version`` is newer than this package reads.
            UnsupportedKindError: the bytes hold a record of another kind, or of a newer
                ``deepvid`` kind_version.
            RecordDecodeError: the bytes are not a valid record.
        """
        record = Record.decode(data)
        if record.kind != cls.KIND:
            raise UnsupportedKindError(f"record: expected kind {cls.KIND!r}, got "
                                       f"{record.kind!r}")
        if record.kind_version > cls.KIND_VERSION:
            raise UnsupportedKindError(
                f"record has deepvid kind_version {record.kind_version}, but this "
                f"deepvid-plugin reads up to {cls.KIND_VERSION}; upgrade deepvid-plugin to read it")
        try:
            return cls.from_record(record)
        except (ValueError, TypeError) as e:
            raise RecordDecodeError(f"corrupt record body: {e}") from e

    # ---- equality: numpy arrays need element-wise comparison ---------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExplanationRecord):
            return NotImplemented
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in _ARRAY_FIELDS:
                if not _same_array(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays: not hashable


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    return int(value)


def _shape(name: str, arr: np.ndarray, ndim: int) -> tuple[int, ...]:
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got shape {tuple(arr.shape)}")
    return tuple(arr.shape)


def _expect_shape(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(arr.shape)}")


def _jsonable(name: str, value: Mapping[str, Any]) -> dict[str, Any]:
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
