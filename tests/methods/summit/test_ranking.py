"""Summit's ranked influences (the fast paths of ``top_influences``) against the full tensor.

``top_influences`` ranks rows in a -inf padded buffer when they are short (so torch.topk takes
its partial-sort path) and forms one-tap, one-position hops (a 3x3 kernel on a 1x1 map) as
plain products instead of a matmul. These tests pin both against ``conv_influence`` ranked with
``topk`` on the whole (N, out, in) tensor, and a whole ``aggregate`` against counts built that
way, bit for bit (random weights: no ties between the k-th and the (k+1)-th value).
"""

import pytest
import torch
from torch import nn

from deepvid_plugin.methods.summit import Summit
from deepvid_plugin.methods.summit.aggregate import _ranked_width, conv_influence, top_influences


def _ranked_reference(x, w, k, stride, padding):
    full = conv_influence(x, w, stride, padding)  # (N, out, in), the matmul path, unranked
    return full.topk(k, dim=2)


@pytest.mark.parametrize("size", [1, 5])  # 1: the one-tap, one-position product path
@pytest.mark.parametrize("k", [1, 2, 5])
def test_top_influences_equal_ranking_the_full_tensor(size, k):
    g = torch.Generator().manual_seed(k * 10 + size)
    c_in = 100  # pads to 64 * k for k = 2 (128) and k = 5 (320); k = 1 (64) ranks unpadded
    x = torch.rand(6, c_in, size, size, generator=g)
    w = torch.randn(7, c_in, 3, 3, generator=g)
    ref = _ranked_reference(x, w, k, (1, 1), (1, 1))
    values, indices = top_influences(x, w, k, (1, 1), (1, 1))  # the reference's chunking
    assert values.shape == indices.shape == (6, 7, k)
    torch.testing.assert_close(values, ref.values, rtol=0, atol=0)
    assert torch.equal(indices, ref.indices)
    full = conv_influence(x, w, (1, 1), (1, 1))
    for chunk in (1, 5000):  # per-row chunks, a few images: other matmul shapes, and so sums
        values, indices = top_influences(x, w, k, (1, 1), (1, 1), chunk_elements=chunk)
        torch.testing.assert_close(values, ref.values)  # may round differently
        torch.testing.assert_close(full.gather(2, indices), values)


def test_short_rows_are_padded_only_where_it_pays():
    cpu = torch.device("cpu")
    assert _ranked_width(100, 2, cpu) == 128
    assert _ranked_width(256, 5, cpu) == 320
    assert _ranked_width(512, 5, cpu) == 512  # long enough already
    assert _ranked_width(64, 5, cpu) == 64  # 5x padding would cost more than it saves


def test_rows_holding_minus_infinity_never_return_a_padding_index():
    x = torch.full((2, 100, 1, 1), float("inf"))
    w = -torch.ones(3, 100, 1, 1)  # every contribution is -inf, tied with the padding
    values, indices = top_influences(x, w, 2)
    assert (indices < 100).all()
    assert torch.isneginf(values).all()


def test_aggregate_counts_equal_counts_from_the_full_ranking():
    """The whole pipeline (hooks, BatchNorm folding, chunking, ranking, bincount) against
    influence counts computed directly from the unranked tensor, on a hop wide enough to take
    the padded path and one on a 1x1 map that takes the product path."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 120, 3, padding=1), nn.ReLU(),                           # 0: 4x4
        nn.Conv2d(120, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU(),  # 2
        nn.MaxPool2d(4),                                                       # to 1x1
        nn.Conv2d(24, 110, 3, padding=1), nn.ReLU(),                           # 6: 1x1 map
        nn.Conv2d(110, 9, 3, padding=1), nn.ReLU(),                            # 8: 1x1 map
        nn.Flatten(), nn.Linear(9, 3))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        bn = model[3]
        bn.running_mean.copy_(torch.randn(24, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(24, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(24, generator=g))  # some negative gammas
    x = torch.rand(30, 3, 4, 4, generator=g)
    y = torch.arange(30) % 3
    k = 5
    result = Summit(x, y, ["0", "2", "6", "8"], per_class=10, top_inputs=k,
                    batch_size=7).aggregate(model)
    model.eval()
    with torch.no_grad():
        inputs = {"2": model[:2](x), "6": model[:6](x), "8": model[:8](x)}
        scale = torch.rsqrt(bn.running_var + bn.eps) * bn.weight
        weights = {"2": model[2].weight * scale.view(-1, 1, 1, 1), "6": model[6].weight,
                   "8": model[8].weight}
    by_target = {inf.target: inf for inf in result.influence}
    for name, inp in inputs.items():
        top = _ranked_reference(inp, weights[name], k, (1, 1), (1, 1)).indices  # (N, out, k)
        c_out, c_in = weights[name].shape[:2]
        expected = torch.zeros(3, c_out, c_in, dtype=torch.long)
        for n in range(len(x)):
            for o in range(c_out):
                expected[y[n], o, top[n, o]] += 1
        got = by_target[name].counts
        assert got.shape == (3, c_out, c_in)
        assert (got == expected.numpy()).all(), name
        assert got.sum() == 30 * c_out * k
