"""Grad-CAM (Selvaraju et al., ICCV 2017): where a layer looks for a class.

For class c and a layer with activations ``A`` (N, K, h, w), the weight of channel k is the spatial
mean of ``d y_c / d A_k`` (``y_c`` is the class score before the softmax), and the map is
``ReLU(sum_k weight_k * A_k)``, upsampled bilinearly to the input size. Computed here per instance
for the predicted class and, when labels are given, the true class, batched over instances, with
the same deletion/insertion evidence as DeepVID (:func:`faithfulness.evidence` on the
predicted-class map) so the two kinds can be compared on equal terms.

Leaving the user's model as found: the forward hook exists only inside :meth:`GradCAM.explain` and
is removed in a ``finally``; the model runs in eval mode (BatchNorm statistics and Dropout
untouched) with every ``training`` flag and RNG state restored; gradients are taken with
``torch.autograd.grad`` with respect to the layer's activations only, so no parameter's ``.grad``
is written. The hook hands the rest of the network a *clone* of a detached copy of the
activations: backward stops at the layer (nothing before it is differentiated), it works for
models whose parameters are frozen, and an in-place operation after the layer (``out += identity``
in a ResNet block) cannot corrupt the activations we keep.

Own code, not captum's ``LayerGradCam``, because it measured faster. Settings: this 2-core CPU,
shared with other jobs (load average ~8), one torch thread, 16 instances, predicted- and
true-class maps upsampled to the input, evidence off, fastest of 31 runs (medians were noisier
but ordered the same way). captum needs a forward for the predictions plus a forward and a
backward per class; this module needs one forward and one backward per class, and its backward
stops at the layer:

- digits CNN (``deepvid_plugin.demo.digits.DigitsCNN``), 1x8x8, layer ``features.3``:
  this module 1.4 ms, captum 6.6 ms (4.8x slower);
- torchvision ResNet-18 (random init, 10 classes), 3x32x32, layer ``layer4.1.conv2``:
  this module 26 ms, captum 70 ms (2.7x slower).

The default layer costs one extra one-image forward the first time a model is seen (cached per
model). The maps agree with captum's to float precision (tests/methods/gradcam/test_gradcam.py).

**Transformers.** A token layer (ViT, DeiT: ``(N, prefix + h*w, C)``; Swin: ``(N, h, w, C)``)
becomes a grid as pytorch-grad-cam's ``reshape_transform`` makes it (:mod:`deepvid_plugin.core.layers`:
automatic for timm, torchvision and HuggingFace layouts, or ``reshape=``). The gradient is taken
with respect to the layer's own output and put through the same reshape as the activations,
which is exact: the reshape only selects and permutes values. The default layer of a ViT is its
last block's first norm, never the patch embedding (:func:`~deepvid_plugin.core.layers.default_layer`).

**Outputs and targets.** The model's output goes through
:func:`~deepvid_plugin.core.outputs.logits_of` (``output_transform=``; HuggingFace outputs, dicts
with ``"logits"`` and tuples are recognised). The map of class c always differentiates its logit
(the score before the softmax or sigmoid, as the paper does). ``outputs="sigmoid"`` (multi-label)
changes what is *predicted* (every class above 0.5), the probabilities the records keep and the
evidence's target probability (the explained class's sigmoid); for one instance a sigmoid's
gradient differs from its logit's only by a positive factor, so the map's shape is the same.
``targets=`` picks the classes explained besides the prediction.
"""

from __future__ import annotations

import dataclasses
import difflib
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepvid_plugin.core import checks, faithfulness, layers
from deepvid_plugin.core.guard import frozen_eval, module_device_dtype, preserved_rng
from deepvid_plugin.core.outputs import (
    check_outputs,
    check_targets,
    check_transform,
    explained_classes,
    logits_of,
    probabilities,
)


@dataclasses.dataclass(frozen=True)
class GradCAMResult:
    """Grad-CAM maps of K instances at one layer (the arrays are the result's own copies)."""

    layer: str  # dotted name in model.named_modules()
    ids: tuple[str, ...]
    cam_pred: np.ndarray  # (K, H, W) float32, map of the predicted class, at the input size
    cam_true: np.ndarray | None  # (K, H, W) float32, map of the true class; None without labels
    probs: np.ndarray  # (K, n_classes) float32 probabilities (softmax, or sigmoid per class)
    pred: np.ndarray  # (K,) int64 predicted class (the top one)
    labels: np.ndarray | None  # (K,) int64 true class, as given
    evidence: tuple[dict, ...] | None  # faithfulness.evidence of cam_pred; None if switched off
    outputs: str = "logits"  # what the logits mean (deepvid_plugin.core.outputs.OUTPUTS)
    # per instance, the other explained classes (targets beyond cam_pred's and cam_true's) and
    # their (T_i, H, W) maps; None when there are none for any instance
    classes: tuple[tuple[int, ...], ...] | None = None
    cams: tuple[np.ndarray, ...] | None = None
    label_sets: tuple[tuple[int, ...], ...] | None = None  # multi-hot labels, as class lists


class GradCAM:
    """Grad-CAM of a model's predicted and true classes at one layer.

    Args:
        layer: a module of the model, its dotted name in ``model.named_modules()``, or None for
            the default: the last ``nn.Conv2d`` the model runs (found by a one-image forward, so
            a ResNet's shortcut convolution registered after the main path is not mistaken for
            the last layer), or for a transformer the last block's first norm (see
            :mod:`deepvid_plugin.core.layers`).
        reshape: a callable from the layer's output to ``(N, C, h, w)`` (pytorch-grad-cam's
            ``reshape_transform``); None finds the layout of convolutional, Swin and ViT/DeiT
            token layers itself.
        outputs: ``"logits"`` (one class per image, softmax), ``"probs"`` (the model ends in a
            softmax) or ``"sigmoid"`` (independent classes, multi-label).
        targets: the classes explained besides the predicted one: ``"predicted+true"`` (None,
            the default: with ``"sigmoid"`` every predicted class, and every true class when
            labels are given, single or multi-hot), ``"predicted"``, or a class index or list of
            them explained for every instance.
        output_transform: a callable from the model's output to its ``(N, n_classes)`` logits;
            HuggingFace outputs, dicts with ``"logits"`` and tuples whose first item is the
            logits are recognised without it.
        batch_size: instances per forward/backward pass.
        evidence_steps: the number of deletion/insertion steps (None switches the evidence off).
        seed: seeds the random-map baseline of that evidence.

    Example::

        >>> import torch
        >>> from deepvid_plugin.explain import GradCAM
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
        ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                             torch.nn.Linear(4, 3))
        >>> result = GradCAM(evidence_steps=None).explain(model, torch.rand(2, 1, 8, 8))
        >>> result.layer, result.cam_pred.shape
        ('0', (2, 8, 8))
    """

    def __init__(self, layer: str | nn.Module | None = None, *,
                 reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 outputs: str = "logits", targets: Any = None,
                 output_transform: Callable[[Any], Any] | None = None, batch_size: int = 256,
                 evidence_steps: int | None = faithfulness.DEFAULT_STEPS, seed: int = 0):
        if layer is not None and not isinstance(layer, (str, nn.Module)):
            raise TypeError(f"layer: expected None, a module name (str) or an nn.Module, got "
                            f"{type(layer).__name__}")
        self.layer = layer
        self.reshape = check_transform("reshape", reshape)
        self.outputs = check_outputs(outputs)
        self.targets = check_targets(targets)
        self.output_transform = check_transform("output_transform", output_transform)
        self.batch_size = checks.integer("batch_size", batch_size, 1)
        self.evidence_steps = (None if evidence_steps is None
                               else checks.integer("evidence_steps", evidence_steps, 2))
        self.seed = checks.integer("seed", seed, 0)
        # The default layer found for a model, so the probe forward runs once, not every epoch.
        # A weak reference: the explainer must not keep a user's model alive.
        self._default: tuple[weakref.ref, str] | None = None

    def as_explainer(self, every_n_epochs: int = 1) -> Any:
        """This engine as a callback's explainer (kind ``gradcam``) on that schedule."""
        from deepvid_plugin.methods.gradcam.explainer import GradCAMExplainer

        return GradCAMExplainer(self, every_n_epochs=every_n_epochs)

    def settings(self) -> dict:
        name = self.layer if isinstance(self.layer, str) or self.layer is None else "<module>"
        return {"method": "gradcam", "layer": name, "evidence_steps": self.evidence_steps,
                "seed": self.seed, "outputs": self.outputs,
                "targets": self.targets if isinstance(self.targets, (str, list)) else None,
                "reshape": None if self.reshape is None else "<callable>",
                "output_transform": None if self.output_transform is None else "<callable>"}

    def check(self, model: nn.Module, x: torch.Tensor) -> str:
        """Resolve the layer on one instance and check its output is a grid (the callbacks'
        early check); returns the layer's name."""
        x = checks.images("x", x)
        device, dtype = module_device_dtype(model)
        with preserved_rng(), frozen_eval(model):
            probe = x[:1].to(device, dtype)
            name, layer = self._resolve(model, probe)
            _chunk(self, model, layer, name, probe, None, None)
        return name

    def explain(self, model: nn.Module, x: torch.Tensor, labels: object = None,
                ids: Sequence[str] | None = None) -> GradCAMResult:
        """Grad-CAM of the K images ``x`` (K, C, H, W) for their predicted (and true) class.

        ``labels``: K class indices, or a ``(K, n_classes)`` multi-hot matrix (multi-label)."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module (Grad-CAM hooks one of its "
                            f"layers), got {type(model).__name__}")
        x = checks.images("x", x)
        k_n = x.shape[0]
        ids = checks.ids(ids, k_n)
        label_list, label_sets = checks.labels_or_sets(labels, k_n)
        device, dtype = module_device_dtype(model)
        with preserved_rng(), frozen_eval(model):
            name, layer = self._resolve(model, x[:1].to(device, dtype))
            parts = []
            for start in range(0, k_n, self.batch_size):
                stop = start + self.batch_size
                parts.append(_chunk(self, model, layer, name, x[start:stop].to(device, dtype),
                                    None if label_list is None else label_list[start:stop],
                                    None if label_sets is None else label_sets[start:stop]))
            logits = torch.cat([p["logits"] for p in parts])
            cam_pred = torch.cat([p["cam_pred"] for p in parts])
            pred = logits.argmax(1)
            ev = None
            if self.evidence_steps is not None:
                ev = tuple(faithfulness.evidence(
                    model, x, cam_pred, pred, ids, seed=self.seed, steps=self.evidence_steps,
                    batch_size=max(self.batch_size, 512), outputs=self.outputs,
                    output_transform=self.output_transform))
        classes = tuple(c for p in parts for c in p["classes"])
        cams = tuple(m for p in parts for m in p["cams"])
        probs = probabilities(logits, self.outputs).float()
        return GradCAMResult(
            layer=name, ids=tuple(ids), cam_pred=_frozen(cam_pred),
            cam_true=None if label_list is None else _frozen(torch.cat([p["cam_true"]
                                                                        for p in parts])),
            probs=_frozen(probs), pred=_frozen(pred),
            labels=None if label_list is None else np.asarray(label_list, np.int64),
            evidence=ev, outputs=self.outputs,
            classes=classes if any(classes) else None,
            cams=tuple(_frozen(m) for m in cams) if any(classes) else None,
            label_sets=None if label_sets is None else tuple(tuple(s) for s in label_sets))

    def _resolve(self, model: nn.Module, probe: torch.Tensor) -> tuple[str, nn.Module]:
        named = dict(model.named_modules())
        if isinstance(self.layer, nn.Module):
            for n, m in named.items():
                if m is self.layer:
                    return n, m
            raise ValueError(f"layer: expected a submodule of the model, got a "
                             f"{type(self.layer).__name__} that is not in model.named_modules()")
        if isinstance(self.layer, str):
            if self.layer not in named:
                close = difflib.get_close_matches(self.layer, list(named), n=5, cutoff=0.5)
                hint = (f"close matches: {close}" if close
                        else f"available: {layers.preview(list(named))}")
                raise ValueError(f"layer: expected a module name from model.named_modules(), got "
                                 f"{self.layer!r}; {hint}")
            return self.layer, named[self.layer]
        if self._default is not None and self._default[0]() is model:
            found = named.get(self._default[1])
            if found is not None:
                return self._default[1], found
        name, layer = layers.default_layer(model, probe, model)
        self._default = (weakref.ref(model), name)
        return name, layer


def _chunk(engine: GradCAM, model: nn.Module, layer: nn.Module, name: str, xb: torch.Tensor,
           labels: list[int] | None, sets: list[list[int]] | None) -> dict[str, Any]:
    """One chunk's maps (upsampled to the input, on the CPU) and logits."""
    captured: list[Any] = []

    def hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"layer: expected {name!r} to output (N, C, h, w) feature maps (or "
                             f"tokens), got {type(output).__name__}")
        act = output.detach().requires_grad_(True)
        captured.append(act)
        return act.clone()

    hw = (xb.shape[-2], xb.shape[-1])
    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            out = logits_of(model(xb), engine.output_transform, n=len(xb))
            if len(captured) != 1:
                raise ValueError(f"layer: expected {name!r} to run once per forward, it ran "
                                 f"{len(captured)} times")
            act = captured[0]
            grid = layers.grid_of(name, act.detach(), hw, engine.reshape, model)
            n_classes = out.shape[1]
            if labels is not None and max(labels) >= n_classes:
                raise ValueError(f"labels: expected class indices in [0, {n_classes}), got "
                                 f"{max(labels)}")
            if sets is not None and any(len(s) and max(s) >= n_classes for s in sets):
                raise ValueError(f"labels: expected a multi-hot matrix of {n_classes} columns "
                                 f"(the model's classes)")
            logits = out.detach()
            pred = logits.argmax(1)
            extra = explained_classes(engine.targets, engine.outputs,
                                      probabilities(logits, engine.outputs), labels, sets)
            # one backward per "slot": the prediction, the label, then the i-th extra class of
            # every instance (padded with the prediction)
            slots = [pred]
            if labels is not None:
                slots.append(torch.tensor(labels, device=pred.device))
            width = max((len(e) for e in extra), default=0)
            for j in range(width):
                slots.append(torch.tensor([e[j] if j < len(e) else int(p)
                                           for e, p in zip(extra, pred.tolist(), strict=True)],
                                          device=pred.device))
            maps = []
            for i, cls in enumerate(slots):
                last = i == len(slots) - 1
                if i == 1 and labels is not None and torch.equal(cls, pred):
                    maps.append(maps[0])  # the true class is the predicted one: same map
                    continue
                (grad,) = torch.autograd.grad(out.gather(1, cls[:, None]).sum(), act,
                                              retain_graph=not last)
                g = layers.grid_of(name, grad, hw, engine.reshape, model)
                weights = g.mean(dim=(2, 3), keepdim=True)
                maps.append(F.relu((weights * grid).sum(1, keepdim=True)))
    finally:
        handle.remove()
    up = [_upsample(m, hw) for m in maps]
    first_extra = 2 if labels is not None else 1
    cams = [torch.stack([up[first_extra + j][i] for j in range(len(e))]) if e
            else torch.zeros(0, *hw) for i, e in enumerate(extra)]
    return {"cam_pred": up[0], "cam_true": up[1] if labels is not None else None,
            "logits": out.detach().float().cpu(), "classes": [tuple(e) for e in extra],
            "cams": cams}


def _upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # align_corners=False: what captum's LayerAttribution.interpolate does, so maps match it.
    return F.interpolate(cam.detach(), size=tuple(size), mode="bilinear",
                         align_corners=False)[:, 0].float().cpu()


def _frozen(t: torch.Tensor) -> np.ndarray:
    # Own copies, but writable: torch warns on every torch.as_tensor of a read-only array.
    return t.detach().cpu().numpy().copy()
