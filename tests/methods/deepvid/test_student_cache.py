"""The student solver's reusable x-only state (`prepare_solver` / `fit_students(state=...)`)."""

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from deepvid_plugin.methods.deepvid import student as S

SHAPES = {"primal": (3, 60, 16), "dual": (3, 40, 100)}  # (K, M, D): D <= M and D > M


def rows(k, m, d, seed=0):
    """Fitting rows like DeepVID's: a per-instance base image, a low-rank variation, pixel noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(k, 1, d, generator=g)
    low = torch.randn(k, m, 4, generator=g) @ torch.randn(k, 4, d, generator=g) * 0.3
    return base + low + 0.05 * torch.randn(k, m, d, generator=g)


def teacher(x, seed):
    """A nonlinear teacher: each seed is another 'epoch' of the same model family."""
    g = torch.Generator().manual_seed(100 + seed)
    w1 = torch.randn(x.shape[-1], 16, generator=g) / x.shape[-1] ** 0.5
    return torch.tanh(x @ w1) @ (3 * torch.randn(16, 5, generator=g))


def gen():
    return torch.Generator().manual_seed(7)


@pytest.mark.parametrize("form", sorted(SHAPES))
@pytest.mark.parametrize("l2", [None, 0.01])
def test_cached_equals_uncached(form, l2):
    x = rows(*SHAPES[form])
    state = S.prepare_solver(x, l2=l2, generator=gen())
    first = S.fit_students(x, teacher(x, 1), 2.0, l2=l2, state=state)
    cached = S.fit_students(x, teacher(x, 2), 2.0, l2=l2, state=state)
    fresh = S.fit_students(x, teacher(x, 2), 2.0, l2=l2, generator=gen())
    torch.testing.assert_close(cached.weight, fresh.weight, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached.bias, fresh.bias, rtol=1e-5, atol=1e-5)
    assert torch.equal(cached.l2, fresh.l2)
    # The second epoch's teacher differs, so a state that kept the first logits would fail above.
    assert not torch.allclose(first.weight, cached.weight, atol=1e-3)


def direct_ridge(x, target, rel):
    """Reference: float64 ridge in pixel space, (X_c^T X_c + lam I) W = X_c^T y, with lam relative
    to the mean eigenvalue (trace / D), and the bias that goes with it."""
    x, target = x.double(), target.double()
    xm, tm = x.mean(0, keepdim=True), target.mean(0, keepdim=True)
    xc = x - xm
    a = xc.T @ xc
    lam = rel * a.trace() / x.shape[1]
    w = torch.linalg.solve(a + lam * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ (target - tm))
    return w, (tm - xm @ w).squeeze(0)


@pytest.mark.parametrize("form", sorted(SHAPES))
def test_warm_start_is_the_ridge_solution(form):
    x = rows(*SHAPES[form])
    logits = teacher(x, 1)
    target = logits - logits.mean(-1, keepdim=True)
    s = S.fit_students(x, logits, 2.0, l2=0.01, refine_steps=0)
    assert s.weight.shape == (x.shape[0], x.shape[2], 5)
    for i in range(x.shape[0]):
        w, b = direct_ridge(x[i], target[i], 0.01)
        # Relative to the whole map: the Gram is formed in float32 (as before the cache), which
        # costs ~1e-4 of the map's norm in dual form; a wrong formula costs ~1.
        assert (s.weight[i].double() - w).norm() < 1e-3 * w.norm()
        assert (s.bias[i].double() - b).norm() < 1e-3 * b.norm()


@pytest.mark.parametrize("form", sorted(SHAPES))
def test_auto_l2_picks_the_lowest_validation_kl(form):
    x = rows(*SHAPES[form])
    logits, t = teacher(x, 1), 2.0
    k, m, _ = x.shape
    s = S.fit_students(x, logits, t, refine_steps=0, generator=gen())
    n_val = round(m * 0.25)
    perm = torch.randperm(m, generator=gen())
    tr, va = perm[n_val:], perm[:n_val]
    target = logits - logits.mean(-1, keepdim=True)
    t_logp = F.log_softmax(logits[:, va].double() / t, -1)
    picks = []
    for i in range(k):
        kls = []
        for rel in S.L2_GRID:
            w, b = direct_ridge(x[i, tr], target[i, tr], rel)
            s_logp = F.log_softmax((x[i, va].double() @ w + b) / t, -1)
            kls.append(float((t_logp[i].exp() * (t_logp[i] - s_logp)).sum(-1).mean()))
        picks.append(S.L2_GRID[min(range(len(kls)), key=kls.__getitem__)])
    assert len(set(picks)) >= 1 and len(picks) == k
    torch.testing.assert_close(s.l2, torch.tensor(picks, dtype=torch.float32))


def test_refuses_a_state_for_other_rows():
    x = rows(*SHAPES["dual"])
    state = S.prepare_solver(x, generator=gen())
    logits = teacher(x, 1)
    with pytest.raises(ValueError, match=r"state: expected x of shape \(3, 40, 100\)"):
        S.fit_students(x[:, :30], logits[:, :30], 2.0, state=state)
    other = x.clone()
    other[1, 5, 7] += 1.0
    with pytest.raises(ValueError, match="state: x differs"):
        S.fit_students(other, logits, 2.0, state=state)
    assert state.matches(x) and not state.matches(other)
    with pytest.raises(ValueError, match="l2: expected None"):
        S.fit_students(x, logits, 2.0, l2=0.01, state=state)
    with pytest.raises(ValueError, match="val_fraction: expected 0.25"):
        S.fit_students(x, logits, 2.0, val_fraction=0.5, state=state)
    with pytest.raises(ValueError, match="generator: expected None"):
        S.fit_students(x, logits, 2.0, generator=gen(), state=state)
    with pytest.raises(TypeError, match="state: expected a SolverState"):
        S.fit_students(x, logits, 2.0, state={"not": "a state"})
    with pytest.raises(ValueError, match="teacher_logits: expected shape"):
        S.fit_students(x, logits[:, :-1], 2.0, state=state)


@pytest.mark.parametrize("shape", [(2, 120, 30), (2, 120, 400)], ids=["primal", "dual"])
def test_second_call_does_no_x_only_work(shape, monkeypatch):
    x = rows(*shape)  # rows >> classes, as in DeepVID (M=410, C=10)
    calls = []
    real_eigh = torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda a: calls.append(a.shape) or real_eigh(a))
    with FlopCounterMode(display=False) as prep_flops:
        state = S.prepare_solver(x, generator=gen())
    assert len(calls) == 2  # the final fit's spectrum and the validation split's
    calls.clear()
    with FlopCounterMode(display=False) as fit_flops:
        S.fit_students(x, teacher(x, 1), 2.0, refine_steps=0, state=state)
    S.fit_students(x, teacher(x, 2), 2.0, state=state)
    assert calls == []
    # Time-independent evidence: the cached fit does a fraction of the matrix work of preparing.
    assert 0 < fit_flops.get_total_flops() < 0.5 * prep_flops.get_total_flops()


def test_select_and_concat_round_trip():
    x = rows(*SHAPES["dual"])
    logits = teacher(x, 1)
    state = S.prepare_solver(x, generator=gen())
    per_instance = [state.select([i]) for i in range(x.shape[0])]
    assert [s.shape for s in per_instance] == [(1, 40, 100)] * 3
    joined = S.SolverState.concat(per_instance)
    a = S.fit_students(x, logits, 2.0, state=state)
    b = S.fit_students(x, logits, 2.0, state=joined)
    torch.testing.assert_close(a.weight, b.weight)
    # Another grouping: instances 2 and 0 only, in that order; the refinement is per instance,
    # so the students are those of the whole batch, bit for bit.
    pair = S.SolverState.concat([per_instance[2], per_instance[0]])
    c = S.fit_students(x[[2, 0]], logits[[2, 0]], 2.0, state=pair)
    d = S.fit_students(x, logits, 2.0, state=state)
    assert torch.equal(c.weight, d.weight[[2, 0]]) and torch.equal(c.bias, d.bias[[2, 0]])
    fixed = S.prepare_solver(x, l2=0.01)
    with pytest.raises(ValueError, match="states: expected states with the same"):
        S.SolverState.concat([per_instance[0], fixed.select([1])])
    with pytest.raises(ValueError, match=r"index: expected .* in \[0, 3\)"):
        state.select([3])


def test_memory_at_resnet_scale():
    """K=16 instances x M=410 rows x D=3072 pixels must stay far below 300 MB; measured on two
    instances (the state is per instance) to keep the test fast."""
    x = rows(2, 410, 3072)
    state = S.prepare_solver(x, generator=gen())
    assert not state.primal
    per_16 = state.nbytes / 2 * 16
    assert 0 < per_16 < 60e6
    assert per_16 < 16 * 410 * 3072 * 4  # smaller than x itself: no D-sized copies in dual form


def test_states_prepared_separately_concat():
    """Per-instance states from separate prepare_solver calls (e.g. one per instance id, prepared
    when the id is first seen) join into a batch, even when their dual ranks differ: the null
    directions are kept as zero columns, so every state of one (M, D) has the same width."""
    x = rows(2, 40, 100)
    g = torch.Generator().manual_seed(3)
    x[0] = x[0, :1] + torch.randn(40, 3, generator=g) @ torch.randn(3, 100, generator=g)  # rank 3
    logits = teacher(x, 1)
    alone = [S.prepare_solver(x[i : i + 1], generator=gen()) for i in range(2)]
    assert alone[0].feats.shape == alone[1].feats.shape == (1, 40, 40)
    null = alone[0].evals[0] == 0  # the numerical null space of the rank-3 instance
    assert int(null.sum()) > int((alone[1].evals[0] == 0).sum())
    assert not alone[0].feats[..., null].any() and not alone[0].basis[..., null].any()
    joined = S.SolverState.concat(alone)
    a = S.fit_students(x, logits, 2.0, state=joined, refine_steps=0)
    b = S.fit_students(x, logits, 2.0, generator=gen(), refine_steps=0)
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.l2, b.l2)
    refined = S.fit_students(x, logits, 2.0, state=joined)
    assert torch.isfinite(refined.weight).all()


@pytest.mark.parametrize("form", sorted(SHAPES))
def test_grouping_of_preparation_does_not_change_students(form):
    """DeepVID prepares a state when an id is first seen, in whatever batch it came with; the
    students must not depend on that history (refinement included)."""
    x = rows(*SHAPES[form])
    logits = teacher(x, 1)
    batch = S.prepare_solver(x, generator=gen())
    mixed = S.SolverState.concat([S.prepare_solver(x[:1], generator=gen()),
                                  S.prepare_solver(x[1:], generator=gen())])
    a = S.fit_students(x, logits, 2.0, state=batch)
    b = S.fit_students(x, logits, 2.0, state=mixed)
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.bias, b.bias, rtol=1e-5, atol=1e-6)
