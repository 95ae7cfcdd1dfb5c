"""explain() leaves the user's model and the process's RNGs exactly as it found them."""

import random

import numpy as np
import torch

from deepvid_plugin.demo.digits import DigitsCNN
from deepvid_plugin.explain import DeepVID


def _hooks(model):
    return [(name, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for name, m in model.named_modules()]


def test_model_and_rng_untouched(digits, digits_vae):
    torch.manual_seed(3)
    model = DigitsCNN()
    model.train()
    model.head.eval()  # a mixed state must come back exactly
    model.features[0].weight.requires_grad_(False)
    out = model(digits.x_train[:32])
    out.sum().backward()  # leave gradients on the other parameters
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    before_grads = {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
    before_flags = [m.training for m in model.modules()]
    before_req = [p.requires_grad for p in model.parameters()]
    before_hooks = _hooks(model)
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    rng = (random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state())

    records = DeepVID(digits_vae, n_neighbours=64).explain(model, digits.x_test[:4])

    assert len(records) == 4
    after = model.state_dict()
    for k, v in before_state.items():  # parameters and BatchNorm running stats / counters
        assert torch.equal(v, after[k]), k
    for n, p in model.named_parameters():
        g = before_grads[n]
        assert (p.grad is None) == (g is None) and (g is None or torch.equal(p.grad, g)), n
    assert [m.training for m in model.modules()] == before_flags
    assert [p.requires_grad for p in model.parameters()] == before_req
    assert _hooks(model) == before_hooks
    assert random.getstate() == rng[0]
    assert np.array_equal(np.random.get_state()[1], rng[1])
    assert torch.equal(torch.random.get_rng_state(), rng[2])
