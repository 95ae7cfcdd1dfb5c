"""Realistic :class:`ExplanationRecord` objects from seeded random arrays, for every test.

The record format is real; only the numbers are synthetic. Records of the same instance share
their image and neighbour images across steps (as DeepVID's fixed neighbours do), while the
probabilities, weights and neighbour labels drift with ``step`` so that the predicted class
changes now and then.
"""

from __future__ import annotations

import zlib

import numpy as np

from deepvid_plugin.record import SCHEMA_VERSION, ExplanationRecord

_DEFAULT = object()


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(repr(p).encode()) for p in parts])


def _smooth(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Spatially smooth noise (box-blurred), so weight maps look like blobs, not static."""
    a = rng.standard_normal(shape)
    for axis in (-1, -2):
        a = (a + np.roll(a, 1, axis) + np.roll(a, -1, axis)) / 3
    return a


def make_record(instance_id: str = "a", step: int = 0, n_classes: int = 10, size: int = 28,
                channels: int = 1, n_shown: int = 8, seed: int = 0, label=_DEFAULT,
                schema_version: int = SCHEMA_VERSION, class_names=None,
                trustworthy: bool | None = None) -> ExplanationRecord:
    """One record of ``instance_id`` at ``step``; equal arguments give equal records.

    ``label`` defaults to a class derived from the instance (pass ``None`` for unknown).
    ``trustworthy`` defaults to a seeded coin flip weighted towards True.
    """
    fixed = _rng("instance", instance_id, seed, n_classes, size, channels)
    per_step = _rng("step", instance_id, seed, step)
    default_label = int(fixed.integers(n_classes))  # drawn always: arrays don't depend on label
    if label is _DEFAULT:
        label = default_label
    image = fixed.random((channels, size, size)).astype(np.float32)
    neighbours = np.clip(image[None] + 0.1 * fixed.standard_normal(
        (n_shown, channels, size, size)), 0, 1).astype(np.float32)

    # The teacher mostly favours one class per instance; now and then another one wins.
    logits = per_step.standard_normal(n_classes)
    favourite = label if label is not None else 0
    logits[favourite] += 2.0 + 0.1 * step
    teacher = np.exp(logits) / np.exp(logits).sum()
    student = teacher + 0.02 * per_step.random(n_classes)
    student /= student.sum()
    weights = (0.05 * _smooth(fixed, (n_classes, channels, size, size))
               + 0.01 * _smooth(per_step, (n_classes, channels, size, size))).astype(np.float32)
    agreement = float(np.clip(0.7 + 0.3 * per_step.random(), 0, 1))
    if trustworthy is None:
        trustworthy = agreement >= 0.75
    fidelity = {"top1_agreement": agreement, "kl": float(per_step.random() * 0.2),
                "r2_top": float(per_step.random()), "instance_agreement":
                bool(np.argmax(teacher) == np.argmax(student)), "trustworthy": bool(trustworthy)}
    return ExplanationRecord(
        instance_id=instance_id, step=step,
        class_names=tuple(class_names) if class_names is not None else
        tuple(str(k) for k in range(n_classes)),
        image=image, teacher_probs=teacher, student_probs=student, weights=weights,
        bias=0.1 * per_step.standard_normal(n_classes), fidelity=fidelity,
        neighbours=neighbours,
        neighbour_teacher=per_step.integers(n_classes, size=n_shown),
        neighbour_student=per_step.integers(n_classes, size=n_shown),
        settings={"n_neighbours": 512, "radius": 1.0, "temperature": 2.0, "l2": None,
                  "seed": seed, "n_shown": n_shown},
        label=label, schema_version=schema_version,
    )


def make_run(instance_ids=("a", "b"), steps=range(3), **kwargs) -> list[ExplanationRecord]:
    """Records of several instances over several steps (step-major, as a callback logs them)."""
    return [make_record(i, s, **kwargs) for s in steps for i in instance_ids]
