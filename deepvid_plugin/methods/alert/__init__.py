"""Explanation-drift alerts: detectors that read every kind's records step by step (no extra
forward passes) and say, at the epoch it happens, when the model starts looking somewhere new.

Exports load lazily, so ``methods.alert.kind`` imports without the detectors."""

from deepvid_plugin.core.lazy import exports

_EXPORTS = {"Alert": "detectors", "HotSpot": "detectors", "MapDrift": "detectors",
            "ConceptShift": "detectors", "GraphShift": "detectors", "AlertMonitor": "monitor"}
__all__ = sorted(_EXPORTS)
__getattr__ = exports(__name__, _EXPORTS)
