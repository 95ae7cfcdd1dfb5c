"""The four explanation-drift detectors. Each reads one step's signals (:mod:`deepvid_plugin.core.
signals`), keeps what it needs of earlier steps, and returns :class:`Alert` objects. None runs a
forward pass; each costs milliseconds per step.

Every threshold is calibrated against something the run itself provides, and documented here:

**Hot spot** (instance kinds: a positional or colour marker, a watermark, a border artefact).
Maps are read as ``|map|`` normalised to sum 1, of the instances whose map is not known to be
untrustworthy. Windows are squares of a quarter of the map's side (1/16 of the image), at every
position. Each instance's *peak* is its window of most mass. A window is a hot spot when

1. the peaks of at least half of the instances (and at least 3) fall on it (within half a window);
2. that is improbable if each instance's peak fell where *its image's content* is: under that
   null an instance peaks near the window with the probability of the window's share of the
   image's content (``|x - median(x)|`` per pixel), and the chance of that many peaks there,
   from the exact Poisson-binomial tail, is below :data:`HOT_SPOT_P` (1e-3);
3. the maps hold at least twice the window's area share of their mass there on average;
4. it is new: fewer than that many of the same instances peaked there at their first explained
   step (a region the maps favoured from the start, such as the centre of centred digits, is
   where this model always looked, not somewhere new).

It is checked over all instances, and within each predicted class that has 3 or more. Each hot
spot (kind, class group, region) is reported once, when it appears, with how many of the same
instances peaked there at their first explained step.

**Map drift** (instance kinds). The Spearman rank correlation of each instance's map with its
previous map (trusted maps only, where a kind says): the run's usual is the median of all earlier
correlations (at least :data:`DRIFT_MIN_HISTORY` of them), its spread their MAD (x1.4826, a
standard deviation for normal data). A map drifts when its correlation falls below the usual by
more than ``max(0.5, 4 x spread)``; the alert says whether the prediction changed too. An
instance is reported once, and again only after two steps in a row within the usual (a model
whose prediction flips back and forth on an instance would otherwise repeat it every step).

**Concept shift** (layer kinds: Network Dissection). Between two explained steps a concept
category gains detector units while another loses them: both by at least ``max(3, 10% of the
layer's units)`` (the step-to-step wobble of clean runs stayed below that), and the gainer ends
with at least twice its count at random initialisation, plus one (the layer's own baseline).
A category that only grows (a model learning its task's concepts) does not fire.

**Graph shift** (class kinds: Summit, with Network Dissection at the same step naming each node's
concept). A class's graph gets a new majority concept category: at least half of its nodes,
having grown by at least 0.3 (30 points) since the class's previous graph. Without concepts, or
also: a graph that had settled (stability >= 0.6 at the previous step) keeps less than 0.3.
Classes that shift at the same step make one alert.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deepvid_plugin.core.signals import ConceptSignal, GraphSignal, MapSignal

#: significance of a hot spot: the chance of that many peaks in a window if maps followed content.
HOT_SPOT_P = 1e-3
#: maps larger than this many pixels a side are pooled before looking for a hot spot.
MAX_SIDE = 32
#: a hot spot needs the peaks of at least this share of the instances (and 3 or more).
HOT_SPOT_SHARE = 0.5
#: ... and at least this many times the window's area share of the maps' mass.
HOT_SPOT_MASS = 2.0
#: map drift: earlier correlations needed before a drop can be judged against the run's usual.
DRIFT_MIN_HISTORY = 5
#: map drift: a drop of at least this much below the usual, whatever the spread.
DRIFT_MIN_DROP = 0.5
#: concept shift: the least change that counts, as a share of the layer's units (and >= 3 units).
CONCEPT_MIN_SHARE = 0.1
#: graph shift: a new majority category (share) and how much it must have grown.
GRAPH_MAJORITY, GRAPH_GROWTH = 0.5, 0.3
#: graph shift: a settled graph (previous stability) that keeps less than this has shifted.
GRAPH_SETTLED, GRAPH_LOST = 0.6, 0.3


@dataclasses.dataclass(frozen=True)
class Alert:
    """One alert: which ``detector`` fired, on which ``kind``'s records and ``subject``, the
    sentence to show, and ``evidence``: what shows it (``view`` to open and its arguments:
    instances, a region box ``[top, left, bottom, right]`` in map pixels, a layer, classes)."""

    step: int
    detector: str
    kind: str
    subject: str
    message: str
    evidence: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"detector": self.detector, "kind": self.kind, "subject": self.subject,
                "message": self.message, "evidence": dict(self.evidence)}


def _label(kind: str) -> str:
    return {"deepvid": "DeepVID", "gradcam": "Grad-CAM", "cam_agreement": "student CAM",
            "netdissect": "Network Dissection", "summit": "Summit"}.get(kind, kind)


# ---- hot spot ----------------------------------------------------------------------------------
def _window_sums(a: np.ndarray, s: int) -> np.ndarray:
    """Sums of ``a`` (..., H, W) over every s x s window: (..., H - s + 1, W - s + 1)."""
    c = np.cumsum(np.cumsum(a, -1), -2)
    c = np.pad(c, [(0, 0)] * (a.ndim - 2) + [(1, 0), (1, 0)])
    return c[..., s:, s:] - c[..., :-s, s:] - c[..., s:, :-s] + c[..., :-s, :-s]


def _normalised(a: np.ndarray) -> np.ndarray:
    a = np.abs(np.where(np.isfinite(a), a, 0.0))
    total = a.sum(axis=(-2, -1), keepdims=True)
    return np.divide(a, total, out=np.full_like(a, 1.0 / a[0].size), where=total > 0)


def _pool(a: np.ndarray, f: int) -> np.ndarray:
    """Block sums of ``a`` (..., H, W) over f x f blocks (the last block may be short)."""
    if f == 1:
        return a
    h, w = a.shape[-2:]
    ph, pw = -h % f, -w % f
    a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)])
    return a.reshape(*a.shape[:-2], a.shape[-2] // f, f, a.shape[-1] // f, f).sum(axis=(-3, -1))


def _content(image: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Where an image's content is: ``|x - median|`` per pixel, summed over channels (uniform
    when the kind keeps no image of the map's size)."""
    if image is None or image.ndim != 3 or image.shape[1:] != shape:
        return np.ones(shape)
    flat = image.reshape(image.shape[0], -1)
    return np.abs(flat - np.median(flat, axis=1, keepdims=True)).sum(0).reshape(shape)


def poisson_binomial_tail(ps: Sequence[float], k: int) -> float:
    """P(at least ``k`` successes) of independent trials with success probabilities ``ps``."""
    dist = np.zeros(len(ps) + 1)
    dist[0] = 1.0
    for p in ps:
        dist[1:] = dist[1:] * (1 - p) + dist[:-1] * p
        dist[0] *= 1 - p
    return float(dist[k:].sum())


def region_name(box: Sequence[int], shape: tuple[int, int]) -> str:
    """``"the top-left 2×2 region"``: where a box lies in a map of ``shape``, in words."""
    top, left, bottom, right = box
    cy, cx = (top + bottom) / 2 / shape[0], (left + right) / 2 / shape[1]
    v = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    h = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
    where = "centre" if (v, h) == ("middle", "centre") else f"{v}-{h}"
    return f"the {where} {bottom - top}×{right - left} region"


@dataclasses.dataclass
class _HotState:
    # (kind, map shape, instance) -> the instance's peak window at its first explained step
    first: dict[tuple[str, tuple[int, int], str], tuple[int, int]] = dataclasses.field(
        default_factory=dict)
    active: set[tuple[str, str, tuple[int, int]]] = dataclasses.field(default_factory=set)


class HotSpot:
    """Explanation mass concentrating on the same region across instances (module docstring)."""

    name = "hot_spot"

    def __init__(self) -> None:
        self._state = _HotState()

    def observe(self, step: int, kind: str, maps: Sequence[MapSignal]) -> list[Alert]:
        usable = [m for m in maps if m.trusted is not False and m.map.ndim == 2]
        if not usable:
            return []
        shape = max({m.map.shape for m in usable}, key=lambda s: sum(m.map.shape == s
                                                                     for m in usable))
        usable = [m for m in usable if m.map.shape == shape]
        groups = [("", usable)]
        by_class: dict[int, list[MapSignal]] = {}
        for m in usable:
            if m.predicted is not None:
                by_class.setdefault(int(m.predicted), []).append(m)
        groups += [(f"class {c}", ms) for c, ms in sorted(by_class.items()) if len(ms) >= 3
                   and len(ms) < len(usable)]
        out, seen = [], set()
        for group, members in groups:
            found = self._check(step, kind, group, members, shape)
            if found is None:
                continue
            key = (kind, group, found[0])
            # Each hot spot is reported once: the set of trusted maps changes from step to step,
            # so a spot may dip below the bar and come back without anything new to say.
            if key in self._state.active or found[0] in seen:
                continue
            self._state.active.add(key)
            seen.add(found[0])
            out.append(found[1])
        return out

    def _check(self, step: int, kind: str, group: str, members: Sequence[MapSignal],
               shape: tuple[int, int]) -> tuple[tuple[int, int], Alert] | None:
        n = len(members)
        need = max(3, math.ceil(HOT_SPOT_SHARE * n))
        if n < 3:
            return None
        # Large maps are pooled to at most MAX_SIDE pixels a side: a region of 1/16 of the image
        # is found as well, at a fraction of the cost.
        f = max(1, math.ceil(max(shape) / MAX_SIDE))
        maps = _pool(np.stack([m.map for m in members]).astype(np.float64), f)
        content = _pool(np.stack([_content(m.image, shape) for m in members]), f)
        h, w = maps.shape[1:]
        s = max(1, round(min(h, w) / 4))
        mass = _window_sums(_normalised(maps), s)  # (n, h', w')
        cmass = _window_sums(_normalised(content), s)
        cmass = cmass / cmass.sum(axis=(1, 2), keepdims=True)  # a distribution over windows
        hh, ww = mass.shape[1:]
        peaks = np.array([np.unravel_index(int(np.argmax(m)), (hh, ww)) for m in mass])
        reach = s // 2
        near_grid = np.zeros((n, hh, ww), bool)  # which windows each instance's peak is near
        for i, (py, px) in enumerate(peaks):
            near_grid[i, max(0, py - reach):py + reach + 1, max(0, px - reach):px + reach + 1] = 1
        hits = near_grid.sum(0)
        share = mass.mean(0)
        for m, peak in zip(members, peaks, strict=True):
            self._state.first.setdefault((kind, shape, m.subject), (int(peak[0]), int(peak[1])))
        first = np.array([self._state.first[(kind, shape, m.subject)] for m in members])
        found = None
        # candidates with enough peaks, most peaks (then most mass) first
        for y, x in sorted(zip(*np.nonzero(hits >= need), strict=True),
                           key=lambda yx: (-hits[yx], -share[yx])):
            if share[y, x] < HOT_SPOT_MASS * s * s / (h * w):
                continue
            was = int(((np.abs(first[:, 0] - y) <= reach)
                       & (np.abs(first[:, 1] - x) <= reach)).sum())
            if was >= need:  # where this model looked from its first explained step on
                continue
            y0, x0 = max(0, y - reach), max(0, x - reach)
            q = np.clip(cmass[:, y0:y + reach + 1, x0:x + reach + 1].sum(axis=(1, 2)), 1e-9, 1.0)
            pval = poisson_binomial_tail(q.tolist(), int(hits[y, x]))
            if pval < HOT_SPOT_P:
                found = (int(y), int(x), pval)
                break
        if found is None:
            return None
        y, x, pval = found
        near = near_grid[:, y, x]
        count = int(hits[y, x])
        was = int(((np.abs(first[:, 0] - y) <= reach) & (np.abs(first[:, 1] - x) <= reach)).sum())
        box = [y * f, x * f, min(shape[0], (y + s) * f), min(shape[1], (x + s) * f)]
        who = f"{_label(kind)} maps" + (f" of {group}" if group else "")
        since = f"; {was} of {n} at their first explained step"
        msg = (f"{who} concentrate on {region_name(box, shape)} in {count} of {n} instances "
               f"({share[y, x]:.0%} of their mass there, where the region is "
               f"{s * s / (h * w):.0%} of the image and {cmass[:, y, x].mean():.0%} of its "
               f"content{since})")
        ids = [m.subject for m, hit in zip(members, near, strict=True) if hit]
        evidence = {"view": "compare", "kind": kind, "instances": ids, "box": box,
                    "map_shape": list(shape), "p_value": pval}
        if group:
            evidence["class"] = int(group.split()[1])
        return (y, x), Alert(step, self.name, kind, ids[0] if len(ids) == 1 else "run", msg,
                             evidence)

    def state_dict(self) -> dict[str, Any]:
        return {"first": [[k, list(shape), subject, list(peak)]
                          for (k, shape, subject), peak in self._state.first.items()],
                "active": [[k[0], k[1], list(k[2])] for k in self._state.active]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._state.first = {(k, tuple(shape), subject): tuple(peak)
                             for k, shape, subject, peak in state.get("first", [])}
        self._state.active = {(k, g, tuple(w)) for k, g, w in state.get("active", [])}


# ---- map drift ---------------------------------------------------------------------------------
def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (flattened); 0 when either is constant."""
    ra = np.argsort(np.argsort(a.ravel(), kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b.ravel(), kind="stable"), kind="stable").astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


class MapDrift:
    """An instance's map changing abruptly between explained steps (module docstring)."""

    name = "map_drift"

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[int, np.ndarray, int | None]] = {}
        self._history: dict[str, list[float]] = {}
        # (kind, instance) -> steps within the usual since it was last reported (absent: never)
        self._calm: dict[tuple[str, str], int] = {}

    def observe(self, step: int, kind: str, maps: Sequence[MapSignal]) -> list[Alert]:
        history = self._history.setdefault(kind, [])
        usual = float(np.median(history)) if len(history) >= DRIFT_MIN_HISTORY else None
        spread = (1.4826 * float(np.median(np.abs(np.asarray(history) - usual)))
                  if usual is not None else None)
        drifted, now = [], []
        for m in maps:
            if m.trusted is False or m.map.ndim != 2:
                continue
            key = (kind, m.subject)
            before = self._last.get(key)
            self._last[key] = (step, np.abs(m.map), m.predicted)
            if before is None or before[1].shape != m.map.shape or before[0] >= step:
                continue
            rho = spearman(before[1], np.abs(m.map))
            now.append(rho)
            if usual is None:
                continue
            if rho < usual - max(DRIFT_MIN_DROP, 4 * spread):
                if self._calm.get(key, 2) >= 2:
                    drifted.append((m, rho, before))
                self._calm[key] = 0
            elif key in self._calm:
                self._calm[key] += 1
        history.extend(now)
        if not drifted:
            return []
        parts = []
        for m, rho, before in drifted:
            changed = (before[2] is not None and m.predicted is not None
                       and before[2] != m.predicted)
            parts.append(f"{m.subject} (rank correlation {rho:.2f}"
                         + (f", prediction {before[2]} -> {m.predicted}" if changed else "") + ")")
        ids = [m.subject for m, _, _ in drifted]
        msg = (f"{_label(kind)} maps changed abruptly since the previous explained step for "
               f"{len(drifted)} instance{'s' if len(drifted) > 1 else ''}: {', '.join(parts)}; "
               f"the run's usual correlation is {usual:.2f}")
        return [Alert(step, self.name, kind, ids[0] if len(ids) == 1 else "run", msg,
                      {"view": "overview", "kind": kind, "instances": ids,
                       "steps": [int(drifted[0][2][0]), int(step)]})]

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: list(v) for k, v in self._history.items()},
                "last": [[k[0], k[1], s, m.tolist(), p] for k, (s, m, p) in self._last.items()],
                "calm": [[k[0], k[1], n] for k, n in self._calm.items()]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._history = {k: [float(x) for x in v] for k, v in state.get("history", {}).items()}
        self._last = {(k, subj): (int(s), np.asarray(m, np.float64), p)
                      for k, subj, s, m, p in state.get("last", [])}
        self._calm = {(k, subj): int(n) for k, subj, n in state.get("calm", [])}


# ---- concept shift -----------------------------------------------------------------------------
class ConceptShift:
    """A layer's detectors moving from one concept category to another (module docstring)."""

    name = "concept_shift"

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], dict[str, int]] = {}

    def observe(self, step: int, kind: str, layers: Sequence[ConceptSignal]) -> list[Alert]:
        out = []
        for sig in layers:
            before = self._last.get((kind, sig.layer))
            self._last[(kind, sig.layer)] = dict(sig.detectors)
            if before is None:
                continue
            least = max(3, math.ceil(CONCEPT_MIN_SHARE * sig.units))
            change = {c: sig.detectors.get(c, 0) - before.get(c, 0) for c in sig.detectors}
            losers = sorted((c for c, d in change.items() if -d >= least), key=lambda c: change[c])
            for c, gain in sorted(change.items(), key=lambda kv: -kv[1]):
                floor = 2 * (sig.baseline or {}).get(c, before.get(c, 0)) + 1
                if gain < least or sig.detectors[c] < floor or not [d for d in losers if d != c]:
                    continue
                lost = [d for d in losers if d != c][0]
                base = "" if sig.baseline is None else f"; {sig.baseline.get(c, 0)} at random init"
                msg = (f"{sig.layer} gained {gain} {c} detectors ({before.get(c, 0)} -> "
                       f"{sig.detectors[c]} of {sig.units} units{base}) while {lost} detectors "
                       f"fell from {before.get(lost, 0)} to {sig.detectors.get(lost, 0)}")
                out.append(Alert(step, self.name, kind, sig.layer, msg,
                                 {"view": kind, "kind": kind, "layer": sig.layer,
                                  "category": c}))
                break
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"last": [[k, layer, v] for (k, layer), v in self._last.items()]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._last = {(k, layer): {c: int(n) for c, n in v.items()}
                      for k, layer, v in state.get("last", [])}


# ---- graph shift -------------------------------------------------------------------------------
class GraphShift:
    """A class's attribution graph turning to a new concept category, or losing its stability
    (module docstring)."""

    name = "graph_shift"

    def __init__(self) -> None:
        self._shares: dict[tuple[str, str], dict[str, float]] = {}
        self._stability: dict[tuple[str, str], float] = {}

    def observe(self, step: int, kind: str, graphs: Sequence[GraphSignal],
                concepts: Sequence[ConceptSignal]) -> list[Alert]:
        units = {c.layer: c.unit_category for c in concepts}
        turned: dict[str, list[tuple[str, float, float]]] = {}
        unsettled = []
        for g in graphs:
            key = (kind, g.subject)
            if g.nodes and all(layer in units and ch < len(units[layer]) for layer, ch in g.nodes):
                cats = [str(units[layer][ch]) for layer, ch in g.nodes]
                shares = {c: cats.count(c) / len(cats) for c in set(cats) if c}
                before = self._shares.get(key)
                self._shares[key] = shares
                if before is not None:
                    for c, share in shares.items():
                        if share >= GRAPH_MAJORITY and share - before.get(c, 0.0) >= GRAPH_GROWTH:
                            turned.setdefault(c, []).append((g.subject, before.get(c, 0.0),
                                                             share))
            previous = self._stability.get(key)
            if g.stability is not None:
                if previous is not None and previous >= GRAPH_SETTLED and g.stability < GRAPH_LOST:
                    unsettled.append((g.subject, previous, g.stability))
                self._stability[key] = g.stability
        out = []
        for c, classes in sorted(turned.items(), key=lambda kv: -len(kv[1])):
            names = [s for s, _, _ in classes]
            now = np.mean([b for _, _, b in classes])
            then = np.mean([a for _, a, _ in classes])
            msg = (f"{_label(kind)} graphs of {len(classes)} of {len(graphs)} classes "
                   f"({', '.join(names[:6])}{'...' if len(names) > 6 else ''}) turned to {c} "
                   f"nodes: {now:.0%} of their nodes, {then:.0%} at the previous explained step")
            out.append(Alert(step, self.name, kind, names[0] if len(names) == 1 else "run", msg,
                             {"view": kind, "kind": kind, "classes": names, "category": c}))
        if unsettled:
            names = [s for s, _, _ in unsettled]
            msg = (f"{_label(kind)} graphs of {len(unsettled)} classes lost their stability ("
                   + ", ".join(f"{s}: {a:.2f} -> {b:.2f}" for s, a, b in unsettled[:6]) + ")")
            out.append(Alert(step, self.name, kind, names[0] if len(names) == 1 else "run", msg,
                             {"view": kind, "kind": kind, "classes": names}))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"shares": [[k, s, v] for (k, s), v in self._shares.items()],
                "stability": [[k, s, v] for (k, s), v in self._stability.items()]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._shares = {(k, s): dict(v) for k, s, v in state.get("shares", [])}
        self._stability = {(k, s): float(v) for k, s, v in state.get("stability", [])}


__all__ = ["Alert", "ConceptShift", "GraphShift", "HotSpot", "MapDrift",
           "poisson_binomial_tail", "region_name", "spearman"]
