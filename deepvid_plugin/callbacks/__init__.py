"""Training-loop integrations (installed as ``deepvid_plugin.callbacks``).

- :class:`DeepVIDCallback`: plain PyTorch loops (``cb.on_epoch_end(epoch)``).
- :class:`DeepVIDExplainer`, :class:`GradCAMExplainer`, :class:`CAMAgreement`,
  :class:`NetDissectExplainer`, :class:`SummitExplainer`, :class:`AttributionExplainer`:
  explanation kinds a callback runs
  (``explainers=[...]``), each with its own ``every_n_epochs``.
- :class:`~deepvid_plugin.callbacks.lightning.DeepVIDLightningCallback`: Lightning. Importing it
  needs ``pip install 'deepvid-plugin[lightning]'``; this package itself never imports lightning,
  so plain-PyTorch users do not need it.
- :class:`~deepvid_plugin.callbacks.hf.DeepVIDTrainerCallback`: the HuggingFace ``Trainer``
  (``pip install 'deepvid-plugin[hf]'``), imported as lazily.
"""

from __future__ import annotations

from typing import Any

from deepvid_plugin.callbacks.explanations import Explanations
from deepvid_plugin.callbacks.plain import DeepVIDCallback
from deepvid_plugin.callbacks.safety import DeepVIDWarning
from deepvid_plugin.methods.attribution.explainer import AttributionExplainer
from deepvid_plugin.methods.cam_agreement.explainer import CAMAgreement
from deepvid_plugin.methods.deepvid.explainer import DeepVIDExplainer
from deepvid_plugin.methods.gradcam.explainer import GradCAMExplainer
from deepvid_plugin.methods.netdissect.explainer import NetDissectExplainer
from deepvid_plugin.methods.summit.explainer import SummitExplainer

__all__ = ["AttributionExplainer", "CAMAgreement", "DeepVIDCallback", "DeepVIDExplainer", "DeepVIDLightningCallback",
           "DeepVIDTrainerCallback", "DeepVIDWarning", "Explanations", "GradCAMExplainer",
           "NetDissectExplainer", "SummitExplainer"]


def __getattr__(name: str) -> Any:
    # Lazy: `from deepvid_plugin.callbacks import DeepVIDLightningCallback` imports lightning (and
    # DeepVIDTrainerCallback transformers) only when someone asks for it.
    if name == "DeepVIDLightningCallback":
        from deepvid_plugin.callbacks.lightning import DeepVIDLightningCallback

        return DeepVIDLightningCallback
    if name == "DeepVIDTrainerCallback":  # transformers only when asked for
        from deepvid_plugin.callbacks.hf import DeepVIDTrainerCallback

        return DeepVIDTrainerCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
