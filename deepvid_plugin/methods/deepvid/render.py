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
    verdict (with the deletion AUC against a random map's, or why not to trust it), and two maps
    drawn over the instance in grey (opacity grows with |value|, as in the DeepVID views): the
    **weight** map (channel-averaged) and the **contribution** ``weight x input`` (summed over
    channels: what each pixel of this instance adds to the class score), each with its colour key
    (blue against the class, red for it). Pixels of small maps stay crisp squares.
    """
    k = record.predicted
    weights = np.asarray(record.weights[k], dtype=np.float64)
    image = np.asarray(record.image, dtype=np.float64)
    grey = render.grey(image)
    contribution = (weights * np.where(np.isfinite(image), image, 0.0)).sum(axis=0)
    fid = record.fidelity
    lines = card.label_lines(record.instance_id, record.class_names, record.label, k,
                             float(record.teacher_probs[k]))
    lines += card.trust_lines(record.trustworthy, fid.get("trust_reason"),
                              card.deletion_line(fid))
    panels = [card.Panel(render.overlay(weights.mean(axis=0), grey)[0], "weight"),
              card.Panel(render.overlay(contribution, grey)[0], "w × input")]
    return card.draw(lines, panels)
