"""Grad-CAM as an explainer of kind ``gradcam`` (:mod:`deepvid_plugin.core.explainer`), and the
one place its results become records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from deepvid_plugin.core import checks
from deepvid_plugin.core.explainer import ExplainContext
from deepvid_plugin.core.record import Record
from deepvid_plugin.methods.gradcam.engine import GradCAM, GradCAMResult
from deepvid_plugin.methods.gradcam.kind import KIND


class GradCAMExplainer:
    """Grad-CAM as an explainer of kind ``gradcam`` (:mod:`deepvid_plugin.core.explainer`):
    a callback runs it every ``every_n_epochs`` epochs on its tracked instances.

    ``engine`` is a :class:`GradCAM` (its layer, batch size and evidence settings), by default
    ``GradCAM()`` (the last convolution). Its records carry the instance image, the predicted-
    and true-class maps, the model's probabilities and the deletion/insertion evidence.
    Nothing to resume: Grad-CAM keeps no state across epochs.

    Example::

        >>> import torch
        >>> from deepvid_plugin.explain import ExplainContext, GradCAM, GradCAMExplainer
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
        ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                             torch.nn.Linear(4, 3))
        >>> e = GradCAMExplainer(GradCAM(evidence_steps=None))
        >>> e.prepare(ExplainContext(x=torch.rand(2, 1, 8, 8), ids=("a", "b")))
        >>> [(r.kind, r.subject, r.arrays["cam_pred"].shape) for r in e.explain(model, step=3)]
        [('gradcam', 'a', (8, 8)), ('gradcam', 'b', (8, 8))]
    """

    kind = "gradcam"

    def __init__(self, engine: GradCAM | None = None, *, every_n_epochs: int = 1):
        if engine is not None and not isinstance(engine, GradCAM):
            raise TypeError(f"engine: expected a deepvid_plugin.explain.GradCAM or None, got "
                            f"{type(engine).__name__}")
        self.engine = engine if engine is not None else GradCAM()
        self.every_n_epochs = checks.integer("every_n_epochs", every_n_epochs, 1)
        self._context: ExplainContext | None = None

    @property
    def outputs(self) -> str:
        """What the model's logits mean (the engine's ``outputs``)."""
        return self.engine.outputs

    def check_model(self, model: nn.Module, x: Any) -> None:
        """Resolve the layer and run one instance through it (the callbacks' early check)."""
        self.engine.check(model, x)

    def prepare(self, context: ExplainContext) -> None:
        self._context = context

    def explain(self, model: nn.Module, step: int) -> list[Record]:
        ctx = self._context
        if ctx is None:
            raise RuntimeError("GradCAMExplainer.explain: call prepare(context) first")
        labels = ctx.labels if ctx.label_sets is None else _multi_hot(ctx.label_sets, ctx)
        result = self.engine.explain(model, ctx.x, labels=labels, ids=ctx.ids)
        return records(result, checks.integer("step", step),
                       ctx.names_for(result.probs.shape[1]), images=ctx.x,
                       settings=self.engine.settings())

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None


def _multi_hot(sets: Sequence[Sequence[int]], ctx: ExplainContext) -> np.ndarray:
    """The context's label sets as the (K, n_classes) multi-hot matrix the engine takes."""
    n = len(ctx.class_names) if ctx.class_names is not None else \
        max((max(s) for s in sets if s), default=0) + 1
    out = np.zeros((len(sets), n), np.int64)
    for i, s in enumerate(sets):
        out[i, list(s)] = 1
    return out


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def records(result: GradCAMResult, step: int, class_names: Sequence[str], *,
                        images: Any = None, settings: Mapping[str, Any] | None = None
                        ) -> list[Record]:
    """One ``gradcam`` record per instance of ``result``, at ``step``.

    Args:
        result: what ``GradCAM().explain(model, x, labels, ids)`` returned.
        step: the training step or epoch.
        class_names: the model's ``K`` class names (``K`` = ``result.probs.shape[1]``).
        images: ``(K, C, H, W)`` the explained images ``x`` (array or tensor); the overview
            shows each instance with its map. Without it the records carry no image.
        settings: the explainer's settings (``GradCAM().settings()``).
    """
    names = [str(c) for c in class_names]
    probs = np.asarray(result.probs)
    if probs.ndim != 2 or probs.shape[1] != len(names):
        raise ValueError(f"class_names: expected {probs.shape[-1]} names (one per output of the "
                         f"model), got {len(names)}")
    n = len(result.ids)
    if images is not None:
        images = _numpy(images)
        if images.ndim != 4 or images.shape[0] != n:
            raise ValueError(f"images: expected ({n}, C, H, W), the images explained, got shape "
                             f"{images.shape}")
    out = []
    for i, iid in enumerate(result.ids):
        arrays = {"cam_pred": result.cam_pred[i], "probs": probs[i]}
        if result.cam_true is not None:
            arrays["cam_true"] = result.cam_true[i]
        if result.classes is not None and result.cams is not None and result.classes[i]:
            arrays["classes"] = np.asarray(result.classes[i], np.int32)
            arrays["cams"] = result.cams[i]
        if images is not None:
            arrays["image"] = images[i]
        meta = {"class_names": names, "pred": int(result.pred[i]), "layer": result.layer,
                "label": None if result.labels is None else int(result.labels[i]),
                "evidence": None if result.evidence is None else result.evidence[i],
                "outputs": result.outputs}
        if result.label_sets is not None:
            meta["labels"] = [int(c) for c in result.label_sets[i]]
        out.append(KIND.record(str(iid), step, arrays, meta=meta, settings=settings))
    return out


__all__ = ["GradCAMExplainer", "records"]
