"""What the explanation-drift detectors read from a record, whatever its kind.

The detectors (:mod:`deepvid_plugin.methods.alert`) never name a kind: each kind registers here,
from its own ``kind.py``, a function that turns one of its records into one of three signals:

- :class:`MapSignal` (instance kinds): the map of the class the record explains, over the
  instance, with the record's trust verdict;
- :class:`ConceptSignal` (layer kinds): which concept category each unit of a layer detects, now
  and at random initialisation;
- :class:`GraphSignal` (class kinds): a class's attribution graph, as its nodes (layer, channel)
  and its stability.

A kind that registers nothing is simply not watched. Only numpy here (TensorBoard's reader loads
the kinds, and so this module).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from deepvid_plugin.core import kinds
from deepvid_plugin.core.hooks import HookTable
from deepvid_plugin.core.record import Record


@dataclasses.dataclass(frozen=True)
class MapSignal:
    """One instance's map at one step.

    Attributes:
        subject: the instance id.
        map: ``(H, W)`` the map of the explained class (signed or not; detectors use ``|map|``).
        image: ``(C, H, W)`` the instance (the map's own resolution), or None.
        predicted: the model's predicted class, or None.
        label: the true class, or None.
        trusted: the record's trust verdict (None: it carries none).
    """

    subject: str
    map: np.ndarray
    image: np.ndarray | None
    predicted: int | None
    label: int | None
    trusted: bool | None


@dataclasses.dataclass(frozen=True)
class ConceptSignal:
    """One layer's concept detectors at one step (Network Dissection).

    Attributes:
        layer: the layer's name.
        units: how many units the layer has.
        detectors: category -> number of units that detect a concept of that category.
        baseline: the same at random initialisation (None when not recorded).
        unit_category: ``(units,)`` the category each unit detects ("" for no detector).
    """

    layer: str
    units: int
    detectors: Mapping[str, int]
    baseline: Mapping[str, int] | None
    unit_category: np.ndarray


@dataclasses.dataclass(frozen=True)
class GraphSignal:
    """One class's attribution graph at one step (Summit).

    Attributes:
        subject: the class's name.
        nodes: the graph's nodes as ``(layer, channel)`` pairs (the class node itself excluded).
        stability: Jaccard of its node set with the previous explained step's (None: first).
    """

    subject: str
    nodes: tuple[tuple[str, int], ...]
    stability: float | None


Signal = MapSignal | ConceptSignal | GraphSignal

class _Extractor:
    """A kind's function record -> signal (the table's entries must have a type of their own)."""

    def __init__(self, extract: Callable[[Record], Signal | None]):
        if not callable(extract):
            raise TypeError(f"extract: expected a callable record -> signal, got "
                            f"{type(extract).__name__}")
        self.extract = extract


_table: HookTable[_Extractor] = HookTable("drift signals", _Extractor)


def register(kind: str, extract: Callable[[Record], Signal | None]) -> None:
    """Set how records of ``kind`` are read by the drift detectors (its ``kind.py`` calls this
    once, at import); ``extract(record)`` returns a signal, or None when the record has none."""
    _table.register(kind, _Extractor(extract))


def of(record: Any) -> Signal | None:
    """The signal of ``record`` (a Record or a typed view), or None when its kind registered no
    extractor or the record carries nothing to watch."""
    env = kinds.as_record(record)
    entry = _table.get(env.kind)
    return None if entry is None else entry.extract(env)


def trust_of(evidence: Any) -> bool | None:
    """The verdict of a map's deletion/insertion evidence (``better_than_random``), if any."""
    if isinstance(evidence, Mapping) and isinstance(evidence.get("better_than_random"), bool):
        return bool(evidence["better_than_random"])
    return None


__all__ = ["ConceptSignal", "GraphSignal", "MapSignal", "Signal", "of", "register", "trust_of"]
