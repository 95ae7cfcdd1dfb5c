"""Network Dissection (Bau et al., CVPR 2017) for small image models: which units detect which
concepts. ``ConceptSet`` holds probe images with exact concept labels (rendered, or read from a
Broden-format directory); ``NetDissect`` labels each unit of the chosen layers and counts unique
detectors per category; ``NetDissect.baseline`` gives the same count at random initialisation."""

from deepvid_plugin.explain.netdissect.concepts import BRODEN_CATEGORIES, ConceptSet
from deepvid_plugin.explain.netdissect.dissect import LayerDissection, NetDissect
from deepvid_plugin.explain.netdissect.explainer import NetDissectExplainer
from deepvid_plugin.explain.netdissect.tally import LayerTally, LayerTops, iou_matrix

__all__ = ["BRODEN_CATEGORIES", "ConceptSet", "LayerDissection", "LayerTally", "LayerTops",
           "NetDissect", "NetDissectExplainer", "iou_matrix"]
