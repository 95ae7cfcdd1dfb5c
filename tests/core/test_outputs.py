"""core.outputs: logits from whatever a model returns, probabilities as ``outputs`` defines them,
and the ModelView the callbacks run a model through."""

import collections

import pytest
import torch
from torch import nn

from deepvid_plugin.core import outputs
from deepvid_plugin.core.guard import frozen_eval

LOGITS = torch.arange(6.0).view(2, 3)


class FakeModelOutput(collections.OrderedDict):
    """What HuggingFace returns: a dict that also has attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


@pytest.mark.parametrize("out", [
    LOGITS, FakeModelOutput(loss=None, logits=LOGITS), {"logits": LOGITS, "aux": torch.ones(1)},
    (LOGITS, torch.ones(2, 7)), [LOGITS],
    collections.namedtuple("InceptionOutputs", "logits aux_logits")(LOGITS, None),
])
def test_recognised_outputs(out):
    assert outputs.logits_of(out, n=2) is LOGITS


def test_unrecognised_output_names_output_transform():
    with pytest.raises(TypeError, match=r"model output: .*got a dict with keys \['out', 'aux'\]"
                                        r".*pass output_transform="):
        outputs.logits_of({"out": LOGITS, "aux": LOGITS})
    assert outputs.logits_of({"out": LOGITS}, lambda o: o["out"]) is LOGITS
    with pytest.raises(TypeError, match=r"output_transform: expected it to return the logits"):
        outputs.logits_of({"out": LOGITS}, lambda o: o)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"expected logits of shape \(3, n_classes\), got \(2, 3\)"):
        outputs.logits_of(LOGITS, n=3)
    with pytest.raises(ValueError, match=r"got \(2, 3, 1\) \(taken from a tuple"):
        outputs.logits_of((LOGITS[..., None],))
    with pytest.raises(ValueError, match=r"n_classes >= 4"):
        outputs.logits_of(LOGITS, min_classes=4)


def test_probabilities_and_predicted_sets():
    z = torch.tensor([[2.0, 1.0, -3.0], [-1.0, -2.0, -4.0]])
    torch.testing.assert_close(outputs.probabilities(z, "logits"), torch.softmax(z.double(), 1))
    torch.testing.assert_close(outputs.probabilities(z, "sigmoid"), torch.sigmoid(z.double()))
    assert outputs.predicted_sets(outputs.probabilities(z, "logits"), "logits") == [[0], [0]]
    # sigmoid: every class above 0.5, highest first; the argmax when none is
    assert outputs.predicted_sets(outputs.probabilities(z, "sigmoid"), "sigmoid") == [[0, 1], [0]]
    with pytest.raises(ValueError, match=r"outputs: expected one of \['logits', 'probs', "
                                         r"'sigmoid'\], got 'softmax'"):
        outputs.check_outputs("softmax")


def test_explained_classes_and_targets():
    probs = torch.tensor([[0.9, 0.8, 0.1, 0.6], [0.2, 0.1, 0.7, 0.3]], dtype=torch.float64)
    # sigmoid: the other predicted classes, then the true ones not yet there
    got = outputs.explained_classes("predicted+true", "sigmoid", probs, None, [[3], [0, 2]])
    assert got == [[1, 3], [0]]
    assert outputs.explained_classes("predicted", "sigmoid", probs, None, [[3], [0]]) == [[1, 3], []]
    # the prediction and the single label have maps of their own, so they are not repeated
    assert outputs.explained_classes([1, 2], "logits", probs, [2, 1], None) == [[1], []]
    with pytest.raises(ValueError, match=r"targets: expected class indices in \[0, 4\), got \[7\]"):
        outputs.explained_classes([7], "logits", probs, None, None)
    with pytest.raises(ValueError, match="targets: expected None"):
        outputs.check_targets([-1])
    assert outputs.check_targets(torch.tensor([2, 0])) == [2, 0]


class NoForward(nn.Module):
    """A module whose classifier is a submodule and whose root branches on its training flag."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5))
        self.scale = nn.Parameter(torch.ones(()))


def test_model_view_shares_modules_and_restores_flags():
    model = NoForward().train()
    view = outputs.ModelView(model, forward_fn=lambda m, x: {"logits": m.net(x) * m.scale},
                             output_transform=lambda out: out["logits"])
    assert dict(view.named_modules()).keys() == dict(model.named_modules()).keys()
    assert view.get_submodule("net.1") is model.net[1]
    assert {id(p) for p in view.parameters()} == {id(p) for p in model.parameters()}
    assert view._modules is model._modules and "wrapped" not in view._modules
    x = torch.ones(2, 1, 2, 2)
    with frozen_eval(view):
        assert not model.training and not model.net[2].training  # the model's own flag too
        torch.testing.assert_close(view(x), model.net(x))  # dropout off
    assert model.training and all(m.training for m in model.modules())
    with pytest.raises(TypeError, match="forward_fn: expected None or a callable"):
        outputs.ModelView(model, forward_fn="net")
