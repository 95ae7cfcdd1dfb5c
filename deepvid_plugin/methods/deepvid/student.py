"""The interpretable student: a linear softmax model over pixels, distilled from the teacher.

Solver (measured in ``benchmarks/``; chosen because it meets the speed target while the KL
objective alone, from a cold start, needs hundreds of LBFGS iterations):

1. **Closed-form warm start.** Match the teacher's (class-centred) logits with ridge regression,
   batched over all K instances, from one eigendecomposition of the smaller Gram matrix: X^T X
   (D x D, "primal") when pixels <= rows, X X^T (M x M, "dual") otherwise. With the spectrum in
   hand every L2 strength is a diagonal rescale, so the whole grid costs one factorisation.
2. **L2 strength** is picked per instance from a small grid (relative to the mean eigenvalue, so
   it is scale-free) by held-out KL on a validation part of the *fitting* rows. The fidelity
   hold-out is never seen here.
3. **Refinement.** A few L-BFGS steps on the distillation objective itself: KL(teacher_T ||
   student_T) scaled by T^2 (Hinton et al.), plus the chosen L2 penalty, run independently per
   instance but batched (:mod:`~deepvid_plugin.methods.deepvid.lbfgs`): each instance has its
   own history, step length and stopping test, so its student is the same whether it is
   explained alone, with others or on another DDP rank.
   It runs in the eigenbasis: W = B @ beta with B orthonormal (D x r, r = min(D, M), null
   directions kept as zero columns), so the student's logits are F @ beta with F = X_c @ B
   (M x r) and ||W|| = ||beta||. That is an isometric change of coordinates (same objective and
   inner products), and in dual form it costs M x M per evaluation instead of M x D.

**Independent of the batch.** Every step above is per instance: batched matrix products and
eigendecompositions act on each instance's own matrices, r is fixed by (M, D), the L2 pick is
an argmin per instance, and the refinement's reductions never mix instances. So an instance's
student does not depend on which instances share its batch or in what order (pinned by
``tests/methods/deepvid/test_batch_independence.py``).

**Reuse across epochs.** Everything above that depends only on the rows ``x`` (centring, the Gram
matrix and its eigendecomposition, the validation split and its matrices) lives in a
:class:`SolverState` from :func:`prepare_solver`. DeepVID's neighbours are fixed per instance, so
one state serves every epoch; only the teacher's logits change::

    state = prepare_solver(x, l2=None, val_fraction=0.25, generator=gen)   # once
    student = fit_students(x, logits, temperature, state=state)             # every epoch

``fit_students`` without a state builds one internally, so both calls give the same numbers. A
state is immutable, so results never depend on call history. States are per row of K and can be
split (:meth:`SolverState.select`) and joined (:meth:`SolverState.concat`), e.g. to keep one
per instance id.

Measured (K=16, M=410 rows, C=10, refine_steps=10, 1 thread, on a shared 2-core CPU
under heavy load, so absolute times are inflated several-fold; compare within a line):

- D=3072 (ResNet 3x32x32, dual form): before, 7.0 s per call; now 1.4 s to prepare (first
  epoch), then 0.40 s per fit (0.17 s warm start + 0.23 s LBFGS). Caching one Cholesky factor
  per grid value instead measured 1.3 s to prepare and 0.19 s per warm start, but 2.4 s per fit
  with the LBFGS in pixel space, and 253 MB of cache against 38 MB.
- D=64 (digits 1x8x8, primal form): before, 111 ms per call; now 50 ms to prepare, then 66 ms
  per fit (8 ms warm start), against 1.04 s for the digits CNN's forward on the same 16 x 513
  images (6% of it, before 11%).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from deepvid_plugin.methods.deepvid.lbfgs import instance_mm, log_softmax_classes, refine

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: eigenvalues below this fraction of the largest are the numerical null space of the dual Gram:
#: their eigenvectors are noise, and dividing by sqrt(eigenvalue) to map back to pixel weights
#: would amplify it. Their ridge weight is at most 1e-10 / 1e-4 of the signal, so dropping them
#: changes nothing measurable.
_NULL_RTOL = 1e-10


@dataclasses.dataclass(frozen=True)
class Student:
    weight: torch.Tensor  # (K, D, C): student logits are x @ weight[k] + bias[k]
    bias: torch.Tensor  # (K, C)
    l2: torch.Tensor  # (K,) relative L2 strength used per instance

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(K, N, D) inputs -> (K, N, C) student logits."""
        return instance_mm(x, self.weight) + self.bias.unsqueeze(1)


@dataclasses.dataclass(frozen=True, eq=False)  # tensors have no truth value: compare by identity
class SolverState:
    """The x-only part of :func:`fit_students` for one (K, M, D) batch of fitting rows.

    Built by :func:`prepare_solver`; pass it back as ``fit_students(..., state=state)`` with the
    same ``x`` and any teacher logits. Every tensor's first axis is the instance (K).

    Memory, K=16 instances, M=410 rows (measured with :attr:`nbytes`): 38 MB at D=3072 (dual
    form: the (M, r) features and their (M, r) map back to pixels, float32, plus the validation
    split's (M_tr, r) and (M_va, r) matrices, float64) and 5.4 MB at D=64 (primal form). It grows as K * M^2 in
    dual form and K * M * D in primal form, never K * M * D in dual form: ``x`` itself is not
    kept (the caller passes it again; it is only read once per fit, to map back to pixels).
    """

    shape: tuple[int, int, int]  # (K, M, D) of the x it was built from
    l2: float | None  # the fixed relative L2, or None: picked per instance on the split
    val_fraction: float
    primal: bool  # final fit in primal form (D <= M)
    fingerprint: torch.Tensor  # (K, M) x @ probe, to refuse a state built for other rows
    x_mean: torch.Tensor  # (K, 1, D) row mean of x
    feats: torch.Tensor  # (K, M, r) float32: centred x in the eigenbasis, F = X_c B
    evals: torch.Tensor  # (K, r) float64: F^T F = diag(evals)
    scale: torch.Tensor  # (K,) float64: mean eigenvalue of X_c^T X_c (trace / D)
    basis: torch.Tensor  # (K, D, r) primal: W = basis @ beta; (K, M, r) dual: W = X_c^T basis beta
    train_idx: torch.Tensor | None  # (M_tr,) validation split, only when l2 is None
    val_idx: torch.Tensor | None  # (M_va,)
    val_proj: torch.Tensor | None  # (K, M_tr, r_v) float64: train targets -> spectral coords
    val_pred: torch.Tensor | None  # (K, M_va, r_v) float64: spectral coords -> val logits
    val_evals: torch.Tensor | None  # (K, r_v) float64
    val_scale: torch.Tensor | None  # (K,) float64

    @property
    def nbytes(self) -> int:
        """Bytes held by the state's tensors."""
        return sum(v.element_size() * v.numel() for v in self._tensors().values())

    def select(self, index: Sequence[int] | torch.Tensor) -> SolverState:
        """The state of instances ``index`` only (rows of K), e.g. one per instance id."""
        idx = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        k = self.shape[0]
        if idx.numel() == 0 or bool(((idx < -k) | (idx >= k)).any()):
            raise ValueError(f"index: expected a non-empty list of instance indices in "
                             f"[0, {k}), got {idx.tolist()}")
        sub = {name: t[idx] for name, t in self._tensors(per_instance=True).items()}
        return dataclasses.replace(self, shape=(idx.numel(), *self.shape[1:]), **sub)

    @classmethod
    def concat(cls, states: Sequence[SolverState]) -> SolverState:
        """Join states of the same row count, L2 setting and split along K (the inverse of
        :meth:`select`); the result fits the instances in the order given."""
        if not states or not all(isinstance(s, SolverState) for s in states):
            raise ValueError(f"states: expected a non-empty sequence of SolverState, got "
                             f"{[type(s).__name__ for s in states]}")
        first = states[0]
        for i, s in enumerate(states[1:], 1):
            same_split = (s.train_idx is None) == (first.train_idx is None) and (
                s.train_idx is None or (torch.equal(s.train_idx, first.train_idx)
                                        and torch.equal(s.val_idx, first.val_idx)))
            if ((s.shape[1:], s.l2, s.val_fraction) != (first.shape[1:], first.l2,
                                                        first.val_fraction) or not same_split):
                raise ValueError(
                    f"states: expected states with the same (M, D), l2, val_fraction and "
                    f"validation split; state {i} has (M, D)={s.shape[1:]}, l2={s.l2}, "
                    f"val_fraction={s.val_fraction}, state 0 has (M, D)={first.shape[1:]}, "
                    f"l2={first.l2}, val_fraction={first.val_fraction} (or the splits differ)")
        # Every state of one (M, D) has the same number r of eigen-directions (null ones are
        # kept as zeros), so states prepared separately join without padding.
        parts = [s._tensors(per_instance=True) for s in states]
        joined = {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
        k = sum(s.shape[0] for s in states)
        return dataclasses.replace(first, shape=(k, *first.shape[1:]), **joined)

    def matches(self, x: torch.Tensor) -> bool:
        """Whether ``x`` (K, M, D) is (to float tolerance) the batch this state was built from."""
        if tuple(x.shape) != self.shape:
            return False
        sig = _fingerprint(x.float())
        tol = 1e-4 * (1.0 + float(self.fingerprint.abs().mean()))
        return bool((sig - self.fingerprint).abs().max() <= tol)

    def _tensors(self, per_instance: bool = False) -> dict[str, torch.Tensor]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor) and not (per_instance and f.name.endswith("_idx")):
                out[f.name] = v
        return out


def _fingerprint(x: torch.Tensor) -> torch.Tensor:
    """(K, M) projections of every row on a fixed random direction: any change to a row moves
    it (with probability 1), and it costs one pass over x. The probe has its own generator, so
    the global RNG is untouched."""
    probe = torch.randn(x.shape[-1], generator=torch.Generator().manual_seed(12345))
    return x @ probe


def _check_x(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or 0 in x.shape:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x: expected a non-empty (K, M, D) tensor of fitting rows, got {got}")
    return x.detach().float()


def prepare_solver(x: torch.Tensor, l2: float | None = None, val_fraction: float = 0.25,
                   generator: torch.Generator | None = None) -> SolverState:
    """Do the x-only work of :func:`fit_students` once, for reuse with new teacher logits.

    Args:
        x: (K, M, D) flattened fitting rows.
        l2: relative L2 strength; ``None`` picks it per instance at fit time from
            :data:`L2_GRID` on a validation split drawn here.
        val_fraction: fraction of the rows in that validation split.
        generator: draws the split (``torch.randperm(M, generator=generator)``).
    """
    x = _check_x(x)
    if l2 is not None and (isinstance(l2, bool) or not isinstance(l2, (int, float))
                           or not l2 > 0):
        raise ValueError(f"l2: expected None (automatic) or a number > 0, got {l2!r}")
    if not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction!r}")
    k, m, d = x.shape
    x_mean = x.mean(1, keepdim=True)
    xc = x - x_mean
    primal = d <= m
    # Dual form: the (K, M, M) Gram of all rows is the dominant cost, so form it once and derive
    # the validation Grams from it.
    gram = None if primal else instance_mm(xc, xc.transpose(1, 2)).double()
    feats, evals, scale, basis = _spectral_fit(xc, gram)

    fields: dict = dict(train_idx=None, val_idx=None, val_proj=None, val_pred=None,
                        val_evals=None, val_scale=None)
    if l2 is None:
        if m < 3:
            raise ValueError(f"x: expected at least 3 rows per instance to pick l2 on a "
                             f"validation split, got {m} (pass a fixed l2)")
        n_val = min(m - 2, max(1, int(round(m * val_fraction))))
        perm = torch.randperm(m, generator=generator)
        tr, va = perm[n_val:], perm[:n_val]
        if d <= len(tr):
            xtr_m = x[:, tr].mean(1, keepdim=True)
            xtrc = (x[:, tr] - xtr_m).double()
            vals, vecs = torch.linalg.eigh(instance_mm(xtrc.transpose(1, 2), xtrc))
            proj = instance_mm(xtrc, vecs)  # train rows in the eigenbasis: R^T ytr = V^T X_tr^T ytr
            pred = instance_mm((x[:, va] - xtr_m).double(), vecs)
        else:
            if gram is None:  # d <= m but d > len(tr): the grid alone is in dual form
                gram = instance_mm(xc, xc.transpose(1, 2)).double()
            g_tr, g_va = _split_grams(gram, tr, va)
            vals, proj = torch.linalg.eigh(g_tr)  # dual: R = U, logits = G_va U diag() U^T y
            pred = instance_mm(g_va, proj)
        vals = vals.clamp_min(0.0)
        fields.update(train_idx=tr, val_idx=va, val_proj=proj, val_pred=pred, val_evals=vals,
                      val_scale=vals.sum(-1) / d)  # trace / D, as for the final fit
    # Row-major copies: eigh returns column-major eigenvectors, and a matrix product takes
    # another BLAS path (other rounding) for another memory layout, so a state must hold the
    # same layout however it was made (prepared in a batch, selected, joined).
    tensors = {name: v.contiguous() if isinstance(v, torch.Tensor) else v
               for name, v in dict(fingerprint=_fingerprint(x), x_mean=x_mean, feats=feats,
                                   evals=evals, scale=scale, basis=basis, **fields).items()}
    return SolverState(shape=(k, m, d), l2=None if l2 is None else float(l2),
                       val_fraction=float(val_fraction), primal=primal, **tensors)


def _spectral_fit(xc: torch.Tensor, gram: torch.Tensor | None):
    """Eigenbasis of the centred rows: features F (K, M, r) float32, eigenvalues (K, r) and
    scale (K,) float64, and the map back to pixels (see :class:`SolverState`)."""
    d = xc.shape[-1]
    if gram is None:  # primal: X_c^T X_c = V diag(ev) V^T, B = V, F = X_c V
        xcd = xc.double()
        evals, vecs = torch.linalg.eigh(instance_mm(xcd.transpose(1, 2), xcd))
        evals = evals.clamp_min(0.0)
        return instance_mm(xcd, vecs).float(), evals, evals.sum(-1) / d, vecs.float()
    # dual: X_c X_c^T = U diag(ev) U^T, so X_c = U diag(sqrt ev) B^T with B = X_c^T U diag(ev^-1/2)
    # orthonormal; F = U diag(sqrt ev), and W = B beta = X_c^T (U diag(ev^-1/2) beta).
    evals, vecs = torch.linalg.eigh(gram)
    evals = evals.clamp_min(0.0)
    keep = evals > _NULL_RTOL * evals.amax(-1, keepdim=True)
    root = torch.where(keep, evals.sqrt(), torch.zeros_like(evals))
    inv_root = torch.where(keep, 1.0 / root.clamp_min(1e-300), torch.zeros_like(evals))
    # The null directions stay, as exact zeros (feature and basis columns 0): r = M for every
    # instance whatever else is in the batch, so an instance's solve has the same shapes, and so
    # the same arithmetic, alone or with others (dropping the directions null for the whole
    # batch made r, and the rounding of every sum over it, depend on the batch).
    feats = vecs * root.unsqueeze(1)
    basis = vecs * inv_root.unsqueeze(1)
    kept = torch.where(keep, evals, 0.0)
    return feats.float(), kept, evals.sum(-1) / d, basis.float()


def _split_grams(gram: torch.Tensor, tr: torch.Tensor, va: torch.Tensor):
    """Train and validation/train Grams of rows ``tr``/``va`` centred on the train rows' mean m,
    straight from ``gram`` (K, M, M) of all rows, without any D-sized work: re-centring is a
    rank-2 correction, <x_i - m, x_j - m> = G_ij - r_i - r_j + s with r_i = <x_i, m>, s = <m, m>.
    """
    r = gram[:, :, tr].mean(-1)  # (K, M)
    s = r[:, tr].mean(-1).view(-1, 1, 1)
    r_tr = r[:, tr]
    g_tr = gram[:, tr][:, :, tr] - r_tr.unsqueeze(-1) - r_tr.unsqueeze(1) + s
    g_va = gram[:, va][:, :, tr] - r[:, va].unsqueeze(-1) - r_tr.unsqueeze(1) + s
    return g_tr, g_va


def _kl_t(teacher_logp_t: torch.Tensor, student_logits: torch.Tensor, t: float) -> torch.Tensor:
    """Mean over rows of KL(teacher_T || student_T) * T^2, per instance: (..., K, N, C) -> (..., K)."""
    s_logp = log_softmax_classes(student_logits / t)
    kl = (teacher_logp_t.exp() * (teacher_logp_t - s_logp)).sum(-1)
    return kl.mean(-1) * t * t


def fit_students(x: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                 l2: float | None = None, refine_steps: int = 10, val_fraction: float = 0.25,
                 generator: torch.Generator | None = None,
                 state: SolverState | None = None) -> Student:
    """Distil K linear students at once.

    Args:
        x: (K, M, D) flattened neighbours used for fitting.
        teacher_logits: (K, M, C) the teacher's logits on them.
        temperature: distillation temperature T.
        l2: relative L2 strength; ``None`` picks it per instance from :data:`L2_GRID`.
        refine_steps: LBFGS iterations on the KL objective (0 = ridge warm start only).
        val_fraction: fraction of the rows used to pick ``l2`` (when ``l2`` is None).
        generator: draws that validation split.
        state: from ``prepare_solver(x, l2, val_fraction, generator)``: skips all x-only work.
            It must come from this ``x`` and the same ``l2`` and ``val_fraction``; ``generator``
            must then be None (the split was drawn by ``prepare_solver``).
    """
    if state is None:
        state = prepare_solver(x, l2=l2, val_fraction=val_fraction, generator=generator)
        x = x.detach().float()
    else:
        x = _check_state(state, x, l2, val_fraction, generator)
    if (not isinstance(teacher_logits, torch.Tensor) or teacher_logits.dim() != 3
            or teacher_logits.shape[:2] != x.shape[:2] or teacher_logits.shape[2] < 2):
        got = (tuple(teacher_logits.shape) if isinstance(teacher_logits, torch.Tensor)
               else type(teacher_logits).__name__)
        raise ValueError(f"teacher_logits: expected shape ({x.shape[0]}, {x.shape[1]}, C >= 2) "
                         f"to match x, got {got}")
    t_logits = teacher_logits.detach().float()
    k = x.shape[0]
    target = t_logits - t_logits.mean(-1, keepdim=True)  # softmax ignores a per-row shift
    tm = target.mean(1, keepdim=True)
    t_logp = log_softmax_classes(t_logits / temperature)

    if state.l2 is None:
        rel = _pick_l2(state, target, t_logp, temperature)
    else:
        rel = torch.full((k,), state.l2, dtype=torch.float64)

    # Final ridge on all fitting rows, each instance with its own strength: in the eigenbasis
    # beta = F^T y / (ev + lam), with F^T F = diag(ev).
    lam = rel * state.scale  # (K,) absolute ridge strength
    rhs = instance_mm(state.feats.transpose(1, 2), target - tm).double()
    beta = (rhs / (state.evals + lam.unsqueeze(-1)).unsqueeze(-1)).float()
    b = tm.squeeze(1)  # (K, C) bias in centred coordinates

    if refine_steps > 0:
        beta, b = refine(state.feats, t_logp, beta, b, lam.float(), temperature, refine_steps)
    if state.primal:
        w = instance_mm(state.basis, beta)
    else:  # W = X_c^T a = X^T a - mean (1^T a), without materialising X_c
        a = instance_mm(state.basis, beta)  # (K, M, C)
        w = instance_mm(x.transpose(1, 2), a) - state.x_mean.transpose(1, 2) * a.sum(1, keepdim=True)
    bias = b - instance_mm(state.x_mean, w).squeeze(1)  # back to uncentred inputs
    return Student(weight=w.float(), bias=bias.float(), l2=rel.float())


def _check_state(state: object, x: torch.Tensor, l2: float | None, val_fraction: float,
                 generator: torch.Generator | None) -> torch.Tensor:
    if not isinstance(state, SolverState):
        raise TypeError(f"state: expected a SolverState from prepare_solver(), got "
                        f"{type(state).__name__}")
    x = _check_x(x)
    if tuple(x.shape) != state.shape:
        raise ValueError(f"state: expected x of shape {state.shape} (the x it was prepared "
                         f"for), got {tuple(x.shape)}; call prepare_solver(x, ...) again")
    if (l2 is None) != (state.l2 is None) or (l2 is not None and float(l2) != state.l2):
        raise ValueError(f"l2: expected {state.l2!r} (the state was prepared with it), got {l2!r}")
    if float(val_fraction) != state.val_fraction:
        raise ValueError(f"val_fraction: expected {state.val_fraction!r} (the state was prepared "
                         f"with it), got {val_fraction!r}")
    if generator is not None:
        raise ValueError("generator: expected None with a state (prepare_solver drew the "
                         "validation split), got a torch.Generator")
    if not state.matches(x):
        raise ValueError("state: x differs from the rows the state was prepared for (same "
                         "shape, other values); call prepare_solver(x, ...) again")
    return x


def _pick_l2(state: SolverState, target: torch.Tensor, t_logp: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """Relative L2 per instance (K,) float64: the grid value with the lowest validation KL."""
    tr, va = state.train_idx, state.val_idx
    ytr_m = target[:, tr].mean(1, keepdim=True)
    coef = instance_mm(state.val_proj.transpose(1, 2), (target[:, tr] - ytr_m).double())  # (K, r, C)
    grid = torch.tensor(L2_GRID, dtype=torch.float64)
    lam = grid.view(-1, 1, 1) * state.val_scale.view(1, -1, 1)  # (G, K, 1)
    shrunk = coef.unsqueeze(0) / (state.val_evals.unsqueeze(0) + lam).unsqueeze(-1)
    # (G, K, M_va, C): one product per instance over the whole grid (see instance_mm)
    val_logits = torch.stack([state.val_pred[i] @ shrunk[:, i] for i in range(len(state.val_pred))],
                             1).float() + ytr_m.unsqueeze(0)
    val_kl = _kl_t(t_logp[:, va].unsqueeze(0), val_logits, temperature)  # (G, K)
    return grid[val_kl.argmin(0)]
