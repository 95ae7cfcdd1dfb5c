"""Summit (Hohman et al., IEEE TVCG 2020): per-class activation and influence aggregation, and
per-class attribution graphs, for PyTorch CNNs. No I/O, no UI (``SummitExplainer`` turns results
into ``summit`` records for the callbacks)."""

from deepvid_plugin.explain.summit.explainer import SummitExplainer
from deepvid_plugin.explain.summit.graph import jaccard, pagerank
from deepvid_plugin.explain.summit.result import Influence, SummitResult
from deepvid_plugin.explain.summit.summit import Summit

__all__ = ["Influence", "Summit", "SummitExplainer", "SummitResult", "jaccard", "pagerank"]
