"""Realistic records of every registered kind from seeded random arrays, for every test.

:data:`FACTORIES` maps each kind to its factory ``(instance_id, step, **kw) -> record``; the sink
contract runs once per entry, so a new kind adds its factory here.

The record format is real; only the numbers are synthetic. Records of the same instance share
their image and neighbour images across steps (as DeepVID's fixed neighbours do), while the
probabilities, weights and neighbour labels drift with ``step`` so that the predicted class
changes now and then.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from deepvid_plugin.core.record import SCHEMA_VERSION, Record
from deepvid_plugin.methods.deepvid.record import ExplanationRecord

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
                trustworthy: bool | None = None, evidence: bool = False,
                better_than_random: bool | None = None) -> ExplanationRecord:
    """One record of ``instance_id`` at ``step``; equal arguments give equal records.

    ``label`` defaults to a class derived from the instance (pass ``None`` for unknown).
    ``trustworthy`` defaults to a seeded coin flip weighted towards True.
    ``evidence=True`` adds the faithfulness evidence (deletion/insertion curves and AUCs next to
    a random map's, ``better_than_random``, ``trust_reason``) as the current DeepVID writes it;
    without it the record looks like one of an older version. ``better_than_random`` forces the
    verdict (default: a seeded coin flip weighted towards True); a map no better than random
    is never trustworthy.
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
    if evidence:
        fidelity.update(_evidence(per_step, teacher, better_than_random))
        fidelity["trustworthy"] = bool(trustworthy and fidelity["better_than_random"])
        fidelity["trust_reason"] = (
            None if fidelity["trustworthy"]
            else "the map is no better than a random map at deletion/insertion"
            if not fidelity["better_than_random"]
            else f"the student agrees with the model on only {agreement:.0%} of held-out "
                 "neighbours")
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


def _evidence(rng: np.random.Generator, teacher: np.ndarray,
              better_than_random: bool | None, steps: int = 12) -> dict:
    """Deletion/insertion curves shaped like real ones: deletion falls from p(x) to p(blank),
    insertion rises from p(blank) to p(x); a good map falls (rises) early, a random one late."""
    if better_than_random is None:
        better_than_random = bool(rng.random() < 0.8)
    p_x, p_blank = float(teacher.max()), float(0.1 * rng.random())
    t = np.linspace(0.0, 1.0, steps + 1)

    def curve(speed: float) -> np.ndarray:  # 1 at t=0 down to 0 at t=1, faster for larger speed
        return (1 - t) ** speed

    fast, slow = 4.0 + rng.random(), 0.8 + 0.2 * rng.random()
    good, rand = (fast, slow) if better_than_random else (slow * 0.9, slow)
    deletion = p_blank + (p_x - p_blank) * curve(good)
    insertion = p_x - (p_x - p_blank) * curve(good)
    r_deletion = p_blank + (p_x - p_blank) * curve(rand)
    r_insertion = p_x - (p_x - p_blank) * curve(rand)
    def auc(c: np.ndarray) -> float:  # trapezoid rule (np.trapezoid needs numpy >= 2)
        return float(((c[1:] + c[:-1]) / 2 * np.diff(t)).sum())

    return {"deletion_auc": auc(deletion), "insertion_auc": auc(insertion),
            "random_deletion_auc": auc(r_deletion), "random_insertion_auc": auc(r_insertion),
            "deletion_curve": deletion.tolist(), "insertion_curve": insertion.tolist(),
            "evidence_steps": steps, "better_than_random": bool(better_than_random)}


def make_run(instance_ids=("a", "b"), steps=range(3), **kwargs) -> list[ExplanationRecord]:
    """Records of several instances over several steps (step-major, as a callback logs them)."""
    return [make_record(i, s, **kwargs) for s in steps for i in instance_ids]


def make_gradcam_record(instance_id: str = "a", step: int = 0, n_classes: int = 10,
                        size: int = 28, channels: int = 1, seed: int = 0, label=_DEFAULT,
                        schema_version: int = SCHEMA_VERSION, class_names=None,
                        evidence: bool = True, cam_true: bool = True, kind_version: int = 2,
                        **_ignored) -> Record:
    """A ``gradcam`` record of ``instance_id`` at ``step``; equal arguments give equal records.

    The instance image is fixed per instance (as the kind stores it once per subject); the maps,
    probabilities and prediction drift with ``step``. Arguments only other kinds use (``n_shown``,
    ``trustworthy``) are accepted and ignored, so contract tests can pass one set to every kind.
    """
    from deepvid_plugin.core import kinds

    fixed = _rng("instance", instance_id, seed, n_classes, size, channels)
    per_step = _rng("gradcam", instance_id, seed, step)
    default_label = int(fixed.integers(n_classes))
    if label is _DEFAULT:
        label = default_label
    image = fixed.random((channels, size, size)).astype(np.float32)
    logits = per_step.standard_normal(n_classes)
    logits[label if label is not None else 0] += 2.0 + 0.1 * step
    probs = np.exp(logits) / np.exp(logits).sum()
    arrays = {"image": image, "probs": probs,
              "cam_pred": np.maximum(_smooth(per_step, (size, size)), 0)}
    if cam_true:
        arrays["cam_true"] = np.maximum(_smooth(per_step, (size, size)), 0)
    names = list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
    meta = {"class_names": names, "label": label, "pred": int(np.argmax(probs)),
            "layer": "features.3",
            "evidence": _evidence(per_step, probs, None) if evidence else None}
    record = Record(kind="gradcam", subject=instance_id, step=step, arrays=arrays, meta=meta,
                    settings={"method": "gradcam", "layer": None, "evidence_steps": 12,
                              "seed": seed},
                    kind_version=kind_version, schema_version=schema_version)
    if kind_version > kinds.get("gradcam").version:  # a newer writer: not valid for this registry
        return record
    return kinds.prepare(record)[1]  # arrays in their stored dtypes, as readers give them back


#: kind -> factory of a realistic record of that kind (every registered kind has one).
FACTORIES = {"deepvid": make_record, "gradcam": make_gradcam_record}


def make_cam_agreement_record(instance_id: str = "a", step: int = 0, n_classes: int = 10,
                              size: int = 28, channels: int = 1, seed: int = 0, label=_DEFAULT,
                              schema_version: int = SCHEMA_VERSION, class_names=None,
                              evidence: bool = True, kind_version: int = 1, top_k: int = 3,
                              **_ignored) -> Record:
    """A ``cam_agreement`` record of ``instance_id`` at ``step``; equal arguments give equal
    records. The teacher's maps are fixed per instance; the student's drift towards them as
    ``step`` grows (as distillation should make them), so Pearson and IoU rise over steps."""
    from deepvid_plugin.core import kinds
    from deepvid_plugin.methods.cam_agreement.explainer import pearson, top_iou

    fixed = _rng("instance", instance_id, seed, n_classes, size, channels)
    per_step = _rng("cam_agreement", instance_id, seed, step)
    default_label = int(fixed.integers(n_classes))
    if label is _DEFAULT:
        label = default_label
    image = fixed.random((channels, size, size)).astype(np.float32)
    t_logits = fixed.standard_normal(n_classes)
    t_logits[label if label is not None else 0] += 3.0
    classes = np.argsort(-t_logits, kind="stable")[:top_k]
    s_logits = t_logits + per_step.standard_normal(n_classes) / (1 + step)
    cam_t = np.maximum(_smooth(fixed, (top_k, size, size)), 0)
    w = step / (step + 2.0)
    cam_s = np.maximum(w * _smooth(fixed, (top_k, size, size))
                       + (1 - w) * _smooth(per_step, (top_k, size, size)), 0)
    softmax = lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum()  # noqa: E731
    pred, teacher_pred = int(np.argmax(s_logits)), int(classes[0])
    names = list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
    meta = {"class_names": names, "label": label, "pred": pred, "teacher_pred": teacher_pred,
            "agree": pred == teacher_pred,
            "pearson": [pearson(cam_t[j], cam_s[j]) for j in range(top_k)],
            "iou": [top_iou(cam_t[j], cam_s[j]) for j in range(top_k)], "iou_fraction": 0.2,
            "teacher_layer": "layer4", "student_layer": "features.6",
            "evidence": _evidence(per_step, softmax(s_logits), None) if evidence else None,
            "history": []}
    arrays = {"image": image, "classes": classes, "cam_teacher": cam_t, "cam_student": cam_s,
              "teacher_probs": softmax(t_logits), "student_probs": softmax(s_logits)}
    record = Record(kind="cam_agreement", subject=instance_id, step=step, arrays=arrays,
                    meta=meta, settings={"method": "cam_agreement", "top_k": top_k, "seed": seed},
                    kind_version=kind_version, schema_version=schema_version)
    if kind_version > 1:  # stands for a newer writer: not valid for this version's registry
        return record
    return kinds.prepare(record)[1]


FACTORIES["cam_agreement"] = make_cam_agreement_record


def make_netdissect_record(layer: str = "features.0", step: int = 0, size: int = 28,
                           channels: int = 1, seed: int = 0, units: int = 6, probe: int = 8,
                           schema_version: int = SCHEMA_VERSION, class_names=None,
                           kind_version: int = 1, **_ignored) -> Record:
    """A ``netdissect`` record of ``layer`` at ``step``; equal arguments give equal records.

    The probe thumbnails, the random baseline and the row picture are fixed per layer (stored once
    per subject); unit labels and IoUs drift with ``step``, and IoUs grow with it (training makes
    units interpretable), so detectors appear and labels switch now and then.
    """
    from deepvid_plugin.core import kinds

    labels = ["red", "green", "blue", "circle", "square", "stripes"]
    cats = ["color", "color", "color", "object", "object", "texture"]
    categories = ["color", "object", "texture"]
    fixed = _rng("layer", layer, seed, size, channels, units)
    per_step = _rng("netdissect", layer, seed, step)
    s, t = 8, 2
    label = per_step.integers(len(labels), size=units)
    iou = np.clip(0.02 + 0.01 * step + 0.03 * per_step.random(units), 0, 1)
    detector = iou > 0.04
    unique = {c: len({int(label[u]) for u in range(units)
                      if detector[u] and cats[label[u]] == c}) for c in categories}
    base_label = fixed.integers(len(labels), size=units)
    base_iou = 0.03 * fixed.random(units)
    arrays = {
        "label": label, "iou": iou, "detector": detector,
        "iou_all": per_step.random((units, len(labels))) * 0.1,
        "top_probe": per_step.integers(probe, size=(units, t)),
        "top_thumbs": per_step.integers(4, size=(units, t)),
        "top_masks": per_step.random((units, t, s, s)) > 0.8,
        "probe_images": fixed.integers(256, size=(4, 3, s, s)),
        "probe_index": np.arange(4) * 2,
        "baseline_label": base_label, "baseline_iou": base_iou,
        "baseline_unique": np.array([len({int(base_label[u]) for u in range(units)
                                          if base_iou[u] > 0.04 and cats[base_label[u]] == c})
                                     for c in categories]),
        "image": fixed.random((channels, size, size)),
    }
    names = list(class_names) if class_names is not None else [str(k) for k in range(10)]
    meta = {"layer": layer, "shape": [units, 4, 4], "labels": labels, "label_category": cats,
            "categories": categories, "unique_detectors": unique, "quantile": 0.005,
            "iou_threshold": 0.04, "n_probe": probe, "class_names": names, "label": None}
    record = Record(kind="netdissect", subject=layer, step=step, arrays=arrays, meta=meta,
                    settings={"method": "netdissect", "quantile": 0.005, "seed": seed},
                    kind_version=kind_version, schema_version=schema_version)
    if kind_version > 1:  # stands for a newer writer: not valid for this version's registry
        return record
    return kinds.prepare(record)[1]


FACTORIES["netdissect"] = make_netdissect_record


def make_summit_record(instance_id: str = "a", step: int = 0, n_classes: int = 10,
                       size: int = 28, channels: int = 1, seed: int = 0, label=_DEFAULT,
                       schema_version: int = SCHEMA_VERSION, class_names=None,
                       kind_version: int = 1, n_layers: int = 2, layer_channels: int = 8,
                       nodes_per_layer: int = 3, examples: int = 2, probe_per_class: int = 3,
                       **_ignored) -> Record:
    """A ``summit`` record of the class ``instance_id`` at ``step``; equal arguments give equal
    records. The probe thumbnails and the row image are fixed per class (stored once per
    subject); the graph's nodes, edges and counts drift with ``step``; the stability is None at
    step 0 (no previous graph) and a number in [0, 1] after."""
    from deepvid_plugin.core import kinds

    fixed = _rng("summit", instance_id, seed, n_classes, size, channels)
    per_step = _rng("summit-step", instance_id, seed, step)
    default_label = int(fixed.integers(n_classes))
    if label is _DEFAULT or label is None:  # a class subject always has its index
        label = default_label
    layers = [f"features.{3 * i}" for i in range(n_layers)] + ["head.2"]
    sizes = [layer_channels] * n_layers + [n_classes]
    n_probe = probe_per_class * n_classes
    node_layer, node_channel = [], []
    for li in range(n_layers):
        picked = per_step.choice(layer_channels, size=nodes_per_layer, replace=False)
        node_layer += [li] * nodes_per_layer
        node_channel += sorted(int(c) for c in picked)
    node_layer.append(n_layers)
    node_channel.append(label)
    n = len(node_layer)
    src, dst = [], []
    for li in range(n_layers):  # each node feeds one or two nodes of the next layer
        ins = [i for i in range(n) if node_layer[i] == li]
        outs = [i for i in range(n) if node_layer[i] == li + 1]
        for i in ins:
            for o in per_step.choice(outs, size=min(len(outs), 1 + int(per_step.integers(2))),
                                     replace=False):
                src.append(i)
                dst.append(int(o))
    counts = per_step.integers(1, 20, size=len(src))
    examples_arr = per_step.integers(-1, n_probe, size=n * examples)
    names = list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
    arrays = {
        "node_layer": node_layer, "node_channel": node_channel,
        "node_activation": per_step.integers(0, 20, size=n),
        "node_pagerank": per_step.random(n) / n, "node_examples": examples_arr,
        "edge_source": src, "edge_target": dst, "edge_weight": counts / 20.0,
        "edge_count": counts,
        "activation": per_step.integers(0, 20, size=layer_channels * n_layers),
        "probe": fixed.integers(256, size=(probe_per_class, channels, size, size)),
        "image": fixed.random((channels, size, size)),
    }
    meta = {"class_names": names, "label": label, "class": instance_id, "layers": layers,
            "channels": sizes, "head": layers[-1], "images": 20,
            "examples_per_node": examples, "probe_counts": [probe_per_class] * n_classes,
            "stability": None if step == 0 else float(per_step.random()),
            "previous_step": None if step == 0 else step - 1}
    record = Record(kind="summit", subject=instance_id, step=step, arrays=arrays, meta=meta,
                    settings={"per_class": 20, "top_share": 0.03, "seed": seed},
                    kind_version=kind_version, schema_version=schema_version)
    if kind_version > 1:  # stands for a newer writer: not valid for this version's registry
        return record
    return kinds.prepare(record)[1]


FACTORIES["summit"] = make_summit_record


def make_attribution_record(instance_id: str = "a", step: int = 0, n_classes: int = 10,
                            size: int = 28, channels: int = 1, seed: int = 0, label=_DEFAULT,
                            schema_version: int = SCHEMA_VERSION, class_names=None,
                            evidence: bool = True, kind_version: int = 1, targets: int = 1,
                            **_ignored) -> Record:
    """An ``attribution`` record of ``instance_id`` at ``step``; equal arguments give equal
    records. Its maps are signed (an attribution can speak against a class); ``targets``
    further explained classes get maps of their own."""
    from deepvid_plugin.core import kinds

    fixed = _rng("instance", instance_id, seed, n_classes, size, channels)
    per_step = _rng("attribution", instance_id, seed, step)
    default_label = int(fixed.integers(n_classes))
    if label is _DEFAULT:
        label = default_label
    image = fixed.random((channels, size, size)).astype(np.float32)
    logits = per_step.standard_normal(n_classes)
    logits[label if label is not None else 0] += 2.0 + 0.1 * step
    probs = np.exp(logits) / np.exp(logits).sum()
    pred = int(np.argmax(probs))
    arrays = {"image": image, "probs": probs, "map_pred": _smooth(per_step, (size, size))}
    if label is not None:
        arrays["map_true"] = _smooth(per_step, (size, size))
    others = [c for c in np.argsort(-probs, kind="stable") if c not in (pred, label)][:targets]
    if others:
        arrays["classes"] = np.asarray(others, np.int32)
        arrays["maps"] = _smooth(per_step, (len(others), size, size))
    names = list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
    meta = {"class_names": names, "label": label, "pred": pred, "method": "integrated_gradients",
            "outputs": "logits",
            "evidence": _evidence(per_step, probs, None) if evidence else None}
    record = Record(kind="attribution", subject=instance_id, step=step, arrays=arrays, meta=meta,
                    settings={"method": "attribution", "name": "integrated_gradients",
                              "evidence_steps": 12, "seed": seed},
                    kind_version=kind_version, schema_version=schema_version)
    if kind_version > kinds.get("attribution").version:  # a newer writer
        return record
    return kinds.prepare(record)[1]


FACTORIES["attribution"] = make_attribution_record


def step_part(record: Any) -> Record:
    """What a step file holds of ``record``: its envelope without the arrays stored once per
    subject (for deepvid kind version 2, the instance image and the neighbour images), so a
    record read back from a step file compares with the one written."""
    from deepvid_plugin.core import kinds

    env = record.to_record() if hasattr(record, "to_record") else record
    return env.without(kinds.get(env.kind).per_subject)


def make_alert_record(instance_id: str = "run", step: int = 0, seed: int = 0,
                      schema_version: int = SCHEMA_VERSION, class_names=None,
                      **_ignored) -> Record:
    """An ``alert`` record at ``step`` (its subject is the run; ``instance_id`` names it so
    contract tests can pass one set of arguments to every kind): one hot-spot alert."""
    from deepvid_plugin.core import kinds

    alert = {"detector": "hot_spot", "kind": "deepvid", "subject": "run",
             "message": f"step {step}: the model looks at the top-left corner (seed {seed})",
             "evidence": {"instances": ["a", "b"], "share": 0.75 + 0.01 * step}}
    record = Record(kind="alert", subject=instance_id, step=step, arrays={},
                    meta={"alerts": [alert], "class_names": list(class_names) if class_names
                          is not None else [str(k) for k in range(10)]},
                    settings={"detectors": ["hot_spot"]},
                    schema_version=schema_version)
    return kinds.prepare(record)[1]


FACTORIES["alert"] = make_alert_record
