"""The drift detectors on planted record streams: what must fire, and what must not."""

from __future__ import annotations

import numpy as np
import pytest

from deepvid_plugin.core import kinds, signals
from deepvid_plugin.methods.alert.detectors import (
    ConceptShift,
    GraphShift,
    HotSpot,
    MapDrift,
    poisson_binomial_tail,
    region_name,
)
from deepvid_plugin.methods.alert.monitor import AlertMonitor

N, SIZE = 8, 16


def _blob(cy: float, cx: float, size: int = SIZE, width: float = 2.0) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width ** 2))


def _objects(seed: int = 0) -> list[tuple[float, float]]:
    """Where each instance's object is: somewhere in the middle, different per instance."""
    rng = np.random.default_rng(seed)
    return [(float(rng.uniform(5, 11)), float(rng.uniform(5, 11))) for _ in range(N)]


def _image(cy: float, cx: float, marker: bool = True) -> np.ndarray:
    img = 0.1 + 0.8 * (_blob(cy, cx) > 0.3)
    if marker:
        img[:3, :3] = 0.6  # a small patch every image carries, in the top-left corner
    return img[None]


def _record(i: int, step: int, cam: np.ndarray, image: np.ndarray, pred: int = 0,
            trusted: bool | None = True):
    evidence = None if trusted is None else {"better_than_random": trusted}
    return kinds.get("gradcam").record(
        f"i{i}", step, {"cam_pred": cam, "probs": [0.8, 0.2], "image": image},
        meta={"class_names": ["a", "b"], "pred": pred, "layer": "l", "evidence": evidence})


def _stream(steps: int, shortcut_from: int | None, inside_only: bool = False, seed: int = 0):
    """Grad-CAM records of N instances: maps on each instance's object; from ``shortcut_from``
    on, on the top-left marker instead. ``inside_only``: maps move around, but only within the
    object."""
    objects = _objects(seed)
    rng = np.random.default_rng(seed + 1)
    for step in range(steps):
        out = []
        for i, (cy, cx) in enumerate(objects):
            if shortcut_from is not None and step >= shortcut_from:
                cam = _blob(1.0, 1.0, width=1.5) + 0.05 * _blob(cy, cx)
            elif inside_only:
                cam = _blob(cy + rng.uniform(-1.5, 1.5), cx + rng.uniform(-1.5, 1.5), width=1.5)
            else:
                cam = _blob(cy, cx)
            out.append(_record(i, step, cam, _image(cy, cx)))
        yield step, out


def _alerts(stream, **kw) -> list[tuple[int, dict]]:
    monitor = AlertMonitor(**kw)
    return [(step, a) for step, recs in stream for r in monitor.observe(recs, step)
            for a in r.meta["alerts"]]


def test_a_hot_spot_appearing_at_step_5_fires_at_step_5_and_names_the_region():
    got = _alerts(_stream(8, shortcut_from=5), detectors=["hot_spot"])
    assert [s for s, _ in got] == [5]  # once, when it appears
    alert = got[0][1]
    assert alert["detector"] == "hot_spot" and alert["kind"] == "gradcam"
    assert "top-left" in alert["message"] and f"in {N} of {N} instances" in alert["message"]
    top, left, bottom, right = alert["evidence"]["box"]
    assert top == 0 and left == 0 and bottom <= SIZE // 2 and right <= SIZE // 2
    assert sorted(alert["evidence"]["instances"]) == sorted(f"i{i}" for i in range(N))
    assert alert["evidence"]["view"] == "compare"


@pytest.mark.parametrize("inside_only", [False, True])
def test_maps_that_follow_the_object_never_fire(inside_only):
    # a stable stream, and one whose maps change from step to step but only inside the object
    assert _alerts(_stream(8, shortcut_from=None, inside_only=inside_only)) == []


def test_a_region_watched_from_the_first_step_is_not_new():
    # maps on the marker from the first explained step on: where this model always looked
    assert _alerts(_stream(6, shortcut_from=0), detectors=["hot_spot"]) == []


def test_untrusted_maps_are_left_out():
    objects = _objects()
    monitor = AlertMonitor(detectors=["hot_spot"])
    for step in range(2):
        monitor.observe([_record(i, step, _blob(cy, cx), _image(cy, cx))
                         for i, (cy, cx) in enumerate(objects)], step)
    corner = _blob(1.0, 1.0, width=1.5)
    untrusted = [_record(i, 2, corner, _image(cy, cx), trusted=False)
                 for i, (cy, cx) in enumerate(objects)]
    assert monitor.observe(untrusted, 2) == []


def test_map_drift_fires_once_on_the_instance_whose_map_jumps():
    objects = _objects()
    detector = MapDrift()
    fired = []
    for step in range(8):
        maps = []
        for i, (cy, cx) in enumerate(objects):
            m = _blob(cy, cx) + 0.01 * np.random.default_rng(step * 10 + i).random((SIZE, SIZE))
            if i == 3 and step >= 5:
                m = _blob(1.0, SIZE - 2.0)  # instance 3 now looks at a corner
            maps.append(signals.MapSignal(f"i{i}", m, None, 0 if i != 3 or step < 5 else 1,
                                          None, True))
        fired += [(step, a) for a in detector.observe(step, "gradcam", maps)]
    assert [(s, a.subject) for s, a in fired] == [(5, "i3")]
    assert "prediction 0 -> 1" in fired[0][1].message


def _layer(units: dict[str, int], baseline: dict[str, int] | None, total: int = 64):
    cats = np.array([c for c, n in units.items() for _ in range(n)]
                    + [""] * (total - sum(units.values())), dtype=object)
    return signals.ConceptSignal("layer4", total, units, baseline, cats)


def test_concept_shift_fires_when_detectors_move_to_another_category():
    d = ConceptShift()
    base = {"color": 8, "object": 5}
    assert d.observe(0, "netdissect", [_layer({"color": 33, "object": 20}, base)]) == []
    [alert] = d.observe(3, "netdissect", [_layer({"color": 53, "object": 4}, base)])
    assert alert.subject == "layer4" and alert.evidence["category"] == "color"
    assert "gained 20 color detectors" in alert.message and "8 at random init" in alert.message


def test_concept_growth_without_a_loss_is_learning_not_a_shift():
    d = ConceptShift()
    base = {"color": 8, "object": 5}
    for step, units in enumerate([{"color": 0, "object": 33}, {"color": 0, "object": 42},
                                  {"color": 2, "object": 44}]):
        assert d.observe(step, "netdissect", [_layer(units, base)]) == []


def test_graph_shift_names_the_classes_whose_nodes_turned():
    d = GraphShift()
    cats = np.array(["object"] * 32 + ["color"] * 32, dtype=object)
    concept = signals.ConceptSignal("layer4", 64, {"object": 32, "color": 32}, None, cats)
    before = [signals.GraphSignal(c, tuple(("layer4", k) for k in range(10)), None)
              for c in ("0", "1", "2")]  # object nodes
    assert d.observe(0, "summit", before, [concept]) == []
    after = [signals.GraphSignal("0", tuple(("layer4", 32 + k) for k in range(10)), 0.1),
             signals.GraphSignal("1", tuple(("layer4", 32 + k) for k in range(8))
                                 + (("layer4", 0), ("layer4", 1)), 0.2),
             signals.GraphSignal("2", tuple(("layer4", k) for k in range(10)), 1.0)]
    [alert] = d.observe(3, "summit", after, [concept])
    assert alert.evidence["classes"] == ["0", "1"] and alert.evidence["category"] == "color"
    assert "2 of 3 classes" in alert.message


def test_poisson_binomial_tail_matches_the_binomial():
    from math import comb

    p, n = 0.15, 8
    for k in range(n + 1):
        want = sum(comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k, n + 1))
        assert poisson_binomial_tail([p] * n, k) == pytest.approx(want, rel=1e-9)


def test_region_names():
    assert region_name([0, 0, 2, 2], (8, 8)) == "the top-left 2×2 region"
    assert region_name([3, 3, 5, 5], (8, 8)) == "the centre 2×2 region"
    assert region_name([6, 0, 8, 8], (8, 8)) == "the bottom-centre 2×8 region"


def test_the_monitor_resumes_with_its_calibration():
    stream = list(_stream(8, shortcut_from=5))
    whole = _alerts(stream)
    first = AlertMonitor()
    for step, recs in stream[:4]:
        first.observe(recs, step)
    state = first.state_dict()
    import torch  # the state must load as a torch checkpoint would (weights_only)

    buf = __import__("io").BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    resumed = AlertMonitor()
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    rest = [(step, a) for step, recs in stream[4:] for r in resumed.observe(recs, step)
            for a in r.meta["alerts"]]
    assert [(s, a["detector"]) for s, a in rest] == [(s, a["detector"]) for s, a in whole
                                                     if s >= 4]


def test_bad_detector_names_are_refused():
    with pytest.raises(ValueError, match="detectors: expected names among"):
        AlertMonitor(detectors=["hotspot"])
    with pytest.raises(ValueError, match="detectors: expected names among"):
        AlertMonitor(detectors="hot_spot")


def test_hot_spot_cost_stays_small_on_224px_maps():
    # large maps are pooled: 16 maps at 224 px must not take seconds per step
    import time

    rng = np.random.default_rng(0)
    maps = [signals.MapSignal(f"i{i}", rng.random((224, 224)), rng.random((3, 224, 224)), 0,
                              None, True) for i in range(16)]
    detector = HotSpot()
    t0 = time.perf_counter()
    detector.observe(0, "gradcam", maps)
    assert time.perf_counter() - t0 < 5.0  # a guard against a per-pixel loop, not a benchmark
