"""Exp-KD (Pattern Recognition 2024): a student distilled to reproduce its teacher's class
activation maps (``CAMDistillLoss``, a training loss) and the ``cam_agreement`` kind that records
whether the two networks look at the same pixels (``CAMAgreement``, an explainer).

Exports load lazily, so ``methods.cam_agreement.kind`` imports without torch."""

from deepvid_plugin.core.lazy import exports

_EXPORTS = {"CAMAgreement": "explainer", "CAMDistillLoss": "loss", "DistillOutput": "loss",
            "CAMMaps": "loss", "class_activation_maps": "loss", "hinton_kd_loss": "loss"}
__all__ = sorted(_EXPORTS)
__getattr__ = exports(__name__, _EXPORTS)
