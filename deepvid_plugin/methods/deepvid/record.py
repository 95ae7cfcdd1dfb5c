"""DeepVID's typed record: :class:`ExplanationRecord`, the typed view of a ``deepvid``
:class:`~deepvid_plugin.core.record.Record` envelope (what ``DeepVID.explain`` returns and the
stores hand out for this kind).

Kind versions (every one stays readable):

- **1**: the student over pixels; ``weights`` holds every class's ``(C, H, W)`` weight image.
- **2**: ``classes`` names the classes whose maps ``weights`` holds (the teacher's top classes
  and the true class: a 1000-class model no longer stores 1000 maps), and a student over regions
  stores ``segments`` (the ``(H, W)`` region index of every pixel) and ``weights`` of shape
  ``(S, F)``: one weight per region, drawn back onto the image by :meth:`ExplanationRecord.
  weight_map`. The instance image is stored once per instance (as the neighbours are), and
  ``meta["image_shape"]`` says its shape when a reader cannot put it back. Shown neighbours may
  be smaller than the instance (large images are stored at most 64 pixels a side).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from deepvid_plugin.core.record import (
    SCHEMA_VERSION,
    Record,
    RecordDecodeError,
    UnsupportedKindError,
    as_int,
    expect_shape,
    jsonable,
    ndim_shape,
    same_array,
)

# DeepVID's arrays: name -> dtype the array is stored with. float16 weights/images halve the size
# on disk; the precision loss (~1e-3 relative) is invisible in a colour map.
ARRAYS: dict[str, str] = {
    "image": "<f2",
    "classes": "<i4",
    "segments": "<i4",
    "teacher_probs": "<f4",
    "student_probs": "<f4",
    "weights": "<f2",
    "bias": "<f4",
    "neighbours": "<f2",
    "neighbour_teacher": "<i2",
    "neighbour_student": "<i2",
}
#: arrays a record may lack: version-1 records have neither (every class, pixels).
OPTIONAL = ("classes", "segments")
#: DeepVID's JSON fields that live in the envelope's ``meta``.
META = ("class_names", "label", "fidelity", "image_shape")




@dataclasses.dataclass(frozen=True, eq=False)
class ExplanationRecord:
    """DeepVID's explanation of one instance at one training step: the typed view of a
    ``deepvid`` :class:`Record` (:meth:`to_record`, :meth:`from_record`).

    Shapes use ``K`` classes, ``S`` stored classes, ``C`` channels, ``H x W`` pixels, ``F``
    regions and ``N`` shown neighbours.

    Attributes:
        instance_id: stable id of the tracked instance (any string): the envelope's subject.
        step: training step or epoch this explanation belongs to.
        class_names: ``K`` class names.
        image: ``(C, H, W)`` the instance, in the model's input space (NaN when a reader could
            not put back the once-per-instance copy: see :attr:`has_image`).
        teacher_probs: ``(K,)`` the model's probabilities on the instance (T=1).
        student_probs: ``(K,)`` the linear student's probabilities on the instance (T=1).
        weights: the explanation: ``(S, C, H, W)`` a weight image per stored class (pixel
            student) or ``(S, F)`` a weight per region (region student, with ``segments``).
        bias: ``(K,)`` the student's bias.
        fidelity: held-out fidelity metrics, see :mod:`deepvid_plugin.methods.deepvid.fidelity`.
        neighbours: ``(N, C, h, w)`` a display sample of the generated neighbours
            (``h <= H``, ``w <= W``).
        neighbour_teacher: ``(N,)`` teacher's top-1 class on each shown neighbour.
        neighbour_student: ``(N,)`` student's top-1 class on each shown neighbour.
        settings: JSON-able settings used (n_neighbours, radius, temperature, l2, seed, ...).
        label: the true class index, when known.
        schema_version: the envelope's version (1 for records decoded from version-1 bytes).
        classes: ``(S,)`` sorted class indices of ``weights``' rows; default every class.
        segments: ``(H, W)`` region index ``0..F-1`` of every pixel for a region student;
            empty ``(0, 0)`` for a pixel student (the default).
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
    classes: Any = None
    segments: Any = None

    #: the kind this view belongs to, and the layout version of its arrays and metadata.
    KIND = "deepvid"
    KIND_VERSION = 2

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here, then never again
        if not isinstance(self.instance_id, str) or not self.instance_id:
            raise TypeError(
                f"instance_id: expected a non-empty str, got {self.instance_id!r}"
            )
        set_(self, "step", as_int("step", self.step))
        set_(self, "schema_version", as_int("schema_version", self.schema_version))
        set_(self, "class_names", tuple(str(c) for c in self.class_names))
        k = len(self.class_names)
        if self.classes is None:
            set_(self, "classes", np.arange(k))
        if self.segments is None:
            set_(self, "segments", np.zeros((0, 0)))
        for name, dtype in ARRAYS.items():
            set_(self, name, np.ascontiguousarray(np.asarray(getattr(self, name)), dtype=dtype))
        c, h, w = ndim_shape("image", self.image, 3)
        expect_shape("teacher_probs", self.teacher_probs, (k,))
        expect_shape("student_probs", self.student_probs, (k,))
        n_stored = ndim_shape("classes", self.classes, 1)[0]
        if n_stored == 0 or np.any(np.diff(self.classes) <= 0) or self.classes[0] < 0 \
                or self.classes[-1] >= k:
            raise ValueError(f"classes: expected sorted, distinct class indices in [0, {k}), "
                             f"got {self.classes.tolist()}")
        if self.segments.size:
            expect_shape("segments", self.segments, (h, w))
            n_regions = int(self.segments.max()) + 1
            if int(self.segments.min()) < 0:
                raise ValueError(f"segments: expected region indices >= 0, got "
                                 f"{int(self.segments.min())}")
            expect_shape("weights", self.weights, (n_stored, n_regions))
        else:
            expect_shape("weights", self.weights, (n_stored, c, h, w))
        expect_shape("bias", self.bias, (k,))
        n = ndim_shape("neighbour_teacher", self.neighbour_teacher, 1)[0]
        expect_shape("neighbour_student", self.neighbour_student, (n,))
        # 0 rows means "images stored separately" (see without_neighbour_images); they may be
        # smaller than the instance (large images are shown downsampled).
        nb = self.neighbours
        rows = nb.shape[0] if nb.ndim == 4 else -1
        size = (nb.shape[2], nb.shape[3]) if nb.ndim == 4 and nb.shape[2] <= h \
            and nb.shape[3] <= w and min(nb.shape[2:]) > 0 else (h, w)
        expect_shape("neighbours", nb, (n if rows != 0 else 0, c, *size))
        if self.label is not None:
            label = as_int("label", self.label)
            if not 0 <= label < k:
                raise ValueError(f"label: expected an int in [0, {k}), got {label}")
            set_(self, "label", label)
        set_(self, "fidelity", jsonable("fidelity", self.fidelity))
        set_(self, "settings", jsonable("settings", self.settings))

    # ---- the envelope ------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def subject(self) -> str:
        return self.instance_id

    def to_record(self) -> Record:
        """This explanation as a ``deepvid`` envelope (what sinks store)."""
        arrays = {name: getattr(self, name) for name in ARRAYS}
        if not self.segments.size:
            del arrays["segments"]  # a pixel student
        return Record(kind=self.KIND, subject=self.instance_id, step=self.step, arrays=arrays,
                      meta={"class_names": list(self.class_names), "label": self.label,
                            "fidelity": self.fidelity,
                            "image_shape": [int(v) for v in self.image.shape]},
                      settings=self.settings, kind_version=self.KIND_VERSION,
                      schema_version=self.schema_version)

    @classmethod
    def from_record(cls, record: Record) -> ExplanationRecord:
        """The typed view of a ``deepvid`` envelope; a missing ``neighbours`` array means "stored
        apart" (0 rows), as :meth:`without_neighbour_images` makes it, and a missing ``image``
        (stored once per instance, not put back by the reader) reads as NaN of
        ``meta["image_shape"]``.

        Raises:
            ValueError, TypeError: ``record`` is not a valid ``deepvid`` record.
        """
        if not isinstance(record, Record):
            raise TypeError(f"record: expected a Record, got {type(record).__name__}")
        if record.kind != cls.KIND:
            raise ValueError(f"record: expected kind {cls.KIND!r}, got {record.kind!r}")
        arrays = dict(record.arrays)
        meta = record.meta
        if "image" not in arrays and isinstance(meta.get("image_shape"), list):
            arrays["image"] = np.full([as_int("image_shape", v) for v in meta["image_shape"]],
                                      np.nan, dtype=ARRAYS["image"])
        missing = [n for n in ARRAYS if n not in arrays and n != "neighbours"
                   and n not in OPTIONAL]
        if missing:
            raise ValueError(f"record: deepvid arrays {missing} are missing; it has "
                             f"{sorted(arrays)}")
        if "neighbours" not in arrays:
            c_h_w = np.asarray(arrays["image"]).shape
            arrays["neighbours"] = np.zeros((0, *c_h_w), dtype=ARRAYS["neighbours"])
        return cls(instance_id=record.subject, step=record.step,
                   class_names=tuple(meta.get("class_names", ())), fidelity=meta.get("fidelity", {}),
                   label=meta.get("label"), settings=record.settings,
                   schema_version=record.schema_version,
                   **{name: arrays.get(name) for name in ARRAYS})

    # ---- convenience -------------------------------------------------------------------------
    @property
    def predicted(self) -> int:
        """The teacher's top-1 class on the instance."""
        return int(np.argmax(self.teacher_probs))

    @property
    def trustworthy(self) -> bool:
        return bool(self.fidelity.get("trustworthy", False))

    @property
    def regions(self) -> bool:
        """Whether the student read regions (``segments``) rather than pixels."""
        return bool(self.segments.size)

    @property
    def has_image(self) -> bool:
        """False when the instance image was stored apart and could not be put back."""
        return not bool(np.isnan(self.image).all())

    def class_weights(self, cls: int) -> np.ndarray | None:
        """The stored weights of class ``cls`` (``(C, H, W)`` or ``(F,)``), None if not kept."""
        at = int(np.searchsorted(self.classes, cls))
        if at < len(self.classes) and int(self.classes[at]) == int(cls):
            return self.weights[at]
        return None

    def weight_map(self, cls: int) -> np.ndarray | None:
        """``(H, W)`` float64 weights of class ``cls``: the channel mean of a pixel student's
        weights, or each region's weight drawn onto its pixels; None if not kept."""
        w = self.class_weights(cls)
        if w is None:
            return None
        w = np.asarray(w, np.float64)
        return w[self.segments] if self.regions else w.mean(axis=0)

    def contribution_map(self, cls: int) -> np.ndarray | None:
        """``(H, W)`` what each pixel of this instance adds to class ``cls``'s score: weight x
        input summed over channels (pixels), or its region's weight (regions: a region's weight
        is what switching it on adds); None if not kept. What the evidence scores."""
        w = self.class_weights(cls)
        if w is None:
            return None
        w = np.asarray(w, np.float64)
        if self.regions:
            return w[self.segments]
        image = np.asarray(self.image, np.float64)
        return (w * np.where(np.isfinite(image), image, 0.0)).sum(axis=0)

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
            if f.name in ARRAYS:
                if not same_array(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays: not hashable


__all__ = ["ARRAYS", "META", "OPTIONAL", "ExplanationRecord"]
