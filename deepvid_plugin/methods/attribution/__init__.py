"""Bring your own attribution: any ``(model, x, targets) -> maps`` function (a captum method, a
pytorch-grad-cam object, your own) as an explanation kind with Grad-CAM's timeline, evidence,
trust rule and compare view.

Exports load lazily, so ``methods.attribution.kind`` imports without torch."""

from deepvid_plugin.core.lazy import exports

_EXPORTS = {"Attribution": "engine", "AttributionResult": "engine",
            "AttributionExplainer": "explainer"}
__all__ = sorted(_EXPORTS)
__getattr__ = exports(__name__, _EXPORTS)
