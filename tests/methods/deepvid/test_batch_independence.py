"""An instance's explanation does not depend on the batch it is explained in: alone, with other
instances, or in another order, it is the same record, bit for bit. That is what lets DDP ranks
explain disjoint shares of the instances and log what a one-process run logs."""

import torch

from deepvid_plugin.explain import DeepVID
from deepvid_plugin.methods.deepvid import student as S
from tests.methods.deepvid.test_student_cache import rows, teacher


def test_deepvid_record_alone_with_others_and_reordered(digits, digits_cnn, digits_vae):
    x, ids = digits.x_test[:5], ["a", "b", "c", "d", "e"]

    def explain(index):
        # a fresh engine each time: nothing cached from an earlier batch can help
        dv = DeepVID(digits_vae, n_neighbours=64)
        return dv.explain(digits_cnn, x[index], ids=[ids[i] for i in index], step=3)

    together = explain([0, 1, 2, 3, 4])
    alone = explain([2])
    reordered = explain([4, 2, 0])
    assert alone[0] == together[2]
    assert reordered[0] == together[4] and reordered[1] == together[2]
    assert reordered[2] == together[0]
    # not trivially equal: the instances' explanations differ from each other
    assert together[0].encode() != together[2].encode()
    assert float(abs(together[2].weights.astype("f4")).max()) > 0


def test_student_solver_is_per_instance_refinement_included():
    """The L-BFGS refinement keeps history, step and stopping test per instance, and the closed
    form and the L2 pick never mix instances: a subset or a permutation gives the same bits."""
    x = rows(6, 120, 300)  # dual form (D > M)
    logits = teacher(x, 1) * 3
    full = S.fit_students(x, logits, 2.0, generator=torch.Generator().manual_seed(7))
    perm = torch.tensor([5, 3, 0, 4, 1, 2])
    shuffled = S.fit_students(x[perm], logits[perm], 2.0,
                              generator=torch.Generator().manual_seed(7))
    one = S.fit_students(x[3:4], logits[3:4], 2.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(shuffled.weight, full.weight[perm])
    assert torch.equal(shuffled.bias, full.bias[perm]) and torch.equal(shuffled.l2, full.l2[perm])
    assert torch.equal(one.weight[0], full.weight[3]) and torch.equal(one.bias[0], full.bias[3])
    # the refinement did something (so the comparison covers it)
    warm = S.fit_students(x, logits, 2.0, refine_steps=0,
                          generator=torch.Generator().manual_seed(7))
    assert (warm.weight - full.weight).abs().max() > 1e-4


def test_refinement_lowers_every_instances_objective():
    """Per-instance steps are only taken when they lower that instance's objective."""
    from torch.nn import functional as F

    x = rows(4, 80, 40)  # primal form
    logits = teacher(x, 2) * 3
    state = S.prepare_solver(x, l2=0.01)

    def objective(st):
        t = 2.0
        t_logp = F.log_softmax(logits / t, -1)
        s_logp = F.log_softmax(st.logits(x) / t, -1)
        kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean(-1) * t * t
        lam = 0.01 * state.scale / (2 * logits.shape[-1] * x.shape[1])
        # ||W|| = ||beta|| (an isometry), so the penalty is read off the pixel weights
        return kl + lam.float() * st.weight.square().sum((1, 2))

    before = objective(S.fit_students(x, logits, 2.0, l2=0.01, refine_steps=0, state=state))
    after = objective(S.fit_students(x, logits, 2.0, l2=0.01, state=state))
    assert bool((after < before).all()), (before, after)
