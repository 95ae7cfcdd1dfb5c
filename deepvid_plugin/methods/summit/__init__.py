"""Summit (Hohman et al., IEEE TVCG 2020): per-class activation and influence aggregation, and
per-class attribution graphs, for PyTorch CNNs. ``SummitExplainer`` turns results into ``summit``
records for the callbacks.

Exports load lazily, so ``methods.summit.kind`` imports without torch."""

from deepvid_plugin.core.lazy import exports

_EXPORTS = {"SummitExplainer": "explainer", "jaccard": "graph", "pagerank": "graph",
            "Influence": "result", "SummitResult": "result", "Summit": "engine"}
__all__ = sorted(_EXPORTS)
__getattr__ = exports(__name__, _EXPORTS)
