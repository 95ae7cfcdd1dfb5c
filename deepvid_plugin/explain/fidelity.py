"""How far to trust an explanation: the student's agreement with the teacher on held-out
neighbours it was never fitted on.

Metrics (all at temperature 1, on the held-out neighbours unless noted):

- ``top1_agreement``: fraction of neighbours where student and teacher pick the same class.
- ``kl``: mean KL(teacher || student), in nats.
- ``r2_top``: R^2 of the student's probability for the teacher's predicted class (on the
  instance) against the teacher's; when the teacher's probability barely varies
  (variance < 1e-6) it is 1.0 if the student matches it within 0.05 on average, else 0.0.
- ``mae_top``: mean absolute error of that same probability.
- ``instance_agreement``: student and teacher pick the same class on the instance itself.

**Trust rule** (``trustworthy``): ``top1_agreement >= 0.9`` and ``instance_agreement`` and
(``r2_top >= 0.5`` or ``mae_top <= 0.02``). A student that disagrees on the instance explains
some other decision; one that misses the top class's probability trend gets the class right for
the wrong reasons. When the teacher is equally sure on every neighbour (p ~ 1.000 throughout),
R^2 measures noise, so matching the probability within 0.02 is enough (the demo's confident
digits showed R^2 0.28 with 100% agreement and a 0.001 error). The thresholds are deliberately
simple so the UI can state them.
"""

from __future__ import annotations

import torch

TRUST_MIN_AGREEMENT = 0.9
TRUST_MIN_R2 = 0.5
TRUST_MAX_MAE = 0.02


def fidelity_metrics(teacher_p: torch.Tensor, student_p: torch.Tensor, top_class: torch.Tensor,
                     instance_agree: torch.Tensor) -> list[dict]:
    """Per-instance metric dicts from (K, H, C) held-out teacher/student probabilities."""
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
        m["trustworthy"] = bool(m["top1_agreement"] >= TRUST_MIN_AGREEMENT
                                and m["instance_agreement"]
                                and (r2 >= TRUST_MIN_R2 or mae <= TRUST_MAX_MAE))
        out.append(m)
    return out
