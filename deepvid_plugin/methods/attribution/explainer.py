"""An attribution method as an explainer of kind ``attribution``
(:mod:`deepvid_plugin.core.explainer`), and the one place its results become records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from deepvid_plugin.core import checks
from deepvid_plugin.core.explainer import ExplainContext
from deepvid_plugin.core.record import Record
from deepvid_plugin.methods.attribution.engine import Attribution, AttributionResult
from deepvid_plugin.methods.attribution.kind import KIND


class AttributionExplainer:
    """An :class:`Attribution` run by a callback every ``every_n_epochs`` epochs on its tracked
    instances (kind ``attribution``). Nothing to resume: the method keeps no state.

    Example::

        >>> from deepvid_plugin.explain import Attribution
        >>> from deepvid_plugin.callbacks import AttributionExplainer
        >>> explainer = AttributionExplainer(Attribution(lambda m, x, t: x.abs()),
        ...                                  every_n_epochs=2)
    """

    kind = "attribution"

    def __init__(self, engine: Attribution, *, every_n_epochs: int = 1):
        if not isinstance(engine, Attribution):
            raise TypeError(f"engine: expected a deepvid_plugin.explain.Attribution, got "
                            f"{type(engine).__name__}")
        self.engine = engine
        self.every_n_epochs = checks.integer("every_n_epochs", every_n_epochs, 1)
        self._context: ExplainContext | None = None

    @property
    def outputs(self) -> str:
        return self.engine.outputs

    def check_model(self, model: nn.Module, x: Any) -> None:
        """Run the method on one tracked instance (the callbacks' early check)."""
        self.engine.check(model, x)

    def prepare(self, context: ExplainContext) -> None:
        self._context = context

    def explain(self, model: nn.Module, step: int) -> list[Record]:
        ctx = self._context
        if ctx is None:
            raise RuntimeError("AttributionExplainer.explain: call prepare(context) first")
        labels: Any = ctx.labels
        if ctx.label_sets is not None:  # the (K, n_classes) multi-hot matrix the engine takes
            n = len(ctx.class_names) if ctx.class_names is not None else \
                max((max(s) for s in ctx.label_sets if s), default=0) + 1
            labels = np.zeros((len(ctx.label_sets), n), np.int64)
            for i, s in enumerate(ctx.label_sets):
                labels[i, list(s)] = 1
        result = self.engine.explain(model, ctx.x, labels=labels, ids=ctx.ids)
        return records(result, checks.integer("step", step),
                       ctx.names_for(result.probs.shape[1]), images=ctx.x,
                       settings=self.engine.settings())

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None


def records(result: AttributionResult, step: int, class_names: Sequence[str], *,
            images: Any = None, settings: Mapping[str, Any] | None = None) -> list[Record]:
    """One ``attribution`` record per instance of ``result``, at ``step``."""
    names = [str(c) for c in class_names]
    probs = np.asarray(result.probs)
    if probs.ndim != 2 or probs.shape[1] != len(names):
        raise ValueError(f"class_names: expected {probs.shape[-1]} names (one per output of the "
                         f"model), got {len(names)}")
    if images is not None:
        images = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
        if images.ndim != 4 or images.shape[0] != len(result.ids):
            raise ValueError(f"images: expected ({len(result.ids)}, C, H, W), the images "
                             f"explained, got shape {images.shape}")
    out = []
    for i, iid in enumerate(result.ids):
        arrays = {"map_pred": result.map_pred[i], "probs": probs[i]}
        if result.map_true is not None:
            arrays["map_true"] = result.map_true[i]
        if result.classes is not None and result.maps is not None and result.classes[i]:
            arrays["classes"] = np.asarray(result.classes[i], np.int32)
            arrays["maps"] = result.maps[i]
        if images is not None:
            arrays["image"] = images[i]
        meta = {"class_names": names, "pred": int(result.pred[i]), "method": result.method,
                "label": None if result.labels is None else int(result.labels[i]),
                "outputs": result.outputs,
                "evidence": None if result.evidence is None else result.evidence[i]}
        if result.label_sets is not None:
            meta["labels"] = [int(c) for c in result.label_sets[i]]
        out.append(KIND.record(str(iid), step, arrays, meta=meta, settings=settings))
    return out


__all__ = ["AttributionExplainer", "records"]
