"""The explanation methods at one import path: ``from deepvid_plugin.explain import DeepVID, VAE,
GradCAM, NetDissect, Summit, Attribution, ...``. Each lives with its kind in
``deepvid_plugin/methods/<kind>/`` (DeepVID: generator, neighbours, student, fidelity; Grad-CAM; CAM
agreement; Network Dissection; Summit; Attribution, any saliency function); the protocol, the checks and the faithfulness evidence every kind shares are in
:mod:`deepvid_plugin.core`. No I/O, no UI.
"""

from deepvid_plugin.core import checks, faithfulness
from deepvid_plugin.core.explainer import (
    Artifacts,
    ExplainContext,
    Explainer,
    NoArtifacts,
    is_explainer,
)
from deepvid_plugin.core.faithfulness import (
    DEFAULT_STEPS,
    Curves,
    deletion_insertion,
    evidence,
    random_saliency,
)
from deepvid_plugin.core.outputs import ModelView, logits_of
from deepvid_plugin.core.sanity import randomize_model
from deepvid_plugin.methods.attribution.engine import Attribution, AttributionResult
from deepvid_plugin.methods.attribution.explainer import AttributionExplainer
from deepvid_plugin.methods.cam_agreement.explainer import CAMAgreement
from deepvid_plugin.methods.cam_agreement.loss import CAMDistillLoss
from deepvid_plugin.methods.deepvid.engine import DEFAULT_JITTER, DEFAULT_N_NEIGHBOURS, DeepVID
from deepvid_plugin.methods.deepvid.explainer import DeepVIDExplainer
from deepvid_plugin.methods.deepvid.fidelity import (
    TRUST_MAX_MAE,
    TRUST_MIN_AGREEMENT,
    TRUST_MIN_R2,
    apply_trust_rule,
    fidelity_metrics,
    trust_verdict,
)
from deepvid_plugin.methods.deepvid.generator import Generator, PixelGenerator
from deepvid_plugin.methods.deepvid.record import ExplanationRecord
from deepvid_plugin.methods.deepvid.sanity import RandomizationResult, randomization_check
from deepvid_plugin.methods.deepvid.vae import VAE, FitReport
from deepvid_plugin.methods.gradcam.engine import GradCAM, GradCAMResult
from deepvid_plugin.methods.gradcam.explainer import GradCAMExplainer
from deepvid_plugin.methods.netdissect.concepts import ConceptSet
from deepvid_plugin.methods.netdissect.engine import LayerDissection, NetDissect
from deepvid_plugin.methods.netdissect.explainer import NetDissectExplainer
from deepvid_plugin.methods.summit.engine import Summit
from deepvid_plugin.methods.summit.explainer import SummitExplainer
from deepvid_plugin.methods.summit.result import SummitResult

__all__ = [
    "Attribution", "AttributionExplainer", "AttributionResult", "ModelView", "logits_of",
    "CAMAgreement", "CAMDistillLoss", "DEFAULT_JITTER", "DEFAULT_N_NEIGHBOURS", "DEFAULT_STEPS",
    "TRUST_MAX_MAE", "TRUST_MIN_AGREEMENT", "TRUST_MIN_R2", "Artifacts", "ConceptSet", "Curves",
    "DeepVID", "DeepVIDExplainer", "ExplainContext", "Explainer", "ExplanationRecord",
    "FitReport", "Generator", "GradCAM", "GradCAMExplainer", "GradCAMResult", "LayerDissection",
    "NetDissect", "NetDissectExplainer", "NoArtifacts", "PixelGenerator", "RandomizationResult",
    "Summit", "SummitExplainer", "SummitResult", "VAE", "apply_trust_rule", "checks",
    "deletion_insertion", "evidence", "faithfulness", "fidelity_metrics", "is_explainer",
    "random_saliency", "randomization_check", "randomize_model", "trust_verdict",
]
