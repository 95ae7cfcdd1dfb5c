"""`ExplanationRecord`: the one data format every sink writes and every reader reads.

The byte encoding is deliberately boring and pickle-free, so a record logged today can be read by
any later version of this package (or by hand) without executing code:

    b"DVID" | uint32 LE header length | UTF-8 JSON header | zlib(concatenated raw arrays)

The JSON header carries ``schema_version``, the scalar fields and, for each array, its dtype, shape
and byte offset inside the decompressed payload. Keys are sorted and compression is fixed, so the
same record always encodes to the same bytes (the determinism test relies on it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from deepvid_plugin import framing

SCHEMA_VERSION = 1
_MAGIC = b"DVID"

# name -> dtype the array is stored with. float16 weights/images halve the size on disk; the
# precision loss (~1e-3 relative) is invisible in a colour map.
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


@dataclasses.dataclass(frozen=True, eq=False)
class ExplanationRecord:
    """DeepVID's explanation of one instance at one training step.

    Shapes use ``K`` classes, ``C`` channels, ``H x W`` pixels and ``N`` shown neighbours.

    Attributes:
        instance_id: stable id of the tracked instance (any string).
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

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here, then never again
        if not isinstance(self.instance_id, str) or not self.instance_id:
            raise TypeError(
                f"instance_id: expected a non-empty str, got {self.instance_id!r}"
            )
        set_(self, "step", _int("step", self.step))
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
        """Serialise to bytes without pickle; deterministic for equal records."""
        fields: dict[str, Any] = {}
        arrays: dict[str, Any] = {}
        chunks: list[bytes] = []
        offset = 0
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _ARRAY_FIELDS:
                raw = value.tobytes()
                arrays[f.name] = {"dtype": value.dtype.str, "shape": list(value.shape),
                                  "offset": offset, "nbytes": len(raw)}
                chunks.append(raw)
                offset += len(raw)
            elif f.name == "class_names":
                fields[f.name] = list(value)
            else:
                fields[f.name] = value
        header = {"schema_version": self.schema_version, "fields": fields, "arrays": arrays}
        return framing.pack(_MAGIC, header, zlib.compress(b"".join(chunks), 6))

    @classmethod
    def decode(cls, data: bytes) -> ExplanationRecord:
        """Inverse of :meth:`encode`.

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
            payload = zlib.decompress(body)
            kwargs = dict(header["fields"])
            for name, spec in header["arrays"].items():
                start, nbytes = int(spec["offset"]), int(spec["nbytes"])
                if start + nbytes > len(payload):
                    raise ValueError(f"array {name!r} runs past the payload")
                kwargs[name] = np.frombuffer(payload, dtype=np.dtype(spec["dtype"]),
                                             count=nbytes // np.dtype(spec["dtype"]).itemsize,
                                             offset=start).reshape(spec["shape"])
            kwargs["class_names"] = tuple(kwargs["class_names"])
            return cls(**kwargs)
        except NewerSchemaError:
            raise
        except (zlib.error, ValueError, KeyError, TypeError) as e:
            raise RecordDecodeError(f"corrupt record body: {e}") from e

    # ---- equality: numpy arrays need element-wise comparison ---------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExplanationRecord):
            return NotImplemented
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in _ARRAY_FIELDS:
                if a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b):
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
