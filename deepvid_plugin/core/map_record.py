"""The record side shared by kinds whose record is an instance's per-class maps at the input size
(Grad-CAM's ``gradcam``, a user's own ``attribution``): validation, the step summary, the MLflow
metrics, the map of a class (compare) and the drift signal.

Such a record holds ``image`` (``(C, H, W)``, once per subject), ``probs`` (``(K,)``), the
predicted class's map, optionally the true class's map and further explained ``classes`` with
their maps; ``meta`` has ``class_names``, ``pred``, ``label`` and ``evidence`` (the map's
deletion/insertion evidence, or None). The kinds differ only in their array names
(:class:`MapNames`) and in a few fields of their own, which their ``kind.py`` checks.
Headline: the deletion AUC of the predicted class's map (lower is better).

Nothing here imports torch: readers load the kinds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from deepvid_plugin.core import encode, kinds, signals
from deepvid_plugin.core.record import Record


@dataclasses.dataclass(frozen=True)
class MapNames:
    """A maps kind's array names: the predicted class's map, the true class's, the further
    classes' maps (beside ``classes``)."""

    pred: str
    true: str
    maps: str


def _index(meta: Mapping[str, Any], name: str, k: int, required: bool) -> None:
    value = meta.get(name)
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < k:
        raise ValueError(f"meta[{name!r}]: expected an int in [0, {k}), got {value!r}")


def validate(record: Record, names: MapNames) -> int:
    """Check what every maps record holds; returns the number of classes."""
    meta, arrays = record.meta, record.arrays
    k = len(kinds.meta_class_names(meta))
    if arrays["probs"].shape != (k,):
        raise ValueError(f"probs: expected shape ({k},), got {arrays['probs'].shape}")
    _index(meta, "pred", k, required=True)
    _index(meta, "label", k, required=False)
    m = arrays[names.pred]
    if m.ndim != 2:
        raise ValueError(f"{names.pred}: expected an (H, W) map, got shape {m.shape}")
    if names.true in arrays and arrays[names.true].shape != m.shape:
        raise ValueError(f"{names.true}: expected shape {m.shape} (as {names.pred}), got "
                         f"{arrays[names.true].shape}")
    if "image" in arrays and (arrays["image"].ndim != 3 or arrays["image"].shape[1:] != m.shape):
        raise ValueError(f"image: expected a (C, {m.shape[0]}, {m.shape[1]}) image (the maps "
                         f"are at the input size), got shape {arrays['image'].shape}")
    if ("classes" in arrays) != (names.maps in arrays):
        raise ValueError(f"classes, {names.maps}: expected both or neither, got "
                         f"{sorted(n for n in ('classes', names.maps) if n in arrays)}")
    if "classes" in arrays:
        classes, maps = arrays["classes"], arrays[names.maps]
        if classes.ndim != 1 or maps.shape != (len(classes), *m.shape):
            raise ValueError(f"{names.maps}: expected ({len(classes)}, {m.shape[0]}, "
                             f"{m.shape[1]}) maps, one per entry of classes, got shape "
                             f"{maps.shape}")
        if len(classes) and not (0 <= int(classes.min()) and int(classes.max()) < k):
            raise ValueError(f"classes: expected class indices in [0, {k}), got "
                             f"{classes.tolist()}")
    evidence = meta.get("evidence")
    if evidence is not None and not isinstance(evidence, dict):
        raise ValueError(f"meta['evidence']: expected a dict or None, got {evidence!r}")
    return k


def summarize(record: Record, previous: Mapping[str, Any] | None,
              names: MapNames) -> dict[str, Any]:
    meta = record.meta
    evidence = meta.get("evidence") or {}
    predicted = int(meta["pred"])
    deletion = evidence.get("deletion_auc")
    before = None if previous is None else previous.get("predicted")
    better = evidence.get("better_than_random")
    return {
        "predicted": predicted,
        "probs": encode.round_list(record.arrays["probs"]),
        "fidelity": encode.summary_fidelity(evidence),
        # A map no better than a random one at deletion/insertion is not to be trusted.
        "trustworthy": bool(better) if isinstance(better, bool) else None,
        "changed": before is not None and predicted != int(before),
        "thumb": encode.thumb(record.arrays[names.pred]),
        "headline": float(deletion) if isinstance(deletion, (int, float))
        and not isinstance(deletion, bool) else None,
    }


def metrics(record: Record, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The MLflow numbers of a maps record: its map's deletion and insertion AUC."""
    evidence = record.meta.get("evidence") or {}
    return {"deletion_auc": evidence.get("deletion_auc"),
            "insertion_auc": evidence.get("insertion_auc")}


def class_map(record: Record, cls: int, names: MapNames) -> np.ndarray | None:
    """The map of class ``cls``: the prediction's, the true label's where known, or a further
    explained class's; None when the record keeps none of it."""
    if cls == int(record.meta["pred"]):
        return np.asarray(record.arrays[names.pred], np.float64)
    if cls == record.meta.get("label") and names.true in record.arrays:
        return np.asarray(record.arrays[names.true], np.float64)
    if "classes" in record.arrays:  # further explained classes (targets=, multi-label)
        hits = np.flatnonzero(np.asarray(record.arrays["classes"]) == cls)
        if hits.size:
            return np.asarray(record.arrays[names.maps][hits[0]], np.float64)
    return None


def signal(record: Record, names: MapNames) -> signals.MapSignal:
    """What the drift detectors watch: the predicted class's map over the instance."""
    meta = record.meta
    image = record.arrays.get("image")
    return signals.MapSignal(record.subject, np.asarray(record.arrays[names.pred], np.float64),
                             None if image is None else np.asarray(image, np.float64),
                             int(meta["pred"]), meta.get("label"),
                             signals.trust_of(meta.get("evidence")))


__all__ = ["MapNames", "class_map", "metrics", "signal", "summarize", "validate"]
