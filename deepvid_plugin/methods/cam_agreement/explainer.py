"""Teacher-vs-student CAM agreement during distillation (Exp-KD, Pattern Recognition 2024).

In a distillation run the callback's model is the **student**; :class:`CAMAgreement` is given the
teacher and, at each explained epoch, records for every tracked instance (kind
``cam_agreement``, :mod:`deepvid_plugin.methods.cam_agreement.kind`):

- both networks' CAMs for the teacher's top-k classes, read from each network's features and
  classifier weights exactly as :class:`~deepvid_plugin.methods.cam_agreement.loss.CAMDistillLoss` reads them
  (``kd.maps(x)``), ReLU'd and upsampled bilinearly to the input size;
- per top class, the **Pearson correlation** of the two maps over pixels (None when a map is
  constant: a correlation is then undefined, not 0) and the **top-20% IoU**: each map's
  ``ceil(0.2 * H * W)`` highest pixels (ties broken by pixel index, the same way for both, so
  identical maps give IoU 1), intersection over union;
- whether teacher and student agree on the top-1 class;
- the deletion/insertion evidence of the student's map of the teacher's top-1 class, with that
  class as target (:func:`deepvid_plugin.core.faithfulness.evidence`, next to a random map);
- the instance's agreement history, kept across epochs (and in ``state_dict`` for resume), so
  each record can draw its agreement over epochs by itself.

Leaving both networks as found: :meth:`CAMDistillLoss.maps` puts teacher and student in eval mode
under ``no_grad`` with every ``training`` flag restored, and removes its forward hooks in a
``finally``; this module adds the RNG guard and runs the evidence in eval mode too. No parameter's
``.grad`` is touched (nothing is differentiated).

Teacher and student must live on the same device (one input batch feeds both).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepvid_plugin.core import checks, faithfulness
from deepvid_plugin.core.explainer import ExplainContext
from deepvid_plugin.core.guard import frozen_eval, module_device_dtype, preserved_rng
from deepvid_plugin.core.outputs import check_outputs, check_transform, probabilities
from deepvid_plugin.core.record import Record
from deepvid_plugin.methods.cam_agreement.kind import KIND
from deepvid_plugin.methods.cam_agreement.loss import CAMDistillLoss

__all__ = ["CAMAgreement", "pearson", "top_iou"]

#: the share of pixels each map's "top" set keeps for the IoU.
TOP_FRACTION = 0.2


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two maps over their pixels; None when either is constant."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"b: expected a map of {a.size} pixels like a, got {b.size}")
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    # relative to the maps' own magnitude: float noise on a constant map is not a correlation
    if denom <= 1e-12 * max(float(np.abs(a).max()), float(np.abs(b).max()), 1e-30) ** 2 * a.size:
        return None
    return float(np.clip(float(a @ b) / denom, -1.0, 1.0))


def top_iou(a: np.ndarray, b: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """IoU of the ``ceil(fraction * n)`` highest pixels of each map (ties by pixel index)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"b: expected a map of {a.size} pixels like a, got {b.size}")
    n_top = max(1, math.ceil(fraction * a.size))
    # stable sort of the negated map: the highest first, equal values in pixel order
    top_a = set(np.argsort(-a, kind="stable")[:n_top].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:n_top].tolist())
    return len(top_a & top_b) / len(top_a | top_b)


class CAMAgreement:
    """The ``cam_agreement`` explainer: run it in a distillation run whose callback model is the
    student (see the module docstring).

    Args:
        teacher: the teacher network (``nn.Module`` returning logits).
        teacher_layer, student_layer: each network's feature layer (module or dotted name), as
            for :class:`~deepvid_plugin.methods.cam_agreement.loss.CAMDistillLoss`; a module given for the student
            must be a submodule of the model the callback explains.
        top_k: how many of the teacher's top classes to record maps for (capped at the number
            of classes); agreement numbers are given for each, the headline is the top-1's.
        every_n_epochs: explained at epochs 0, N, 2N, ...
        teacher_head, student_head: the classifier ``nn.Linear`` of each (None: the last one).
        evidence_steps: deletion/insertion steps of the student map's evidence (None: off).
        seed: seeds the random-map baseline of the evidence.
        batch_size: instances per forward pass.
        teacher_reshape, student_reshape, outputs, output_transform: as for
            :class:`~deepvid_plugin.methods.cam_agreement.loss.CAMDistillLoss` (token layers,
            multi-label networks, non-tensor outputs); ``outputs="sigmoid"`` also makes the
            records' probabilities and the evidence's target probability each class's sigmoid.

    :meth:`from_loss` builds one from the :class:`CAMDistillLoss` the run trains with.

    Example::

        >>> import torch
        >>> def cnn():
        ...     return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        ...                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        ...                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                                torch.nn.Linear(8, 3))
        >>> from deepvid_plugin.explain import CAMAgreement, ExplainContext
        >>> teacher, student = cnn(), cnn()
        >>> agreement = CAMAgreement(teacher, "3", "3", top_k=2, evidence_steps=None)
        >>> agreement.prepare(ExplainContext(x=torch.rand(2, 3, 8, 8), ids=("a", "b")))
        >>> [r.arrays["cam_student"].shape for r in agreement.explain(student, step=0)]
        [(2, 8, 8), (2, 8, 8)]
    """

    kind = "cam_agreement"

    def __init__(self, teacher: nn.Module, teacher_layer: nn.Module | str,
                 student_layer: nn.Module | str, *, top_k: int = 3, every_n_epochs: int = 1,
                 teacher_head: nn.Module | str | None = None,
                 student_head: nn.Module | str | None = None,
                 evidence_steps: int | None = faithfulness.DEFAULT_STEPS, seed: int = 0,
                 batch_size: int = 64,
                 teacher_reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 student_reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 outputs: str = "logits",
                 output_transform: Callable[[Any], torch.Tensor] | None = None) -> None:
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher: expected a torch.nn.Module, got {type(teacher).__name__}")
        for arg, layer in (("teacher_layer", teacher_layer), ("student_layer", student_layer)):
            if not isinstance(layer, (str, nn.Module)):
                raise TypeError(f"{arg}: expected an nn.Module or a dotted name from "
                                f"named_modules(), got {type(layer).__name__}")
        for arg, head in (("teacher_head", teacher_head), ("student_head", student_head)):
            if head is not None and not isinstance(head, (str, nn.Module)):
                raise TypeError(f"{arg}: expected None, an nn.Linear or its dotted name, got "
                                f"{type(head).__name__}")
        self.teacher = teacher
        self.teacher_layer, self.student_layer = teacher_layer, student_layer
        self.teacher_head, self.student_head = teacher_head, student_head
        self.top_k = checks.integer("top_k", top_k, 1)
        self.every_n_epochs = checks.integer("every_n_epochs", every_n_epochs, 1)
        self.evidence_steps = (None if evidence_steps is None
                               else checks.integer("evidence_steps", evidence_steps, 2))
        self.seed = checks.integer("seed", seed, 0)
        self.batch_size = checks.integer("batch_size", batch_size, 1)
        self.teacher_reshape = check_transform("teacher_reshape", teacher_reshape)
        self.student_reshape = check_transform("student_reshape", student_reshape)
        self.outputs = check_outputs(outputs, ("logits", "sigmoid"))
        self.output_transform = check_transform("output_transform", output_transform)
        self._context: ExplainContext | None = None
        # The loss that reads both networks' CAMs, per student (weakly: never keep a user's
        # model alive); building it resolves and verifies the layers and heads once.
        self._loss: tuple[weakref.ref, CAMDistillLoss] | None = None
        self._history: dict[str, list[dict[str, Any]]] = {}

    @classmethod
    def from_loss(cls, loss: CAMDistillLoss, **kwargs: Any) -> CAMAgreement:
        """The explainer for a run that trains with ``loss``: same teacher, layers and heads
        (``top_k`` defaults to the loss's); other arguments as for the constructor."""
        if not isinstance(loss, CAMDistillLoss):
            raise TypeError(f"loss: expected a deepvid_plugin.methods.cam_agreement.loss.CAMDistillLoss, got "
                            f"{type(loss).__name__}")
        kwargs.setdefault("top_k", loss.top_k)
        kwargs.setdefault("teacher_head", loss.teacher_head_name)
        kwargs.setdefault("student_head", loss.student_head_name)
        for name in ("teacher_reshape", "student_reshape", "outputs", "output_transform"):
            kwargs.setdefault(name, getattr(loss, name))
        return cls(loss.teacher, loss.teacher_layer_name, loss.student_layer_name, **kwargs)

    def settings(self) -> dict[str, Any]:
        def name(v: object) -> str | None:
            return v if isinstance(v, str) or v is None else "<module>"

        return {"method": "cam_agreement", "teacher_layer": name(self.teacher_layer),
                "student_layer": name(self.student_layer), "top_k": self.top_k,
                "iou_fraction": TOP_FRACTION, "evidence_steps": self.evidence_steps,
                "seed": self.seed, "outputs": self.outputs}

    # -- the explainer protocol ------------------------------------------------------------------
    def check_model(self, model: nn.Module, x: torch.Tensor) -> None:
        """Resolve and verify both layers and heads on one instance (the callbacks' early
        check)."""
        device, dtype = module_device_dtype(model)
        with preserved_rng(), frozen_eval(self.teacher, model):
            self._loss_for(model).maps(x[:1].to(device, dtype))

    def prepare(self, context: ExplainContext) -> None:
        self._context = context

    def explain(self, model: nn.Module, step: int) -> list[Record]:
        """One ``cam_agreement`` record per tracked instance; ``model`` is the student."""
        ctx = self._context
        if ctx is None:
            raise RuntimeError("CAMAgreement.explain: call prepare(context) first")
        step = checks.integer("step", step)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected the student, a torch.nn.Module, got "
                            f"{type(model).__name__}")
        loss = self._loss_for(model)
        device, dtype = module_device_dtype(model)
        x = ctx.x
        with preserved_rng(), frozen_eval(self.teacher, model):
            t_maps, s_maps, t_logits, s_logits, top = self._maps(loss, x.to(device, dtype))
            evidence = None
            if self.evidence_steps is not None:
                # on the CPU tensors, as Grad-CAM does: the evidence moves batches to the model
                evidence = faithfulness.evidence(
                    model, x, s_maps[:, 0], top[:, 0], list(ctx.ids),
                    seed=self.seed, steps=self.evidence_steps, batch_size=max(self.batch_size, 512),
                    outputs=self.outputs, output_transform=self.output_transform)
        names = ctx.names_for(t_logits.shape[1])
        if len(names) != t_logits.shape[1]:
            raise ValueError(f"class_names: expected {t_logits.shape[1]} names (one per output of "
                             f"the networks), got {len(names)}")
        t_probs = probabilities(t_logits, self.outputs).float().numpy()
        s_probs = probabilities(s_logits, self.outputs).float().numpy()
        t_np, s_np, top_np = t_maps.numpy(), s_maps.numpy(), top.numpy()
        settings = self.settings()
        out = []
        for i, iid in enumerate(ctx.ids):
            r = [pearson(t_np[i, j], s_np[i, j]) for j in range(top_np.shape[1])]
            u = [top_iou(t_np[i, j], s_np[i, j]) for j in range(top_np.shape[1])]
            teacher_pred, pred = int(top_np[i, 0]), int(s_probs[i].argmax())
            agree = teacher_pred == pred
            history = [h for h in self._history.get(iid, []) if h["step"] != step]
            history.append({"step": step, "pearson": r[0], "iou": u[0], "agree": agree})
            history.sort(key=lambda h: h["step"])
            self._history[iid] = history
            meta = {"class_names": names, "pred": pred, "teacher_pred": teacher_pred,
                    "agree": agree, "pearson": r, "iou": u, "iou_fraction": TOP_FRACTION,
                    "label": None if ctx.labels is None else int(ctx.labels[i]),
                    "teacher_layer": loss.teacher_layer_name,
                    "student_layer": loss.student_layer_name,
                    "evidence": None if evidence is None else evidence[i],
                    "history": [dict(h) for h in history]}
            arrays = {"image": ctx.x[i].numpy(), "classes": top_np[i], "cam_teacher": t_np[i],
                      "cam_student": s_np[i], "teacher_probs": t_probs[i],
                      "student_probs": s_probs[i]}
            out.append(KIND.record(str(iid), step, arrays, meta=meta, settings=settings))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"history": {iid: [dict(h) for h in hs] for iid, hs in self._history.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        history = state.get("history", {}) if isinstance(state, Mapping) else None
        if not isinstance(history, Mapping):
            raise ValueError(f"state['history']: expected a mapping of instance id -> entries, "
                             f"got {type(history).__name__}")
        self._history = {str(k): [dict(h) for h in v] for k, v in history.items()}

    # -- internals -------------------------------------------------------------------------------
    def _loss_for(self, model: nn.Module) -> CAMDistillLoss:
        if self._loss is not None and self._loss[0]() is model:
            return self._loss[1]
        # top_k=2 only satisfies the loss's own check; the explainer picks its classes itself.
        loss = CAMDistillLoss(self.teacher, model, self.teacher_layer, self.student_layer,
                              top_k=2, teacher_head=self.teacher_head,
                              student_head=self.student_head,
                              teacher_reshape=self.teacher_reshape,
                              student_reshape=self.student_reshape, outputs=self.outputs,
                              output_transform=self.output_transform)
        self._loss = (weakref.ref(model), loss)
        return loss

    def _maps(self, loss: CAMDistillLoss, x: torch.Tensor
              ) -> tuple[torch.Tensor, ...]:
        """(teacher maps, student maps) (K, k, H, W) of the teacher's top-k classes (ReLU,
        upsampled to the input), both networks' logits and the top classes, on the CPU."""
        t_out, s_out, t_log, s_log, tops = [], [], [], [], []
        size = tuple(x.shape[-2:])
        for start in range(0, x.shape[0], self.batch_size):
            maps = loss.maps(x[start:start + self.batch_size])
            k = min(self.top_k, maps.teacher_logits.shape[1])
            top = maps.teacher_logits.topk(k, dim=1).indices
            for raw, out in ((maps.teacher, t_out), (maps.student, s_out)):
                picked = raw.gather(1, top[:, :, None, None].expand(-1, -1, *raw.shape[2:]))
                out.append(_upsample(picked.relu(), size))
            t_log.append(maps.teacher_logits.float().cpu())
            s_log.append(maps.student_logits.float().cpu())
            tops.append(top.cpu())
        return (torch.cat(t_out), torch.cat(s_out), torch.cat(t_log), torch.cat(s_log),
                torch.cat(tops))


def _upsample(cam: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    # as CAMDistillLoss and Grad-CAM resize maps: bilinear, align_corners=False
    return F.interpolate(cam.float(), size=size, mode="bilinear",
                         align_corners=False).cpu()
