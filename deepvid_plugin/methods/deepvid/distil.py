"""From the teacher's logits on an instance's neighbourhood to DeepVID's records: the student, its
fidelity, the faithfulness evidence, and what each record keeps.

Two students, one procedure (:mod:`~deepvid_plugin.methods.deepvid.student`): over pixels (the
paper; rows are the flattened neighbours, the instance added as a fitting row) and over regions
(rows are the on/off masks, the instance is row 0: every region on). Records keep the weight maps of
:func:`stored_classes` only, so a 1000-class model's record stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from deepvid_plugin.core.faithfulness import evidence
from deepvid_plugin.methods.deepvid.fidelity import apply_trust_rule, fidelity_metrics
from deepvid_plugin.methods.deepvid.lbfgs import softmax_classes
from deepvid_plugin.methods.deepvid.record import ExplanationRecord
from deepvid_plugin.methods.deepvid.regions import Regions
from deepvid_plugin.methods.deepvid.student import fit_students

if TYPE_CHECKING:
    from deepvid_plugin.methods.deepvid.engine import DeepVID

#: shown neighbours are stored at most this many pixels on a side (the UI draws them at 44 px).
SHOWN_SIDE = 64


def stored_classes(probs: torch.Tensor, label: int | None, n: int | None) -> np.ndarray:
    """Sorted indices of the classes a record keeps maps of: the ``n`` most probable (the
    predicted one first among them) and the true class; every class when there are at most
    ``n`` (or ``n`` is None)."""
    c = probs.shape[-1]
    if n is None or n >= c:
        return np.arange(c)
    keep = set(torch.argsort(probs, descending=True, stable=True)[:n].tolist())
    if label is not None:
        keep.add(int(label))
    return np.array(sorted(keep))


def distil_pixels(engine: DeepVID, x: torch.Tensor, nb: torch.Tensor, logits: torch.Tensor, *,
                  ids: Sequence[str], labels: Sequence[int] | None, class_names: Sequence[str],
                  step: int, model: Any, settings: dict) -> list[ExplanationRecord]:
    """The paper's student over pixels: ``nb`` (K, M, C, H, W) neighbours, ``logits`` (K, M+1,
    classes) on the instance then its neighbours."""
    k = nb.shape[0]
    fit_idx, hold_idx = engine._split(ids)
    inst_logits, nb_logits = logits[:, 0], logits[:, 1:]
    flat = nb.flatten(2)  # (K, M, D)
    # The instance itself is a fitting row too: VAE neighbours are smoother than real images,
    # and without this anchor a linear student can extrapolate wrongly to the crisp instance
    # (measured on 48 digits at default settings: instance agreement 45/48 -> 48/48,
    # trustworthy 45/48 -> 47/48).
    fit_x = torch.cat([x.flatten(1).unsqueeze(1), flat[:, fit_idx]], 1)
    fit_logits = torch.cat([inst_logits.unsqueeze(1), nb_logits[:, fit_idx]], 1)
    student = fit_students(fit_x, fit_logits, engine.temperature, l2=engine.l2,
                           refine_steps=engine.refine_steps,
                           state=engine._solver_state(fit_x, ids))
    t_hold = softmax_classes(nb_logits[:, hold_idx].double())
    s_hold = softmax_classes(student.logits(flat[:, hold_idx]).double())
    t_inst = F.softmax(inst_logits.double(), -1)
    s_inst = F.softmax(student.logits(x.flatten(1).unsqueeze(1).float()).squeeze(1).double(), -1)
    c, h, w = x.shape[1:]
    weights = student.weight.transpose(1, 2).reshape(k, -1, c, h, w)  # (K, classes, C, H, W)
    top = t_inst.argmax(-1)
    # The map the UI draws and the evidence scores: the linear contribution w[pred] * x.
    contribution = (weights[torch.arange(k), top] * x).sum(1)  # (K, H, W)
    # Shown neighbours are exactly the images the teacher labelled (jitter included): the
    # labels next to them are the teacher's and the student's on those very images.
    shown = hold_idx[: engine.n_shown]
    return _records(engine, x, t_hold, s_hold, t_inst, s_inst, contribution,
                    [weights[i] for i in range(k)], None, [nb[i, shown] for i in range(k)],
                    student.bias, student.l2, ids=ids, labels=labels, class_names=class_names,
                    step=step, model=model, settings=settings)


def distil_regions(engine: DeepVID, x: torch.Tensor, regions: Sequence[Regions],
                   logits: torch.Tensor, *, ids: Sequence[str], labels: Sequence[int] | None,
                   class_names: Sequence[str], step: int, model: Any,
                   settings: dict) -> list[ExplanationRecord]:
    """The student over regions: ``logits`` (K, M, classes) on each instance's neighbours, row 0
    the instance itself."""
    k, m = logits.shape[:2]
    f_max = max(r.n_features for r in regions)
    # Instances have different region counts: pad with regions that are never on (their
    # columns are zero, so their weights stay exactly zero).
    z = torch.zeros(k, m, f_max)
    for i, r in enumerate(regions):
        z[i, :, : r.n_features] = r.masks.float()
    fit_idx, hold_idx = engine._split(ids)
    student = fit_students(z[:, fit_idx], logits[:, fit_idx], engine.temperature, l2=engine.l2,
                           refine_steps=engine.refine_steps,
                           state=engine._solver_state(z[:, fit_idx], ids))
    t_hold = softmax_classes(logits[:, hold_idx].double())
    s_hold = softmax_classes(student.logits(z[:, hold_idx]).double())
    t_inst = F.softmax(logits[:, 0].double(), -1)
    s_inst = F.softmax(student.logits(z[:, :1]).squeeze(1).double(), -1)
    weights = student.weight.transpose(1, 2)  # (K, classes, F_max)
    top = t_inst.argmax(-1)
    # A region's weight is what switching it on adds to the class's logit: drawn back onto its
    # pixels, that is the map the UI draws and the evidence scores.
    maps = torch.stack([weights[i, top[i], : r.n_features][r.segments]
                        for i, r in enumerate(regions)])
    shown = hold_idx[: engine.n_shown]
    return _records(engine, x, t_hold, s_hold, t_inst, s_inst, maps,
                    [weights[i, :, : r.n_features] for i, r in enumerate(regions)],
                    [r.segments for r in regions], [r.images(shown) for r in regions],
                    student.bias, student.l2, ids=ids, labels=labels, class_names=class_names,
                    step=step, model=model, settings=settings)


def _records(engine: DeepVID, x, t_hold, s_hold, t_inst, s_inst, maps, weights, segments, shown,
             bias, l2, *, ids, labels, class_names, step, model,
             settings) -> list[ExplanationRecord]:
    k = x.shape[0]
    top = t_inst.argmax(-1)
    fid = fidelity_metrics(t_hold, s_hold, top, top == s_inst.argmax(-1))
    # Region maps are scored against random maps over the same regions (like for like).
    ev = evidence(model, x, maps, top, ids, seed=engine.seed, batch_size=engine.batch_size,
                  outputs=engine.outputs, output_transform=engine.output_transform,
                  segments=None if segments is None else torch.stack(list(segments)))
    # How much the neighbourhood moves the teacher: the spread of its top-class probability
    # over the held-out neighbours (near 0: the student had nothing to learn from).
    spread = t_hold.gather(-1, top.view(-1, 1, 1).expand(-1, t_hold.shape[1], 1)).squeeze(-1)
    # one instance at a time: a batched reduction can differ in the last bit with the batch
    spread = torch.stack([row.std() for row in spread])
    fid = [apply_trust_rule({**f, **e, "spread": float(s)})
           for f, e, s in zip(fid, ev, spread, strict=True)]
    records = []
    for i in range(k):
        label = None if labels is None else labels[i]
        keep = stored_classes(t_inst[i], label, engine.store_classes)
        records.append(ExplanationRecord(
            instance_id=ids[i], step=int(step), class_names=tuple(class_names),
            image=x[i].numpy(), teacher_probs=t_inst[i].float().numpy(),
            student_probs=s_inst[i].float().numpy(),
            weights=weights[i][torch.from_numpy(keep)].numpy(), classes=keep,
            segments=None if segments is None else segments[i].numpy(),
            bias=bias[i].numpy(), fidelity=fid[i],
            neighbours=_display(shown[i]).numpy(),
            neighbour_teacher=t_hold[i, : len(shown[i])].argmax(-1).numpy(),
            neighbour_student=s_hold[i, : len(shown[i])].argmax(-1).numpy(),
            settings={**settings, "l2": float(l2[i])}, label=label))
    return records


def _display(images: torch.Tensor) -> torch.Tensor:
    """Shown neighbours at most SHOWN_SIDE pixels on a side (area-downsampled): at 224 px, 32
    full-size neighbours would be 9.6 MB per instance for 44-px thumbnails."""
    h, w = images.shape[-2:]
    if max(h, w) <= SHOWN_SIDE or images.shape[0] == 0:
        return images
    scale = SHOWN_SIDE / max(h, w)
    return F.interpolate(images, size=(max(1, round(h * scale)), max(1, round(w * scale))),
                         mode="area")


__all__ = ["SHOWN_SIDE", "distil_pixels", "distil_regions", "stored_classes"]
