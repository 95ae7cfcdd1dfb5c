"""The student's refinement: L-BFGS on the distillation objective, one independent run per
instance, batched.

Why not ``torch.optim.LBFGS`` over all K students at once (what this replaced): that treats the
K students as one parameter vector, with one shared line search, one step length and one
stopping test, so a student's result depended on which other instances shared its batch (a
2-rank DDP run logged students 7e-9 away from a 1-process run's). Running ``torch.optim.LBFGS``
once per instance would fix that, at K times its Python overhead (about 1 ms per iteration: 10 s
per epoch at 1024 instances). Here every quantity (history, step length, stopping test) is kept
per instance, and every operation is either elementwise or reduces over one instance's own
entries, so instance k's iterates are those of a run on instance k alone, at the cost of one
batched run.

The objective of instance k, in the solver's eigenbasis (features ``F`` (M, r), see
:mod:`~deepvid_plugin.methods.deepvid.student`)::

    f(beta, b) = T^2 / M * sum_rows KL(p_teacher || softmax((F beta + b) / T)) + lam * |beta|^2

**Line search along the direction.** Once ``dz = F d_beta + d_b`` is formed (one batched matmul),
the objective along the line, ``phi(t) = f(p + t d)``, needs no further matmul: the logits are
``z + t dz``. Its derivatives are closed-form (softmax model), ``phi'(t) = T/M sum (s - p)·dz +
2 lam (beta + t d_beta)·d_beta`` and ``phi''(t) = 1/M sum_rows (sum_c s_c dz_c^2 - (s·dz)^2) +
2 lam |d_beta|^2``, so the step is found by safeguarded Newton iterations on ``phi`` (convex) and
the best point seen is kept; a step that does not lower ``f`` is not taken, and that instance
stops. Each iteration then costs two batched matmuls (``dz`` and the new gradient) and a few
elementwise passes over the (K, M, C) logits, as one ``torch.optim.LBFGS`` evaluation did.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

#: trials of the line search per iteration (phi is smooth and convex: Newton's first step is
#: usually within a few percent of the minimum, the second refines it).
LINE_STEPS = 3
HISTORY = 10
#: as torch.optim.LBFGS: stop an instance when its gradient or its progress is this small.
TOL_GRAD = 1e-7
TOL_CHANGE = 1e-9


def refine(feats: torch.Tensor, t_logp: torch.Tensor, beta: torch.Tensor, b: torch.Tensor,
           lam: torch.Tensor, temperature: float, steps: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` L-BFGS iterations per instance from ``(beta, b)``.

    Args:
        feats: (K, M, r) fitting rows in the eigenbasis.
        t_logp: (K, M, C) the teacher's log-probabilities at temperature T.
        beta, b: (K, r, C), (K, C) the warm start.
        lam: (K,) the ridge strength of the sum-of-squares objective; rescaled here to the KL
            objective (mean over rows, ~ 1/(2C) per squared logit error at high T), so both
            pick the same trade-off.
        temperature: T.
        steps: iterations (each instance stops earlier once converged).

    Internally everything is class-major, (K, C, M) logits and (K, C, r) weights: torch's
    softmax along the last axis is ~20x slower for 10 classes than along another axis.
    """
    k, m, _ = feats.shape
    c = beta.shape[-1]
    t = float(temperature)
    lam = (lam / (2.0 * c * m)).view(k, 1, 1).to(beta.dtype)
    t_logp = t_logp.transpose(1, 2).contiguous()  # (K, C, M)
    p_t = t_logp.exp()
    neg_entropy = (p_t * t_logp).sum((1, 2))  # (K,) constant part of each KL
    problem = _Problem(feats, p_t, neg_entropy, lam, t, m)

    w, b = beta.transpose(1, 2).contiguous(), b.clone()  # (K, C, r), (K, C)
    z = problem.logits(w, b)
    f, s_prob = problem.value(z, w)
    g_w, g_b = problem.gradient(s_prob, w)
    active = _flat(g_w, g_b).abs().amax(1) > TOL_GRAD  # (K,)
    hist_s: list[torch.Tensor] = []  # per iteration: (K, n) steps, zero where not stored
    hist_y: list[torch.Tensor] = []
    hist_rho: list[torch.Tensor] = []  # (K,) 1 / y·s, zero where not stored
    h_diag = torch.ones(k, dtype=w.dtype)
    for _ in range(steps):
        if not bool(active.any()):
            break
        g = _flat(g_w, g_b)
        d = _direction(g, hist_s, hist_y, hist_rho, h_diag)
        d = torch.where(active[:, None], d, torch.zeros_like(d))
        gtd = (g * d).sum(1)
        active = active & (gtd < -TOL_CHANGE)
        d_w, d_b = _unflat(d, w.shape)
        dz = problem.logits(d_w, d_b)
        step = problem.line_search(z, dz, w, d_w, f, gtd, active)
        moved = active & (step > 0)
        new_w = w + step.view(k, 1, 1) * d_w
        new_b = b + step.view(k, 1) * d_b
        new_z = z + step.view(k, 1, 1) * dz
        new_f, new_s = problem.value(new_z, new_w)
        ng_w, ng_b = problem.gradient(new_s, new_w)
        # instances that did not move keep everything as it was (their own run has stopped)
        keep3 = moved.view(k, 1, 1)
        w, b = torch.where(keep3, new_w, w), torch.where(moved[:, None], new_b, b)
        z, s_prob = torch.where(keep3, new_z, z), torch.where(keep3, new_s, s_prob)
        g_new = torch.where(moved[:, None], _flat(ng_w, ng_b), g)
        g_w, g_b = _unflat(g_new, w.shape)
        change = (f - new_f).abs()
        f = torch.where(moved, new_f, f)
        # the curvature pair of this iteration (stored only where it is usable)
        s_vec = step[:, None] * d
        y_vec = g_new - g
        ys = (y_vec * s_vec).sum(1)
        store = moved & (ys > 1e-10)
        hist_s.append(torch.where(store[:, None], s_vec, torch.zeros_like(s_vec)))
        hist_y.append(torch.where(store[:, None], y_vec, torch.zeros_like(y_vec)))
        hist_rho.append(torch.where(store, 1.0 / ys.where(store, torch.ones_like(ys)),
                                    torch.zeros_like(ys)))
        h_diag = torch.where(store, ys / (y_vec * y_vec).sum(1).where(store, torch.ones_like(ys)),
                             h_diag)
        if len(hist_s) > HISTORY:
            hist_s.pop(0), hist_y.pop(0), hist_rho.pop(0)
        active = (moved & (g_new.abs().amax(1) > TOL_GRAD) & (change > TOL_CHANGE)
                  & ((s_vec.abs().amax(1)) > TOL_CHANGE))
    return w.transpose(1, 2).contiguous(), b


class _Problem:
    """The K objectives and their derivatives (see the module docstring), class-major."""

    def __init__(self, feats, p_t, neg_entropy, lam, t, m):
        self.feats, self.p_t, self.neg_entropy, self.lam, self.t, self.m = (
            feats, p_t, neg_entropy, lam, t, m)
        self.feats_t = feats.transpose(1, 2).contiguous()  # (K, r, M)

    def logits(self, w, b) -> torch.Tensor:
        """(K, C, M) logits of weights ``w`` (K, C, r) and biases ``b`` (K, C)."""
        return instance_mm(w, self.feats_t) + b.unsqueeze(2)

    def value(self, z, w) -> tuple[torch.Tensor, torch.Tensor]:
        """(K,) objective and (K, C, M) student probabilities at logits ``z``."""
        s_logp = F.log_softmax(z / self.t, dim=1)
        kl = self.neg_entropy - (self.p_t * s_logp).sum((1, 2))
        f = kl * (self.t * self.t / self.m) + (self.lam * w.square()).sum((1, 2))
        return f, s_logp.exp()

    def gradient(self, s_prob, w) -> tuple[torch.Tensor, torch.Tensor]:
        g_z = (s_prob - self.p_t) * (self.t / self.m)  # (K, C, M)
        g_w = instance_mm(g_z, self.feats) + w * (2.0 * self.lam)
        return g_w, g_z.sum(2)

    def line_search(self, z, dz, w, d_w, f0, gtd, active) -> torch.Tensor:
        """(K,) step lengths: safeguarded Newton on phi(t) = f(p + t d), the best point kept."""
        k = z.shape[0]
        lam = self.lam.view(k)
        wd = (w * d_w).sum((1, 2))
        dd = d_w.square().sum((1, 2))
        best_t = torch.zeros_like(f0)
        best_f = f0.clone()
        step = torch.zeros_like(f0)
        slope = gtd.clone()  # phi'(0)
        s_prob = F.softmax(z / self.t, dim=1)
        improved = torch.ones_like(active)
        for _ in range(LINE_STEPS):
            sdz = (s_prob * dz).sum(1)  # (K, M)
            curv = ((s_prob * dz.square()).sum(1) - sdz.square()).sum(1) / self.m \
                + 2.0 * lam * dd
            newton = step - slope / curv.clamp_min(1e-30)
            # After a trial that made things worse, go back halfway towards the best point
            # instead (Newton from a point past the minimum of a saturating softmax can jump
            # far); never backwards past the start.
            trial = torch.where(improved, newton, 0.5 * (best_t + step))
            step = torch.where(active & torch.isfinite(trial) & (trial > 0), trial,
                               torch.zeros_like(trial))
            zt = z + step.view(k, 1, 1) * dz
            s_logp = F.log_softmax(zt / self.t, dim=1)
            s_prob = s_logp.exp()
            kl = self.neg_entropy - (self.p_t * s_logp).sum((1, 2))
            penalty = lam * ((w + step.view(k, 1, 1) * d_w).square()).sum((1, 2))
            ft = kl * (self.t * self.t / self.m) + penalty
            improved = active & (step > 0) & torch.isfinite(ft) & (ft < best_f)
            best_t = torch.where(improved, step, best_t)
            best_f = torch.where(improved, ft, best_f)
            slope = ((s_prob - self.p_t) * dz).sum((1, 2)) * (self.t / self.m) \
                + 2.0 * lam * (wd + step * dd)
        return best_t


def log_softmax_classes(z: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over the last axis (the classes), taken along a transposed view: torch's
    kernel for the last axis is ~20x slower for 10 classes (measured 1.65 ms against 0.08 ms on
    (16, 410, 10), one thread); the values are the same."""
    return F.log_softmax(z.transpose(-1, -2), dim=-2).transpose(-1, -2)


def softmax_classes(z: torch.Tensor) -> torch.Tensor:
    """``softmax`` over the last axis, as :func:`log_softmax_classes`."""
    return F.softmax(z.transpose(-1, -2), dim=-2).transpose(-1, -2)


def instance_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(K, n, m) @ (K, m, p) as K separate matrix products. ``torch.bmm``'s CPU kernel gives an
    instance results that differ in the last bits with its position in the batch (measured:
    5.7e-6 on (16, 410, 64) @ (16, 64, 5) when the batch is permuted), and the line search's
    comparisons can turn such bits into a different step; one product per instance cannot."""
    if a.shape[0] == 1:
        return torch.mm(a[0], b[0]).unsqueeze(0)
    return torch.stack([torch.mm(ai, bi) for ai, bi in zip(a, b, strict=True)])


def _direction(g, hist_s, hist_y, hist_rho, h_diag) -> torch.Tensor:
    """-H g by the two-loop recursion, per instance (entries not stored for an instance are
    zero, with rho 0, and so have no effect on it)."""
    q = -g
    alphas = []
    for s, y, rho in zip(reversed(hist_s), reversed(hist_y), reversed(hist_rho), strict=True):
        a = rho * (s * q).sum(1)
        q = q - a[:, None] * y
        alphas.append(a)
    r = q * h_diag[:, None]
    for s, y, rho, a in zip(hist_s, hist_y, hist_rho, reversed(alphas), strict=True):
        be = rho * (y * r).sum(1)
        r = r + (a - be)[:, None] * s
    return r


def _flat(g_w: torch.Tensor, g_b: torch.Tensor) -> torch.Tensor:
    return torch.cat([g_w.flatten(1), g_b], 1)


def _unflat(v: torch.Tensor, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    k, c, r = shape
    return v[:, : c * r].view(k, c, r), v[:, c * r:]
