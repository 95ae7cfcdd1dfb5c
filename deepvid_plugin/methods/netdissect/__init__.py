"""Network Dissection (Bau et al., CVPR 2017) for small image models: which units detect which
concepts. ``ConceptSet`` holds probe images with exact concept labels (rendered, or read from a
Broden-format directory); ``NetDissect`` labels each unit of the chosen layers and counts unique
detectors per category; ``NetDissect.baseline`` gives the same count at random initialisation.

Exports load lazily, so ``methods.netdissect.kind`` imports without torch."""

from deepvid_plugin.core.lazy import exports

_EXPORTS = {"BRODEN_CATEGORIES": "concepts", "ConceptSet": "concepts",
            "LayerDissection": "engine", "NetDissect": "engine",
            "NetDissectExplainer": "explainer", "LayerTally": "tally", "LayerTops": "tally",
            "iou_matrix": "tally"}
__all__ = sorted(_EXPORTS)
__getattr__ = exports(__name__, _EXPORTS)
