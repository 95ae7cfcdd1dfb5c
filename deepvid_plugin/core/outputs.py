"""What a model returns, as logits: one helper for every engine, the callbacks and the evidence.

Models people train today return more than a tensor: HuggingFace models a ``ModelOutput``
(``out.logits``), detection-style and multi-head models a dict with ``"logits"``, others a tuple
whose first item is the logits (HuggingFace with ``return_dict=False``, torchvision's Inception
in training mode). :func:`logits_of` recognises those; anything else takes an
``output_transform`` (a callable from the model's output to ``(N, n_classes)`` logits), as
ignite's metrics and captum's ``forward_func`` wrappers do. Every engine, the callbacks and
:mod:`~deepvid_plugin.core.faithfulness` go through it, so a model works everywhere or is refused
everywhere with the same message.

``outputs`` says what the logits mean (:data:`OUTPUTS`):

- ``"logits"``: one class per image (softmax);
- ``"probs"``: the model already ends in a softmax;
- ``"sigmoid"``: independent classes (multi-label): the probability of class ``c`` is
  ``sigmoid(logits[:, c])``, and several classes can be "predicted" at once.

:class:`ModelView` lets the callbacks run a model through ``forward_fn``/``output_transform``
while every explainer still sees the model's own modules under their own names (hooks, layer
names, parameters are shared, nothing is copied).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["OUTPUTS", "TARGETS", "ModelView", "check_outputs", "check_targets", "check_transform",
           "describe", "explained_classes", "logits_of", "predicted_sets", "probabilities"]

OUTPUTS = ("logits", "probs", "sigmoid")
#: ``targets=`` by name: the predicted and the true classes (default), or the predicted only.
TARGETS = ("predicted+true", "predicted")

#: a sigmoid probability above this counts as "predicted" for a multi-label model.
SIGMOID_THRESHOLD = 0.5


def check_outputs(value: Any, choices: tuple[str, ...] = OUTPUTS) -> str:
    """One of ``choices`` (the message lists them and says what each means)."""
    if value not in choices:
        meaning = {"logits": "one class per image, softmax applied here",
                   "probs": "the model ends in a softmax",
                   "sigmoid": "independent classes, multi-label"}
        said = "; ".join(f"{c!r}: {meaning[c]}" for c in choices if c in meaning)
        raise ValueError(f"outputs: expected one of {list(choices)}, got {value!r} ({said})")
    return value


def check_transform(name: str, value: Any) -> Callable[[Any], Any] | None:
    """``None`` or a callable (``output_transform``, ``forward_fn``, ``reshape``)."""
    if value is not None and not callable(value):
        raise TypeError(f"{name}: expected None or a callable, got {type(value).__name__}")
    return value


def describe(out: Any) -> str:
    """A short description of a model output for error messages."""
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {tuple(out.shape)}"
    if isinstance(out, Mapping):
        return f"a {type(out).__name__} with keys {list(out.keys())[:8]}"
    if isinstance(out, (tuple, list)):
        items = ", ".join(describe(o) if isinstance(o, torch.Tensor) else type(o).__name__
                          for o in list(out)[:4])
        return f"a {type(out).__name__} of {len(out)} items ({items})"
    return f"a {type(out).__name__}"


def _recognise(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)  # HuggingFace ModelOutput, torchvision InceptionOutputs
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, Mapping):
        value = out.get("logits")
        return value if isinstance(value, torch.Tensor) else None
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def logits_of(out: Any, output_transform: Callable[[Any], Any] | None = None, *,
              n: int | None = None, min_classes: int = 1,
              what: str = "model output") -> torch.Tensor:
    """The ``(N, n_classes)`` logits in a model's output ``out``.

    Without ``output_transform``: a tensor as it is, ``out.logits`` (HuggingFace
    ``ModelOutput``), ``out["logits"]`` (a dict) or ``out[0]`` (a tuple or list whose first item
    is a tensor). With it: ``output_transform(out)``, which must return a tensor.
    ``n`` is the batch size the logits must have, ``min_classes`` their fewest classes.
    """
    if output_transform is not None:
        logits = output_transform(out)
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"output_transform: expected it to return the logits, a tensor "
                            f"(N, n_classes), got {describe(logits)} from {describe(out)}")
    else:
        logits = _recognise(out)
        if logits is None:
            raise TypeError(
                f"{what}: expected logits (a tensor), a HuggingFace ModelOutput with .logits, a "
                f"dict with 'logits' or a tuple whose first item is the logits, got "
                f"{describe(out)}; pass output_transform=lambda out: ... returning the logits")
    if logits.dim() != 2 or (n is not None and logits.shape[0] != n) \
            or logits.shape[1] < min_classes:
        classes = "n_classes" if min_classes <= 1 else f"n_classes >= {min_classes}"
        want = f"({n if n is not None else 'N'}, {classes})"
        hint = "" if output_transform is not None or logits is out else \
            f" (taken from {describe(out)}; pass output_transform=lambda out: ... returning them)"
        raise ValueError(f"{what}: expected logits of shape {want}, got "
                         f"{tuple(logits.shape)}{hint}")
    return logits


def probabilities(logits: torch.Tensor, outputs: str) -> torch.Tensor:
    """Each class's probability as ``outputs`` defines it (float64): softmax over classes,
    the outputs themselves (``"probs"``) or each class's own sigmoid (``"sigmoid"``)."""
    x = logits.double()
    if outputs == "logits":
        return torch.softmax(x, dim=1)
    if outputs == "sigmoid":
        return torch.sigmoid(x)
    return x


def predicted_sets(probs: torch.Tensor, outputs: str) -> list[list[int]]:
    """The classes each row predicts: the argmax, or for ``"sigmoid"`` every class above
    :data:`SIGMOID_THRESHOLD` (the argmax when none is), highest first."""
    top = probs.argmax(1)
    if outputs != "sigmoid":
        return [[int(t)] for t in top]
    out = []
    for row, t in zip(probs, top, strict=True):
        above = torch.nonzero(row > SIGMOID_THRESHOLD).flatten()
        picked = above[row[above].argsort(descending=True, stable=True)].tolist()
        out.append([int(c) for c in picked] or [int(t)])
    return out


def check_targets(value: Any) -> str | list[int]:
    """``targets=`` of an instance kind: one of :data:`TARGETS` (None: the first), or a class
    index or list of them explained for every instance."""
    if value is None:
        return TARGETS[0]
    if isinstance(value, str):
        if value not in TARGETS:
            raise ValueError(f"targets: expected one of {list(TARGETS)}, got {value!r}")
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = [value]
    if hasattr(value, "tolist"):  # a tensor or an array
        value = value.tolist()
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0
                       for v in value)):
        raise ValueError(f"targets: expected None, one of {list(TARGETS)}, a class index or a "
                         f"non-empty list of class indices, got {value!r}")
    return [int(v) for v in value]


def explained_classes(targets: str | list[int], outputs: str, probs: torch.Tensor,
                      labels: list[int] | None, sets: list[list[int]] | None
                      ) -> list[list[int]]:
    """Per instance, the classes explained besides the top prediction and the single true
    label (those two have maps of their own): the other predicted classes (``"sigmoid"``) and
    true classes (multi-hot ``sets``) for ``"predicted+true"``, or the ``targets`` given."""
    n_classes = probs.shape[1]
    top = probs.argmax(1)
    if isinstance(targets, list):
        bad = [c for c in targets if c >= n_classes]
        if bad:
            raise ValueError(f"targets: expected class indices in [0, {n_classes}), got {bad}")
        wanted = [list(targets) for _ in range(len(top))]
    else:
        wanted = predicted_sets(probs, outputs)
        if targets == "predicted+true" and sets is not None:
            wanted = [w + [c for c in s if c not in w] for w, s in zip(wanted, sets, strict=True)]
    skip = [{int(p)} | ({labels[i]} if labels is not None else set()) for i, p in enumerate(top)]
    return [[c for c in w if c not in s] for w, s in zip(wanted, skip, strict=True)]


class ModelView(nn.Module):
    """``model`` run as ``output_transform(forward_fn(model, x))``, with the model's own modules.

    The view shares the model's submodules, parameters and buffers (the same objects, under the
    same names), so a layer name, a hook or a parameter of the model is one of the view's:
    explainers hook and name layers exactly as on the model. Only the forward differs:

    - ``forward_fn(model, x)``: for a model whose ``forward`` is not the classifier (a
      LightningModule without ``forward``: ``forward_fn=lambda m, x: m.net(x)``);
    - ``output_transform(out)``: from what that returns to the logits.

    ``train(mode)`` also sets the model's own ``training`` flag (a model may branch on it at the
    top level, as torchvision's Inception does); the callbacks' guard restores it.

    Example::

        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> view = ModelView(net, output_transform=lambda out: out * 2)
        >>> view(torch.ones(1, 4)).shape
        torch.Size([1, 3])
        >>> view.get_submodule("1") is net[1]
        True
    """

    def __init__(self, model: nn.Module, *, forward_fn: Callable[[nn.Module, Any], Any] | None = None,
                 output_transform: Callable[[Any], Any] | None = None):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        # object.__setattr__ throughout: nn.Module.__setattr__ would register a callable that
        # is itself a module as a child, i.e. into the shared (the user's) module dict.
        set_ = object.__setattr__
        set_(self, "forward_fn", check_transform("forward_fn", forward_fn))
        set_(self, "output_transform", check_transform("output_transform", output_transform))
        set_(self, "wrapped", model)
        # Shared, not copied: the view's names, modules and parameters are the model's own.
        set_(self, "_modules", model._modules)
        set_(self, "_parameters", model._parameters)
        set_(self, "_buffers", model._buffers)
        self.training = model.training

    def forward(self, x: Any) -> Any:
        out = self.forward_fn(self.wrapped, x) if self.forward_fn is not None else self.wrapped(x)
        return self.output_transform(out) if self.output_transform is not None else out

    def train(self, mode: bool = True) -> ModelView:
        super().train(mode)
        self.wrapped.training = mode
        return self
