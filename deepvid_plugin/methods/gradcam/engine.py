"""Grad-CAM (Selvaraju et al., ICCV 2017): where a convolutional layer looks for a class.

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
model). The maps agree with captum's to float precision (tests/explain/test_gradcam.py).
"""

from __future__ import annotations

import dataclasses
import difflib
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepvid_plugin.core import checks, faithfulness
from deepvid_plugin.core.guard import frozen_eval, module_device_dtype, preserved_rng


@dataclasses.dataclass(frozen=True)
class GradCAMResult:
    """Grad-CAM maps of K instances at one layer (the arrays are the result's own copies)."""

    layer: str  # dotted name in model.named_modules()
    ids: tuple[str, ...]
    cam_pred: np.ndarray  # (K, H, W) float32, map of the predicted class, at the input size
    cam_true: np.ndarray | None  # (K, H, W) float32, map of the true class; None without labels
    probs: np.ndarray  # (K, n_classes) float32 softmax of the model's outputs
    pred: np.ndarray  # (K,) int64 predicted class
    labels: np.ndarray | None  # (K,) int64 true class, as given
    evidence: tuple[dict, ...] | None  # faithfulness.evidence of cam_pred; None if switched off


class GradCAM:
    """Grad-CAM of a model's predicted and true classes at one convolutional layer.

    ``layer`` is a module of the model, its dotted name in ``model.named_modules()``, or None for
    the last ``nn.Conv2d`` the model runs (found by a one-image forward, so a ResNet's shortcut
    convolution registered after the main path is not mistaken for the last layer).
    ``evidence_steps`` is the number of deletion/insertion steps (None switches the evidence off);
    ``seed`` seeds the random-map baseline of that evidence.

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

    def __init__(self, layer: str | nn.Module | None = None, *, batch_size: int = 256,
                 evidence_steps: int | None = faithfulness.DEFAULT_STEPS, seed: int = 0):
        if layer is not None and not isinstance(layer, (str, nn.Module)):
            raise TypeError(f"layer: expected None, a module name (str) or an nn.Module, got "
                            f"{type(layer).__name__}")
        self.layer = layer
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
                "seed": self.seed}

    def explain(self, model: nn.Module, x: torch.Tensor, labels: object = None,
                ids: Sequence[str] | None = None) -> GradCAMResult:
        """Grad-CAM of the K images ``x`` (K, C, H, W) for their predicted (and true) class."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module (Grad-CAM hooks one of its "
                            f"layers), got {type(model).__name__}")
        x = checks.images("x", x)
        k_n = x.shape[0]
        ids = checks.ids(ids, k_n)
        label_list = checks.labels(labels, k_n)
        label_t = None if label_list is None else torch.tensor(label_list, dtype=torch.long)
        device, dtype = module_device_dtype(model)
        with preserved_rng(), frozen_eval(model):
            name, layer = self._resolve(model, x[:1].to(device, dtype))
            cams_p, cams_t, logits = [], [], []
            for start in range(0, k_n, self.batch_size):
                xb = x[start:start + self.batch_size].to(device, dtype)
                lb = None if label_t is None else label_t[start:start + self.batch_size]
                cp, ct, lg = _gradcam_chunk(model, layer, name, xb, lb)
                cams_p.append(cp)
                cams_t.append(ct)
                logits.append(lg)
            logits_t = torch.cat(logits)
            cam_pred = torch.cat(cams_p)
            pred = logits_t.argmax(1)
            ev = None
            if self.evidence_steps is not None:
                ev = tuple(faithfulness.evidence(model, x, cam_pred, pred, ids, seed=self.seed,
                                                 steps=self.evidence_steps,
                                                 batch_size=max(self.batch_size, 512)))
        return GradCAMResult(
            layer=name, ids=tuple(ids), cam_pred=_frozen(cam_pred),
            cam_true=None if label_t is None else _frozen(torch.cat(cams_t)),
            probs=_frozen(torch.softmax(logits_t.double(), 1).float()),
            pred=_frozen(pred), labels=None if label_t is None else _frozen(label_t),
            evidence=ev)

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
                        else f"available: {_preview(list(named))}")
                raise ValueError(f"layer: expected a module name from model.named_modules(), got "
                                 f"{self.layer!r}; {hint}")
            return self.layer, named[self.layer]
        if self._default is not None and self._default[0]() is model:
            found = named.get(self._default[1])
            if isinstance(found, nn.Conv2d):
                return self._default[1], found
        name, layer = _last_conv(model, probe, named)
        self._default = (weakref.ref(model), name)
        return name, layer


def _gradcam_chunk(model: nn.Module, layer: nn.Module, name: str, xb: torch.Tensor,
                   labels: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(cam_pred, cam_true, logits) of one chunk, maps upsampled to the input, on the CPU."""
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            got = (f"shape {tuple(output.shape)}" if isinstance(output, torch.Tensor)
                   else type(output).__name__)
            raise ValueError(f"layer: expected {name!r} to output (N, C, h, w) feature maps, "
                             f"got {got}")
        act = output.detach().requires_grad_(True)
        captured.append(act)
        return act.clone()

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            out = model(xb)
            if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(xb):
                got = (tuple(out.shape) if isinstance(out, torch.Tensor)
                       else type(out).__name__)
                raise ValueError(f"model output: expected logits of shape ({len(xb)}, "
                                 f"n_classes), got {got}")
            if len(captured) != 1:
                raise ValueError(f"layer: expected {name!r} to run once per forward, it ran "
                                 f"{len(captured)} times")
            act = captured[0]
            if labels is not None and int(labels.max()) >= out.shape[1]:
                raise ValueError(f"labels: expected class indices in [0, {out.shape[1]}), got "
                                 f"{int(labels.max())}")
            pred = out.detach().argmax(1)
            same = labels is None or torch.equal(labels.to(pred.device), pred)
            cam_p = _cam(out, act, pred, retain=not same)
            cam_t = None
            if labels is not None:
                cam_t = cam_p if same else _cam(out, act, labels.to(out.device), retain=False)
    finally:
        handle.remove()
    size = xb.shape[-2:]
    up = [None if c is None else _upsample(c, size) for c in (cam_p, cam_t)]
    return up[0], up[1], out.detach().float().cpu()


def _cam(out: torch.Tensor, act: torch.Tensor, cls: torch.Tensor, retain: bool) -> torch.Tensor:
    # Instances are independent in eval mode, so the gradient of the summed scores w.r.t. the
    # batch of activations is every instance's own gradient, in one backward pass.
    score = out.gather(1, cls[:, None]).sum()
    (grad,) = torch.autograd.grad(score, act, retain_graph=retain)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * act.detach()).sum(1, keepdim=True))


def _upsample(cam: torch.Tensor, size: torch.Size) -> torch.Tensor:
    # align_corners=False: what captum's LayerAttribution.interpolate does, so maps match it.
    return F.interpolate(cam, size=tuple(size), mode="bilinear",
                         align_corners=False)[:, 0].float().cpu()


def _last_conv(model: nn.Module, probe: torch.Tensor,
               named: dict[str, nn.Module]) -> tuple[str, nn.Module]:
    convs = {m: n for n, m in named.items() if isinstance(m, nn.Conv2d)}
    if not convs:
        raise ValueError(f"layer: the model has no nn.Conv2d to default to; name a layer whose "
                         f"output is (N, C, h, w), one of {_preview(list(named))}")
    order: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda mod, _i, _o: order.append(mod)) for m in convs]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise ValueError(f"layer: none of the model's nn.Conv2d ({_preview(list(convs.values()))})"
                         f" ran in a forward pass; name the layer to explain")
    return convs[order[-1]], order[-1]


def _frozen(t: torch.Tensor) -> np.ndarray:
    # Own copies, but writable: torch warns on every torch.as_tensor of a read-only array.
    return t.detach().cpu().numpy().copy()


def _preview(names: list[str], n: int = 12) -> str:
    names = [nm for nm in names if nm]  # "" is the model itself
    more = f" ... ({len(names) - n} more)" if len(names) > n else ""
    return f"{names[:n]}{more}"
