"""The ``netdissect`` kind: Network Dissection of one layer (Bau et al., CVPR 2017).

The engine is :mod:`deepvid_plugin.methods.netdissect`, the explainer
:class:`~deepvid_plugin.methods.netdissect.explainer.NetDissectExplainer`; this module is the
record side. Subject = the layer's dotted name; one record per layer per explained epoch.

Arrays (``U`` units, ``L`` concept labels, ``C`` categories, ``T`` top images per unit, ``P``
probe thumbnails of ``S x S`` pixels):

- ``label`` ``(U,)`` int16: each unit's best label (index into ``meta["labels"]``);
- ``iou`` ``(U,)`` float32: its IoU; ``detector`` ``(U,)`` uint8: IoU above the threshold;
- ``iou_all`` ``(U, L)`` float16, optional: every unit x label IoU (left out of big layers);
- ``top_probe`` ``(U, T)`` int32: the strongest probe images of each unit (indices into the
  whole probe set; -1 pads);
- ``top_thumbs`` ``(U, T)`` int16 and ``top_masks`` ``(U, T, S, S)`` uint8: the strongest of
  the stored thumbnails per unit (indices into ``probe_images``) and the unit's mask on them, so
  a view can draw them without the probe set.

Fixed per subject (stored once by the sinks): ``probe_images`` ``(P, 3, S, S)`` uint8 and
``probe_index`` ``(P,)`` int32 (which probe images they are); the random-init baseline
``baseline_label`` ``(U,)``, ``baseline_iou`` ``(U,)`` and ``baseline_unique`` ``(C,)`` (unique
detectors per category); ``image`` ``(C', H, W)``, the row header picture (a mosaic of probe
thumbnails).

``meta``: ``layer``, ``shape`` ``[U, h, w]``, ``labels``, ``label_category``, ``categories``,
``unique_detectors`` ``{category: n}``, ``quantile``, ``iou_threshold``, ``n_probe``,
``class_names`` (the model's, may be empty) and ``label`` (None: a layer has no class).

Headline: the layer's **total unique detectors** (higher is better).

Nothing here imports torch: readers (the TensorBoard plugin) load this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from deepvid_plugin.core import encode, kinds, signals
from deepvid_plugin.core.record import Record
from deepvid_plugin.mlflow import hooks as mlflow_hooks

NAME = "netdissect"
VERSION = 1
ARRAYS = {
    "label": "<i2", "iou": "<f4", "detector": "|u1", "iou_all": "<f2",
    "top_probe": "<i4", "top_thumbs": "<i2", "top_masks": "|u1",
    "probe_images": "|u1", "probe_index": "<i4",
    "baseline_label": "<i2", "baseline_iou": "<f4", "baseline_unique": "<i2",
    "image": "<f2",
}
PER_SUBJECT = ("probe_images", "probe_index", "baseline_label", "baseline_iou",
               "baseline_unique", "image")
#: ``iou_all`` is left out above this many unit x label entries (keeps a record small).
MAX_IOU_ENTRIES = 1 << 16


def _str_list(meta: Mapping[str, Any], name: str, n: int | None = None) -> list[str]:
    value = meta.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or (
            n is not None and len(value) != n):
        want = f"a list of {n} str" if n is not None else "a list of str"
        raise ValueError(f"meta[{name!r}]: expected {want}, got {value!r}")
    return value


def _shape(name: str, a: np.ndarray, shape: tuple[int | None, ...]) -> None:
    if a.ndim != len(shape) or any(w is not None and w != g for w, g in zip(shape, a.shape,
                                                                              strict=True)):
        want = "(" + ", ".join("*" if w is None else str(w) for w in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {a.shape}")


def _validate(record: Record) -> None:
    meta, arrays = record.meta, record.arrays
    labels = _str_list(meta, "labels")
    _str_list(meta, "label_category", len(labels))
    categories = _str_list(meta, "categories")
    unknown = sorted(set(meta["label_category"]) - set(categories))
    if unknown:
        raise ValueError(f"meta['label_category']: expected categories among {categories}, got "
                         f"{unknown}")
    shape = meta.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        raise ValueError(f"meta['shape']: expected [units, h, w] positive ints, got {shape!r}")
    unique = meta.get("unique_detectors")
    if not isinstance(unique, dict) or sorted(unique) != sorted(categories):
        raise ValueError(f"meta['unique_detectors']: expected a count for each of {categories},"
                         f" got {unique!r}")
    if not isinstance(meta.get("layer"), str):
        raise ValueError(f"meta['layer']: expected the layer's name (str), got "
                         f"{meta.get('layer')!r}")
    u, n_lab = shape[0], len(labels)
    for name in ("label", "iou", "detector"):
        _shape(name, arrays[name], (u,))
    if arrays["label"].size and not (0 <= arrays["label"].min() and arrays["label"].max() < n_lab):
        raise ValueError(f"label: expected label indices in [0, {n_lab}), got values in "
                         f"[{arrays['label'].min()}, {arrays['label'].max()}]")
    if "iou_all" in arrays:
        _shape("iou_all", arrays["iou_all"], (u, n_lab))
    _shape("top_probe", arrays["top_probe"], (u, None))
    _shape("top_thumbs", arrays["top_thumbs"], (u, None))
    t = arrays["top_thumbs"].shape[1]
    _shape("top_masks", arrays["top_masks"], (u, t, None, None))
    if "probe_images" in arrays:
        pi = arrays["probe_images"]
        s = arrays["top_masks"].shape[2:]
        _shape("probe_images", pi, (None, 3, s[0], s[1]))
        if "probe_index" in arrays:
            _shape("probe_index", arrays["probe_index"], (pi.shape[0],))
        if arrays["top_thumbs"].size and arrays["top_thumbs"].max() >= pi.shape[0]:
            raise ValueError(f"top_thumbs: expected indices into the {pi.shape[0]} probe_images,"
                             f" got {arrays['top_thumbs'].max()}")
    for name in ("baseline_label", "baseline_iou"):
        if name in arrays:
            _shape(name, arrays[name], (u,))
    if "baseline_unique" in arrays:
        _shape("baseline_unique", arrays["baseline_unique"], (len(categories),))
    if "image" in arrays and arrays["image"].ndim != 3:
        raise ValueError(f"image: expected a (C, H, W) picture, got shape {arrays['image'].shape}")


def _summarize(record: Record, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    meta, arrays = record.meta, record.arrays
    categories = list(meta["categories"])
    unique = {c: int(meta["unique_detectors"][c]) for c in categories}
    label = arrays["label"].astype(np.int64)
    detector = arrays["detector"].astype(bool)
    # per concept: how many units detect it (the concept x epoch heat map)
    concepts = np.bincount(label[detector], minlength=len(meta["labels"]))
    base = arrays.get("baseline_unique")
    prev_labels = None if previous is None else previous.get("unit_label")
    switches = (int(np.sum(np.asarray(prev_labels) != label))
                if isinstance(prev_labels, list) and len(prev_labels) == len(label) else None)
    return {
        "unique": unique,
        "baseline": None if base is None else dict(zip(categories, (int(v) for v in base),
                                                       strict=True)),
        "detectors": int(detector.sum()),
        "concepts": [int(v) for v in concepts],
        "unit_label": [int(v) for v in label],
        "unit_iou": encode.round_list(arrays["iou"]),
        "switches": switches,
        # no predicted/thumb/fidelity: a layer has none, and only instance kinds owe them
        "headline": float(sum(unique.values())),  # generic charts expect a float
    }


KIND = kinds.register(kinds.Kind(
    name=NAME,
    version=VERSION,
    subject="layer",
    arrays=ARRAYS,
    optional=frozenset({"iou_all"}),
    per_subject=PER_SUBJECT,
    summarize=_summarize,
    validate=_validate,
    summary_fields={"unique": "dict", "baseline": "dict?", "detectors": "count",
                    "concepts": "classes", "unit_label": "classes", "unit_iou": "numbers",
                    "switches": "number?"},
    headline="unique detectors (distinct concepts detected by the layer's units)",
    higher_is_better=True,
))


# ---- backends' hooks ------------------------------------------------------------------------
def _metrics(record: Record, summary: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"unique_detectors": summary["headline"],
                           "detectors": summary["detectors"]}
    out.update({f"unique_detectors_{c}": n for c, n in summary["unique"].items()})
    return out


def _units_per_category(categories: list[str], unit_category: np.ndarray) -> dict[str, int]:
    return {c: int(np.sum(unit_category == c)) for c in categories}


def _signal(record: Record) -> signals.ConceptSignal:
    meta, arrays = record.meta, record.arrays
    categories = list(meta["categories"])
    label_category = np.asarray(meta["label_category"] + [""], dtype=object)
    labels = arrays["label"].astype(np.int64)
    # a unit that is no detector gets "" (index -1 -> the appended "")
    unit = np.where(arrays["detector"].astype(bool), labels, -1)
    unit_category = label_category[unit]
    baseline = None
    if "baseline_label" in arrays and "baseline_iou" in arrays:
        base = np.where(arrays["baseline_iou"] > float(meta["iou_threshold"]),
                        arrays["baseline_label"].astype(np.int64), -1)
        baseline = _units_per_category(categories, label_category[base])
    return signals.ConceptSignal(record.subject, int(meta["shape"][0]),
                                 _units_per_category(categories, unit_category), baseline,
                                 unit_category)


signals.register(NAME, _signal)
mlflow_hooks.register(NAME, mlflow_hooks.MLflowHooks(metrics=_metrics,
                                                     headline_metric="unique_detectors"))

__all__ = ["ARRAYS", "KIND", "MAX_IOU_ENTRIES", "NAME", "PER_SUBJECT", "VERSION"]
