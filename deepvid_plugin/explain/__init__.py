"""The explanation methods: DeepVID (generator, neighbours, student, fidelity), Grad-CAM, Network
Dissection, Summit, and the faithfulness evidence shared by every instance kind. No I/O, no UI."""

from deepvid_plugin.explain import checks
from deepvid_plugin.explain.cam_agreement import CAMAgreement
from deepvid_plugin.explain.deepvid import DEFAULT_JITTER, DEFAULT_N_NEIGHBOURS, DeepVID
from deepvid_plugin.explain.deepvid_explainer import DeepVIDExplainer
from deepvid_plugin.explain.faithfulness import (
    DEFAULT_STEPS,
    Curves,
    deletion_insertion,
    evidence,
    random_saliency,
)
from deepvid_plugin.explain.fidelity import (
    TRUST_MAX_MAE,
    TRUST_MIN_AGREEMENT,
    TRUST_MIN_R2,
    apply_trust_rule,
    fidelity_metrics,
    trust_verdict,
)
from deepvid_plugin.explain.generator import Generator, PixelGenerator
from deepvid_plugin.explain.gradcam import GradCAM, GradCAMExplainer, GradCAMResult
from deepvid_plugin.explain.netdissect import (
    ConceptSet,
    LayerDissection,
    NetDissect,
    NetDissectExplainer,
)
from deepvid_plugin.explain.protocol import (
    Artifacts,
    ExplainContext,
    Explainer,
    NoArtifacts,
    is_explainer,
)
from deepvid_plugin.explain.sanity import RandomizationResult, randomization_check, randomize_model
from deepvid_plugin.explain.summit import Summit, SummitExplainer, SummitResult
from deepvid_plugin.explain.vae import VAE, FitReport

__all__ = [
    "CAMAgreement",
    "is_explainer",
    "checks",
    "NoArtifacts",
    "GradCAMExplainer",
    "Explainer",
    "ExplainContext",
    "DeepVIDExplainer",
    "Artifacts",
    "DEFAULT_JITTER",
    "DEFAULT_N_NEIGHBOURS",
    "DEFAULT_STEPS",
    "ConceptSet",
    "Curves",
    "DeepVID",
    "VAE",
    "FitReport",
    "GradCAM",
    "GradCAMResult",
    "LayerDissection",
    "NetDissect",
    "NetDissectExplainer",
    "Generator",
    "PixelGenerator",
    "RandomizationResult",
    "Summit",
    "SummitExplainer",
    "SummitResult",
    "TRUST_MAX_MAE",
    "TRUST_MIN_AGREEMENT",
    "TRUST_MIN_R2",
    "apply_trust_rule",
    "deletion_insertion",
    "evidence",
    "fidelity_metrics",
    "random_saliency",
    "randomization_check",
    "randomize_model",
    "trust_verdict",
]
