"""Summit: activation and influence aggregation, attribution graphs, stability."""

import dataclasses
import random

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.resnet import BasicBlock

from deepvid_plugin.demo.digits import DigitsCNN
from deepvid_plugin.methods.summit import Summit, jaccard, pagerank
from deepvid_plugin.methods.summit.aggregate import conv_influence, top_influences, top_share_mask


# ---- models ------------------------------------------------------------------------------------
def red_green_model() -> nn.Module:
    """Conv1 channel 0 sees red, 1 sees green, 2..5 see blue noise; conv2 channel 0 reads conv1
    channel 0 (the red path), channel 1 reads channel 1 (green); the head reads conv2 0 / 1."""
    m = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
                      nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        c1, c2, fc = m[0], m[2], m[6]
        c1.weight[0, 0, 1, 1] = 1.0
        c1.weight[1, 1, 1, 1] = 1.0
        for j in range(2, 6):
            c1.weight[j, 2, 1, 1] = 0.2 + 0.05 * j
        c2.weight[:, 2:, 1, 1] = 0.1  # every output also sees the noise channels a little
        c2.weight[0, 0, 1, 1] = 1.0
        c2.weight[1, 1, 1, 1] = 1.0
        fc.weight[:, 2:] = 0.05
        fc.weight[0, 0] = 1.0
        fc.weight[1, 1] = 1.0
    return m


def red_green_data(n: int = 20):
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(2 * n, 3, 8, 8)
    x[:, 2] = torch.rand(2 * n, 8, 8, generator=g) * 0.5  # blue noise everywhere
    y = torch.arange(2 * n) % 2  # 0 = red, 1 = green
    for i in range(2 * n):
        r, c = torch.randint(0, 7, (2,), generator=g).tolist()
        x[i, int(y[i]), r:r + 2, c:c + 2] = 1.0
    return x, y


class TinyResNet(nn.Module):
    """A stem and two torchvision BasicBlocks: one identity shortcut, one 1x1 downsample."""

    def __init__(self, n_classes: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.b1 = BasicBlock(8, 8)
        self.b2 = BasicBlock(8, 16, stride=2, downsample=nn.Sequential(
            nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x):
        x = self.b2(self.b1(self.relu(self.bn(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.fixture(scope="module")
def tiny_resnet_result():
    torch.manual_seed(0)
    model = TinyResNet()
    _randomise_bn(model)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(24, 3, 8, 8, generator=g)
    y = torch.arange(24) % 3
    return Summit(x, y, ["stem", "b1", "b2"], per_class=8).aggregate(model)


@pytest.fixture(scope="module")
def digits_result(digits):
    torch.manual_seed(0)
    model = DigitsCNN()
    summit = Summit(digits.x_train, digits.y_train, ["features.0", "features.3"], per_class=6)
    return summit, summit.aggregate(model)


def _edges(graph):
    return {(e["source"], e["target"]) for e in graph["edges"]}


# ---- the tests the issue asks for --------------------------------------------------------------
def test_red_and_green_paths_are_found():
    x, y = red_green_data()
    result = Summit(x, y, ["0", "2"], class_names=["red", "green"], per_class=20, top_inputs=2,
                    nodes_per_layer=2, min_edge_weight=0.5).aggregate(red_green_model())
    red, green = result.graph("red"), result.graph(1)
    red_path = {("0:0", "2:0"), ("2:0", "6:0")}
    green_path = {("0:1", "2:1"), ("2:1", "6:1")}
    assert red_path <= _edges(red)
    assert green_path <= _edges(green)
    assert not green_path & _edges(red)
    assert not red_path & _edges(green)
    assert {"0:0", "2:0", "6:0"} <= {n["id"] for n in red["nodes"]}
    assert {"0:1", "2:1", "6:1"} <= {n["id"] for n in green["nodes"]}


def test_influence_counts_sum_to_top_k_times_images(digits_result, tiny_resnet_result):
    for result in (digits_result[1], tiny_resnet_result):
        assert len(result.influence) >= 2
        assert result.group_sizes.sum() > 0
        for inf in result.influence:
            expected = inf.top_k * result.group_sizes[:, None]
            np.testing.assert_array_equal(inf.counts.sum(axis=2), np.broadcast_to(
                expected, inf.counts.shape[:2]), err_msg=inf.target)
    # top_k is top_inputs unless fewer inputs can be ranked
    assert [inf.top_k for inf in digits_result[1].influence] == [5, 5]


def test_grouped_conv_influence_equals_naive_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 9, 7, generator=g)
    w = torch.randn(5, 4, 3, 3, generator=g)
    cases = [((1, 1), (1, 1), (1, 1)), ((2, 1), (0, 2), (1, 2)), ((1, 1), (3, 3), (1, 1))]
    for stride, padding, dilation in cases:
        naive = torch.empty(3, 5, 4)
        for i in range(4):
            for o in range(5):
                y = F.conv2d(x[:, i:i + 1], w[o:o + 1, i:i + 1], stride=stride, padding=padding,
                             dilation=dilation)
                naive[:, o, i] = y.amax(dim=(1, 2, 3))
        # the same as one grouped convolution: group i = input i through all 5 kernels
        grouped = F.conv2d(x, w.transpose(0, 1).reshape(20, 1, 3, 3), stride=stride,
                           padding=padding, dilation=dilation, groups=4)
        torch.testing.assert_close(grouped.amax(dim=(2, 3)).view(3, 4, 5).transpose(1, 2), naive)
        whole = conv_influence(x, w, stride, padding, dilation)
        chunked = conv_influence(x, w, stride, padding, dilation, chunk_elements=1)
        torch.testing.assert_close(whole, naive)
        torch.testing.assert_close(chunked, naive)
        for chunk in (1, 1 << 20):  # the ranked form used by aggregate(), chunked or not
            values, indices = top_influences(x, w, 2, stride, padding, dilation, chunk)
            torch.testing.assert_close(values, naive.topk(2, dim=2).values)
            torch.testing.assert_close(naive.gather(2, indices), values)
    # a 3x3 kernel on a 1x1 map: only the centre tap ever sees the image
    x1 = torch.randn(2, 4, 1, 1, generator=g)
    torch.testing.assert_close(conv_influence(x1, w, (1, 1), (1, 1)),
                               (w[None, :, :, 1, 1] * x1[:, None, :, 0, 0]))


def test_top_share_counts_the_fewest_channels_reaching_the_share():
    maxima = torch.tensor([[0.3, 0.5, 0.2, -1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    assert top_share_mask(maxima, 0.6).tolist() == [[True, True, False, False],
                                                     [False, False, False, False],
                                                     [True, True, True, False]]
    assert top_share_mask(maxima, 0.03)[0].tolist() == [False, True, False, False]
    assert top_share_mask(maxima, 1.0)[0].tolist() == [True, True, True, False]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pagerank_matches_networkx(seed):
    rng = np.random.default_rng(seed)
    n = 40
    pairs = {(int(a), int(b)) for a, b in rng.integers(0, n, size=(150, 2)) if a != b}
    pairs = {(a, b) for a, b in pairs if a % 7 != 3}  # nodes 3, 10, ... dangle
    assert len(pairs) > 50
    edges = sorted(pairs)
    weights = rng.uniform(0.1, 5.0, size=len(edges))
    personal = rng.uniform(0, 1, size=n) * (rng.uniform(size=n) > 0.3)
    assert personal.sum() > 0 and (personal == 0).any()
    G = nx.DiGraph()
    G.add_nodes_from(range(n))
    G.add_weighted_edges_from((a, b, w) for (a, b), w in zip(edges, weights, strict=True))
    expected = nx.pagerank(G, alpha=0.85, personalization=dict(enumerate(personal)),
                           weight="weight")
    src, dst = np.array(edges).T
    got = pagerank(n, src, dst, weights, personal, alpha=0.85)
    np.testing.assert_allclose(got, [expected[i] for i in range(n)], atol=1e-9)


@pytest.mark.parametrize("k", [1, 2])
def test_negative_batchnorm_gamma_flips_the_ranking(k):
    def influence_for(gamma: float) -> np.ndarray:
        m = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1, bias=False),
                          nn.BatchNorm2d(2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 2))
        with torch.no_grad():
            m[0].weight.fill_(1.0)
            m[0].bias.zero_()
            m[2].weight.copy_(torch.tensor([[2.0, 1.0, -1.0, -2.0], [0.5, 0.5, 0.5, 0.5]])
                              .view(2, 4, 1, 1))
            m[3].weight.copy_(torch.tensor([gamma, 1.0]))
        g = torch.Generator().manual_seed(0)
        x = 0.5 + 0.5 * torch.rand(10, 1, 5, 5, generator=g)
        y = torch.arange(10) % 2
        r = Summit(x, y, ["0", "2"], per_class=5, top_inputs=k).aggregate(m)
        return r.influence[0].counts[:, 0, :].sum(axis=0)  # output channel 0, all classes

    positive, negative = influence_for(1.5), influence_for(-1.5)
    assert set(np.flatnonzero(positive)) == set(range(k))  # the largest weights first
    assert set(np.flatnonzero(negative)) == set(range(4 - k, 4))  # now the most negative
    assert positive.sum() == negative.sum() == 10 * k


def test_residual_blocks_give_branch_and_shortcut_edges(tiny_resnet_result):
    r = tiny_resnet_result
    assert r.layers == ("stem", "b1.conv1", "b1", "b2.conv1", "b2")
    by_target = {inf.target: inf for inf in r.influence}
    assert set(by_target) == {"b1.conv1", "b1", "b2.conv1", "b2", "fc"}
    b1, b2 = by_target["b1"], by_target["b2"]
    assert b1.sources == (("b1.conv1", 0, 8), ("stem", 8, 16))
    assert b2.sources == (("b2.conv1", 0, 16), ("b1", 16, 24))
    # identity shortcut: stem channel i feeds only b1 channel i
    shortcut = b1.counts[:, :, 8:].sum(axis=0)
    assert np.trace(shortcut) > 0 and (shortcut - np.diag(np.diag(shortcut)) == 0).all()
    assert b1.counts[:, :, :8].sum() > 0
    assert b2.counts[:, :, 16:].sum() > 0 and b2.counts[:, :, :16].sum() > 0
    # and both kinds of edge reach the attribution graph when nothing is pruned
    wide = dataclasses.replace(r, settings={**r.settings, "nodes_per_layer": 16,
                                            "min_edge_weight": 0.0})
    kinds = {(e["source"].split(":")[0], e["target"].split(":")[0])
             for e in wide.graph(0)["edges"]}
    assert {("b1.conv1", "b1"), ("stem", "b1"), ("b2.conv1", "b2"), ("b1", "b2"),
            ("stem", "b1.conv1"), ("b1", "b2.conv1"), ("b2", "fc")} <= kinds


def test_bad_layer_names_list_close_matches():
    x, y = torch.rand(4, 1, 8, 8), torch.arange(4) % 2
    with pytest.raises(ValueError, match=r"got 'features\.O'; close matches: \[[^]]*'features\.0'"):
        Summit(x, y, ["features.O", "features.3"]).aggregate(DigitsCNN())
    with pytest.raises(ValueError, match=r"features\.0.*head\.2.*'features\.3' \(Conv2d\)"):
        Summit(x, y, ["features.0"]).aggregate(DigitsCNN())
    with pytest.raises(ValueError, match=r"forward order"):
        Summit(x, y, ["features.3", "features.0"]).aggregate(DigitsCNN())
    with pytest.raises(ValueError, match=r"group_by: expected one of \['label', 'prediction'\]"):
        Summit(x, y, ["features.0"], group_by="pred")


# ---- the rest of the contract ------------------------------------------------------------------
def test_graph_nodes_and_edges(digits_result):
    summit, r = digits_result
    g = r.graph("3")
    assert g["nodes"] and g["edges"]
    per_layer = {}
    for node in g["nodes"]:
        assert node["id"] == f"{node['layer']}:{node['channel']}"
        per_layer[node["layer"]] = per_layer.get(node["layer"], 0) + 1
        assert len(node["examples"]) == 4
        assert set(node["examples"]) <= set(summit.indices.tolist())
        assert node["pagerank"] > 0
    assert per_layer == {"features.0": 6, "features.3": 6, "head.2": 1}
    ids = {n["id"] for n in g["nodes"]}
    for e in g["edges"]:
        assert e["source"] in ids and e["target"] in ids
        assert e["weight"] >= 0.1 and e["weight"] == e["count"] / r.group_sizes[3]
    cls = [n for n in g["nodes"] if n["layer"] == "head.2"]
    assert cls[0]["class"] == "3" and cls[0]["activation"] == r.group_sizes[3]
    with pytest.raises(ValueError, match=r"cls: expected one of"):
        r.graph("ten")


def test_examples_are_the_top_activations(digits):
    torch.manual_seed(0)
    model = DigitsCNN()
    summit = Summit(digits.x_train, digits.y_train, ["features.0", "features.3"], per_class=3)
    r = summit.aggregate(model)
    model.eval()
    with torch.no_grad():
        acts = model.features[:3](digits.x_train[summit.indices]).amax(dim=(2, 3))
    for ch in (0, 7):
        best = summit.indices[acts[:, ch].topk(4).indices].tolist()
        assert sorted(r.examples["features.0"][ch].tolist()) == sorted(best)


def test_model_and_rng_untouched(digits):
    torch.manual_seed(3)
    model = DigitsCNN()
    model.train()
    model.head.eval()
    model(digits.x_train[:16]).sum().backward()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    flags = [m.training for m in model.modules()]
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    rng = (random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state())
    Summit(digits.x_train, digits.y_train, ["features.0", "features.3"],
           per_class=4, group_by="prediction").aggregate(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters())
    assert [m.training for m in model.modules()] == flags
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert random.getstate() == rng[0]
    assert np.array_equal(np.random.get_state()[1], rng[1])
    assert torch.equal(torch.random.get_rng_state(), rng[2])


def test_hooks_removed_after_an_error(digits):
    model = DigitsCNN()
    bad = Summit(digits.x_train, digits.y_train, ["features.0", "features.3"], per_class=2,
                 class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"class_names: expected 10 names"):
        bad.aggregate(model)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_per_class_sampling_is_seeded(digits):
    a = Summit(digits.x_train, digits.y_train, ["features.0"], per_class=5, seed=7)
    b = Summit(digits.x_train, digits.y_train, ["features.0"], per_class=5, seed=7)
    c = Summit(digits.x_train, digits.y_train, ["features.0"], per_class=5, seed=8)
    assert torch.equal(a.indices, b.indices)
    assert not torch.equal(a.indices, c.indices)
    np.testing.assert_array_equal(torch.bincount(digits.y_train[a.indices]).numpy(), [5] * 10)


def test_group_by_prediction(digits):
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    summit = Summit(digits.x_train, digits.y_train, ["features.0", "features.3"], per_class=4,
                    group_by="prediction")
    r = summit.aggregate(model)
    with torch.no_grad():
        pred = model(digits.x_train[summit.indices]).argmax(1)
    np.testing.assert_array_equal(r.group_sizes, torch.bincount(pred, minlength=10).numpy())
    for name in r.layers:  # every image marks at least one channel for its class
        assert (r.activation[name].sum(axis=1) >= r.group_sizes).all()


def test_stability_is_jaccard_of_node_sets(digits, digits_result):
    summit, first = digits_result
    assert first.stability(first) == {str(c): 1.0 for c in range(10)}
    torch.manual_seed(1)
    second = summit.aggregate(DigitsCNN())
    got = second.stability(first)
    assert set(got) == {str(c) for c in range(10)}
    for c in range(10):
        a, b = ({n["id"] for n in r.graph(c)["nodes"] if n["layer"] != "head.2"}
                for r in (first, second))
        assert got[str(c)] == pytest.approx(len(a & b) / len(a | b))
    assert min(got.values()) < 1.0
    assert jaccard(set(), set()) == 1.0 and jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3)


def test_a_module_that_runs_twice_is_reported():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).mean(dim=(2, 3)))

    model = Twice()
    x, y = torch.rand(4, 3, 6, 6), torch.arange(4) % 2
    with pytest.raises(RuntimeError, match=r"'conv' ran more than once"):
        Summit(x, y, ["conv"]).aggregate(model)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
