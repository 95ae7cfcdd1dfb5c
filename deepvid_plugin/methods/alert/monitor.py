"""`AlertMonitor`: runs the drift detectors over each explained step's records and turns what
they find into one ``alert`` record per step (only at steps where something fired).

A callback hands it every record its explainers produced at a step (``observe``); it reads them
through :mod:`deepvid_plugin.core.signals`, so it works with any kind that registers signals and
never runs the model. Its state (what the detectors remember of earlier steps) travels in
``state_dict`` so a resumed run keeps its calibration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deepvid_plugin.core import signals
from deepvid_plugin.core.record import Record
from deepvid_plugin.methods.alert.detectors import (
    Alert,
    ConceptShift,
    GraphShift,
    HotSpot,
    MapDrift,
)
from deepvid_plugin.methods.alert.kind import KIND, SUBJECT

_STATE_VERSION = 1
DETECTOR_NAMES = ("hot_spot", "map_drift", "concept_shift", "graph_shift")


class AlertMonitor:
    """Explanation-drift alerts over the records of every kind a callback runs.

    Args:
        detectors: which detectors run (default: all of ``hot_spot``, ``map_drift``,
            ``concept_shift``, ``graph_shift``; see :mod:`.detectors` for what each one reads
            and its thresholds).

    Example::

        >>> import numpy as np
        >>> from deepvid_plugin.core import kinds
        >>> from deepvid_plugin.methods.alert.monitor import AlertMonitor
        >>> def gradcam(i, step):  # a map whose mass sits in the top-left corner
        ...     cam = np.full((8, 8), 0.01); cam[:2, :2] = 1.0
        ...     return kinds.get("gradcam").record(
        ...         f"test-{i}", step, {"cam_pred": cam, "probs": [0.9, 0.1],
        ...                             "image": np.random.default_rng(i).random((1, 8, 8))},
        ...         meta={"class_names": ["a", "b"], "pred": 0, "layer": "conv"})
        >>> monitor = AlertMonitor()
        >>> [alert] = monitor.observe([gradcam(i, 0) for i in range(6)], step=0)
        >>> alert.kind, [a["detector"] for a in alert.meta["alerts"]]
        ('alert', ['hot_spot'])
    """

    kind = KIND.name

    def __init__(self, detectors: Sequence[str] | None = None):
        names = list(DETECTOR_NAMES if detectors is None else detectors)
        unknown = [n for n in names if n not in DETECTOR_NAMES]
        if isinstance(detectors, (str, bytes)) or unknown:
            raise ValueError(f"detectors: expected names among {list(DETECTOR_NAMES)}, got "
                             f"{detectors!r}")
        self.detectors = tuple(names)
        self._hot, self._drift = HotSpot(), MapDrift()
        self._concept, self._graph = ConceptShift(), GraphShift()
        self.alerts: list[Alert] = []  # every alert raised so far, in order

    def observe(self, records: Sequence[Any], step: int) -> list[Record]:
        """The alert record of ``step`` (a list of one, or empty when nothing fired)."""
        maps: dict[str, list[signals.MapSignal]] = {}
        concepts: dict[str, list[signals.ConceptSignal]] = {}
        graphs: dict[str, list[signals.GraphSignal]] = {}
        for rec in records:
            sig = signals.of(rec)
            kind = rec.kind
            if isinstance(sig, signals.MapSignal):
                maps.setdefault(kind, []).append(sig)
            elif isinstance(sig, signals.ConceptSignal):
                concepts.setdefault(kind, []).append(sig)
            elif isinstance(sig, signals.GraphSignal):
                graphs.setdefault(kind, []).append(sig)
        found: list[Alert] = []
        for kind, sigs in maps.items():
            if "hot_spot" in self.detectors:
                found += self._hot.observe(step, kind, sigs)
            if "map_drift" in self.detectors:
                found += self._drift.observe(step, kind, sigs)
        if "concept_shift" in self.detectors:
            for kind, sigs in concepts.items():
                found += self._concept.observe(step, kind, sigs)
        if "graph_shift" in self.detectors:
            every_concept = [c for sigs in concepts.values() for c in sigs]
            for kind, sigs in graphs.items():
                found += self._graph.observe(step, kind, sigs, every_concept)
        if not found:
            return []
        self.alerts.extend(found)
        return [KIND.record(SUBJECT, step, {}, meta={"alerts": [a.to_json() for a in found]},
                            settings={"detectors": list(self.detectors)})]

    def state_dict(self) -> dict[str, Any]:
        return {"version": _STATE_VERSION, "hot_spot": self._hot.state_dict(),
                "map_drift": self._drift.state_dict(),
                "concept_shift": self._concept.state_dict(),
                "graph_shift": self._graph.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping):
            raise TypeError(f"state: expected a dict from state_dict(), got "
                            f"{type(state).__name__}")
        if int(state.get("version", 1)) > _STATE_VERSION:
            raise ValueError(f"state: alert monitor state version {state['version']} is newer "
                             f"than this deepvid-plugin reads ({_STATE_VERSION}); upgrade it")
        self._hot.load_state_dict(state.get("hot_spot", {}))
        self._drift.load_state_dict(state.get("map_drift", {}))
        self._concept.load_state_dict(state.get("concept_shift", {}))
        self._graph.load_state_dict(state.get("graph_shift", {}))


__all__ = ["DETECTOR_NAMES", "AlertMonitor"]
