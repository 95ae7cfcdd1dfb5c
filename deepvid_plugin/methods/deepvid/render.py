"""DeepVID's step image: what MLflow's image slider shows for a ``deepvid`` record."""

from __future__ import annotations

import numpy as np

from deepvid_plugin.core import card, render
from deepvid_plugin.methods.deepvid.record import ExplanationRecord


def render_weight_map(record: ExplanationRecord) -> np.ndarray:
    """The predicted class's maps as one RGB ``uint8`` step card (:mod:`deepvid_plugin.core
    .card`: 512 x 256, readable in MLflow's 256-px thumbnail).

    MLflow's image slider shows this image alone, so it carries everything needed to read it: the
    instance, its true label and the prediction (green when right, red when wrong), the trust
    verdict (with the deletion AUC against a random map's, or why not to trust it), and the maps
    drawn over the instance in grey (opacity grows with |value|, as in the DeepVID views), each
    with its colour key (blue against the class, red for it): for a pixel student the **weight**
    map (channel-averaged) and the **contribution** ``weight x input`` (summed over channels:
    what each pixel of this instance adds to the class score); for a region student each
    **region's weight** (what switching the region on adds to the class score) with the regions'
    outlines. Pixels of small maps stay crisp squares.
    """
    k = record.predicted
    grey = render.grey(np.asarray(record.image, dtype=np.float64))
    fid = record.fidelity
    lines = card.label_lines(record.instance_id, record.class_names, record.label, k,
                             float(record.teacher_probs[k]))
    lines += card.trust_lines(record.trustworthy, fid.get("trust_reason"),
                              card.deletion_line(fid))
    if record.regions:
        rgb = render.overlay(_or_zeros(record.weight_map(k), grey), grey)[0]
        edges = _edges(np.asarray(record.segments))
        rgb[edges] = 0.55 * rgb[edges] + 0.45 * 255.0  # faint outlines: where the regions are
        panels = [card.Panel(rgb, "region weight")]
    else:
        panels = [card.Panel(render.overlay(_or_zeros(record.weight_map(k), grey), grey)[0],
                             "weight"),
                  card.Panel(render.overlay(_or_zeros(record.contribution_map(k), grey),
                                            grey)[0], "w × input")]
    return card.draw(lines, panels)


def _or_zeros(values: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    # the predicted class is always kept; zeros only for a hand-made record without it
    return np.zeros(like.shape) if values is None else values


def _edges(segments: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour is in another region."""
    out = np.zeros(segments.shape, dtype=bool)
    out[:, :-1] |= segments[:, :-1] != segments[:, 1:]
    out[:-1, :] |= segments[:-1, :] != segments[1:, :]
    return out
