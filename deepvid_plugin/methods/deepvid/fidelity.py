"""How far to trust an explanation: the student's agreement with the teacher on held-out
neighbours it was never fitted on, and whether its map beats a random map on the model itself.

Metrics (all at temperature 1, on the held-out neighbours unless noted):

- ``top1_agreement``: fraction of neighbours where student and teacher pick the same class.
- ``kl``: mean KL(teacher || student), in nats.
- ``r2_top``: R^2 of the student's probability for the teacher's predicted class (on the
  instance) against the teacher's; when the teacher's probability barely varies
  (variance < 1e-6) it is 1.0 if the student matches it within 0.05 on average, else 0.0.
- ``mae_top``: mean absolute error of that same probability.
- ``instance_agreement``: student and teacher pick the same class on the instance itself.
- Faithfulness evidence, merged in by :class:`~deepvid_plugin.explain.DeepVID` from
  :func:`deepvid_plugin.core.faithfulness.evidence`: ``deletion_auc``/``insertion_auc`` of the
  map's ranking of pixels against the model on the instance, the same for a random map
  (``random_deletion_auc``/``random_insertion_auc``; random per region for a student over
  regions, ``random_map: "regions"``), and ``better_than_random`` (deletion lower *and*
  insertion higher than the random map's).
- ``spread``: the standard deviation of the teacher's top-class probability over the held-out
  neighbours: how much the neighbourhood moved the model (near 0, the student had nothing to
  learn from).

**Trust rule** (``trustworthy``), checked in this order; ``trust_reason`` names the first
condition that fails (``None`` when trustworthy):

1. ``top1_agreement >= 0.9`` -- "the student agrees with the model on only 82% of held-out
   neighbours";
2. ``instance_agreement`` -- a student that disagrees on the instance explains some other
   decision;
3. ``r2_top >= 0.5`` or ``mae_top <= 0.02`` -- one that misses the top class's probability trend
   gets the class right for the wrong reasons. When the teacher is equally sure on every
   neighbour (p ~ 1.000 throughout), R^2 measures noise, so matching the probability within 0.02
   is enough (the demo's confident digits showed R^2 0.28 with 100% agreement and a 0.001 error);
4. ``better_than_random``, when the record has it -- **a map that does no better than a random map
   at deletion/insertion is not trustworthy, whatever the agreement**: agreement is measured on
   neighbours, and a student can match the teacher there while its map still does not say which
   pixels the model uses on the instance (pure VAE neighbours did exactly that: 98% agreement,
   weight mass spread over pixels the model never reads). Records written before this evidence
   existed have no such key and keep rules 1-3.

The thresholds are deliberately simple so the UI can state them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

TRUST_MIN_AGREEMENT = 0.9
TRUST_MIN_R2 = 0.5
TRUST_MAX_MAE = 0.02


def trust_verdict(metrics: Mapping[str, Any]) -> tuple[bool, str | None]:
    """``(trustworthy, reason)`` for one fidelity mapping; ``reason`` is None when trustworthy,
    else one short sentence for the first failing condition of the trust rule."""
    agreement = float(metrics["top1_agreement"])
    if not agreement >= TRUST_MIN_AGREEMENT:
        # floor, so 0.899 never reads as "90%" next to a 90% threshold
        return False, (f"the student agrees with the model on only "
                       f"{math.floor(agreement * 100)}% of held-out neighbours")
    if not metrics["instance_agreement"]:
        return False, "the student picks a different class than the model on the instance"
    if not (float(metrics["r2_top"]) >= TRUST_MIN_R2 or float(metrics["mae_top"]) <= TRUST_MAX_MAE):
        return False, "the student misses how the model's confidence changes"
    if "better_than_random" in metrics and not metrics["better_than_random"]:
        return False, "the map is no better than a random map at deletion/insertion"
    return True, None


def apply_trust_rule(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``metrics`` with ``trustworthy`` and ``trust_reason`` (re)computed."""
    ok, reason = trust_verdict(metrics)
    return {**metrics, "trustworthy": ok, "trust_reason": reason}


def fidelity_metrics(teacher_p: torch.Tensor, student_p: torch.Tensor, top_class: torch.Tensor,
                     instance_agree: torch.Tensor) -> list[dict]:
    """Per-instance metric dicts from (K, H, C) held-out teacher/student probabilities, with
    ``trustworthy``/``trust_reason`` from rules 1-3 (add the evidence, then re-apply
    :func:`apply_trust_rule`)."""
    eps = 1e-12
    agree = (teacher_p.argmax(-1) == student_p.argmax(-1)).double().mean(-1)
    kl = (teacher_p * (torch.log(teacher_p + eps) - torch.log(student_p + eps))).sum(-1).mean(-1)
    idx = top_class.view(-1, 1, 1).expand(-1, teacher_p.shape[1], 1)
    y = teacher_p.gather(-1, idx).squeeze(-1).double()
    yhat = student_p.gather(-1, idx).squeeze(-1).double()
    ss_res = (y - yhat).pow(2).sum(-1)
    ss_tot = (y - y.mean(-1, keepdim=True)).pow(2).sum(-1)
    out = []
    for k in range(teacher_p.shape[0]):
        if ss_tot[k] / y.shape[-1] < 1e-6:
            r2 = 1.0 if (y[k] - yhat[k]).abs().mean() < 0.05 else 0.0
        else:
            r2 = float(1.0 - ss_res[k] / ss_tot[k])
        mae = float((y[k] - yhat[k]).abs().mean())
        m = {"top1_agreement": float(agree[k]), "kl": float(kl[k]), "r2_top": r2,
             "mae_top": mae, "instance_agreement": bool(instance_agree[k]),
             "n_holdout": int(teacher_p.shape[1])}
        out.append(apply_trust_rule(m))
    return out
