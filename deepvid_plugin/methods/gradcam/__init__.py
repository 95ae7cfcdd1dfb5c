"""Grad-CAM (Selvaraju et al., ICCV 2017): where a convolutional layer looks for a class.

Exports load lazily, so ``methods.gradcam.kind`` imports without torch."""

from deepvid_plugin.core.lazy import exports

_EXPORTS = {"GradCAM": "engine", "GradCAMResult": "engine", "GradCAMExplainer": "explainer"}
__all__ = sorted(_EXPORTS)
__getattr__ = exports(__name__, _EXPORTS)
