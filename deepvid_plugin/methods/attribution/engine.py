"""Bring your own attribution: any ``fn(model, x, targets) -> maps`` as an explanation kind.

Saliency methods are many and people have their favourite: captum's Integrated Gradients or
Occlusion, a pytorch-grad-cam object, torch-cam, their own. :class:`Attribution` wraps any of
them and gives its maps what Grad-CAM's get: one record per tracked instance and epoch, with the
predicted (and true, and further ``targets=``) classes' maps, the model's probabilities and the
deletion/insertion evidence against a random map (:func:`deepvid_plugin.core.faithfulness.evidence`),
so the trust rule and the compare view apply unchanged.

The contract of ``fn(model, x, targets)``:

- ``model``: a module whose forward returns the ``(N, n_classes)`` logits (the user's model, seen
  through :class:`~deepvid_plugin.core.outputs.ModelView` when its output is a HuggingFace
  ``ModelOutput``, a dict or a tuple, or with ``output_transform=``); its submodules are the
  model's own, under the same names (``model.layer4[-1]`` works);
- ``x``: ``(N, C, H, W)`` instances on the model's device;
- ``targets``: ``(N,)`` int64, the class to explain for each instance;
- returns ``(N, H, W)``, ``(N, 1, H, W)`` or ``(N, C, h, w)`` maps (a tensor or a numpy array):
  channels are summed (``absolute=True``: their absolute values), maps at another resolution are
  upsampled bilinearly to the input.

Examples of ``fn`` (``docs/your_model.md``)::

    from captum.attr import IntegratedGradients

    def integrated_gradients(model, x, targets):
        return IntegratedGradients(model).attribute(x, target=targets, n_steps=16)

    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def gradcam_pp(model, x, targets):
        with GradCAMPlusPlus(model=model, target_layers=[model.layer4[-1]]) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])

Leaving the user's model as found: the model runs in eval mode with its flags and the RNGs
restored; every parameter's ``.grad`` is put back as it was after each call of ``fn`` (methods
that call ``backward()`` would otherwise add to the gradients of the user's next step), and any
hook ``fn`` registered on the model and left behind is removed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepvid_plugin.core import checks, faithfulness
from deepvid_plugin.core.guard import frozen_eval, module_device_dtype, preserved_rng
from deepvid_plugin.core.outputs import (
    ModelView,
    check_outputs,
    check_targets,
    check_transform,
    explained_classes,
    logits_of,
    probabilities,
)

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
               "_backward_pre_hooks", "_forward_hooks_with_kwargs",
               "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")


@dataclasses.dataclass(frozen=True)
class AttributionResult:
    """Maps of K instances from one attribution method (the arrays are the result's own)."""

    method: str
    ids: tuple[str, ...]
    map_pred: np.ndarray  # (K, H, W) float32: the predicted class's map, at the input size
    map_true: np.ndarray | None  # (K, H, W) float32: the true class's map; None without labels
    probs: np.ndarray  # (K, n_classes) float32 (softmax, or each class's sigmoid)
    pred: np.ndarray  # (K,) int64
    labels: np.ndarray | None  # (K,) int64 true class, as given
    evidence: tuple[dict, ...] | None
    outputs: str = "logits"
    classes: tuple[tuple[int, ...], ...] | None = None  # further explained classes, per instance
    maps: tuple[np.ndarray, ...] | None = None  # their (T_i, H, W) maps
    label_sets: tuple[tuple[int, ...], ...] | None = None  # multi-hot labels, as class lists


class Attribution:
    """Any attribution function as an explanation kind (see the module docstring).

    Args:
        fn: ``fn(model, x, targets) -> maps``.
        name: what the records call the method (default: ``fn``'s ``__name__`` or type name).
        absolute: sum the absolute values over channels instead of the signed values.
        outputs: ``"logits"``, ``"probs"`` or ``"sigmoid"`` (multi-label), as for
            :class:`~deepvid_plugin.explain.GradCAM`.
        targets: the classes explained besides the predicted one (as for Grad-CAM).
        output_transform: a callable from the model's output to its logits.
        batch_size: instances per call of ``fn``.
        evidence_steps: deletion/insertion steps (None switches the evidence off).
        seed: seeds the random-map baseline of the evidence.

    Example::

        >>> import torch
        >>> from deepvid_plugin.explain import Attribution
        >>> def input_x_gradient(model, x, targets):
        ...     x = x.clone().requires_grad_(True)
        ...     score = model(x).gather(1, targets[:, None]).sum()
        ...     return torch.autograd.grad(score, x)[0] * x
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
        ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                             torch.nn.Linear(4, 2))
        >>> r = Attribution(input_x_gradient, evidence_steps=None).explain(model, torch.rand(2, 3, 8, 8))
        >>> r.map_pred.shape, r.method
        ((2, 8, 8), 'input_x_gradient')
    """

    def __init__(self, fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], Any], *,
                 name: str | None = None, absolute: bool = False, outputs: str = "logits",
                 targets: Any = None, output_transform: Callable[[Any], Any] | None = None,
                 batch_size: int = 64,
                 evidence_steps: int | None = faithfulness.DEFAULT_STEPS, seed: int = 0):
        if not callable(fn):
            raise TypeError(f"fn: expected a callable fn(model, x, targets) -> maps, got "
                            f"{type(fn).__name__}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name: expected None or a non-empty str, got {name!r}")
        if not isinstance(absolute, bool):
            raise TypeError(f"absolute: expected a bool, got {type(absolute).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        self.absolute = absolute
        self.outputs = check_outputs(outputs)
        self.targets = check_targets(targets)
        self.output_transform = check_transform("output_transform", output_transform)
        self.batch_size = checks.integer("batch_size", batch_size, 1)
        self.evidence_steps = (None if evidence_steps is None
                               else checks.integer("evidence_steps", evidence_steps, 2))
        self.seed = checks.integer("seed", seed, 0)

    def as_explainer(self, every_n_epochs: int = 1) -> Any:
        """This engine as a callback's explainer (kind ``attribution``) on that schedule."""
        from deepvid_plugin.methods.attribution.explainer import AttributionExplainer

        return AttributionExplainer(self, every_n_epochs=every_n_epochs)

    def settings(self) -> dict[str, Any]:
        return {"method": "attribution", "name": self.name, "absolute": self.absolute,
                "outputs": self.outputs,
                "targets": self.targets if isinstance(self.targets, (str, list)) else None,
                "evidence_steps": self.evidence_steps, "seed": self.seed}

    def check(self, model: nn.Module, x: torch.Tensor) -> None:
        """Run ``fn`` on one instance and check its maps (the callbacks' early check)."""
        self.explain(model, checks.images("x", x)[:1], evidence=False)

    def explain(self, model: nn.Module, x: torch.Tensor, labels: object = None,
                ids: Sequence[str] | None = None, *, evidence: bool = True
                ) -> AttributionResult:
        """The maps of the K images ``x`` for their predicted (and true, and further) classes.

        ``labels``: K class indices, or a ``(K, n_classes)`` multi-hot matrix (multi-label)."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        x = checks.images("x", x)
        k_n = x.shape[0]
        ids = checks.ids(ids, k_n)
        label_list, label_sets = checks.labels_or_sets(labels, k_n)
        device, dtype = module_device_dtype(model)
        # what fn gets: a module whose forward returns the logits, with the model's own modules
        logit_model = ModelView(getattr(model, "wrapped", model), forward_fn=(
            lambda m, xb: logits_of(model(xb), self.output_transform, n=xb.shape[0])))
        with preserved_rng(), frozen_eval(model, logit_model):
            parts = []
            for start in range(0, k_n, self.batch_size):
                stop = start + self.batch_size
                parts.append(self._chunk(model, logit_model, x[start:stop].to(device, dtype),
                                         None if label_list is None else label_list[start:stop],
                                         None if label_sets is None else label_sets[start:stop]))
            logits = torch.cat([p["logits"] for p in parts])
            map_pred = torch.cat([p["map_pred"] for p in parts])
            pred = logits.argmax(1)
            ev = None
            if evidence and self.evidence_steps is not None:
                ev = tuple(faithfulness.evidence(
                    model, x, map_pred, pred, ids, seed=self.seed, steps=self.evidence_steps,
                    batch_size=max(self.batch_size, 512), outputs=self.outputs,
                    output_transform=self.output_transform))
        classes = tuple(c for p in parts for c in p["classes"])
        maps = tuple(m for p in parts for m in p["maps"])
        return AttributionResult(
            method=self.name, ids=tuple(ids), map_pred=_own(map_pred),
            map_true=None if label_list is None else _own(torch.cat([p["map_true"]
                                                                      for p in parts])),
            probs=_own(probabilities(logits, self.outputs).float()), pred=_own(pred),
            labels=None if label_list is None else np.asarray(label_list, np.int64),
            evidence=ev, outputs=self.outputs,
            classes=classes if any(classes) else None,
            maps=tuple(_own(m) for m in maps) if any(classes) else None,
            label_sets=None if label_sets is None else tuple(tuple(s) for s in label_sets))

    # ---- internals ---------------------------------------------------------------------------
    def _chunk(self, model: nn.Module, logit_model: nn.Module, xb: torch.Tensor,
               labels: list[int] | None, sets: list[list[int]] | None) -> dict[str, Any]:
        with torch.no_grad():
            logits = logits_of(model(xb), self.output_transform, n=len(xb)).float()
        n_classes = logits.shape[1]
        if labels is not None and max(labels) >= n_classes:
            raise ValueError(f"labels: expected class indices in [0, {n_classes}), got "
                             f"{max(labels)}")
        if sets is not None and any(s and max(s) >= n_classes for s in sets):
            raise ValueError(f"labels: expected a multi-hot matrix of {n_classes} columns (the "
                             f"model's classes)")
        pred = logits.argmax(1)
        extra = explained_classes(self.targets, self.outputs,
                                  probabilities(logits, self.outputs), labels, sets)
        map_pred = self._call(logit_model, xb, pred)
        map_true = None
        if labels is not None:
            truth = torch.tensor(labels, device=pred.device)
            map_true = map_pred if torch.equal(truth, pred) else self._call(logit_model, xb, truth)
        width = max((len(e) for e in extra), default=0)
        slots = [self._call(logit_model, xb, torch.tensor(
            [e[j] if j < len(e) else int(p) for e, p in zip(extra, pred.tolist(), strict=True)],
            device=pred.device)) for j in range(width)]
        hw = xb.shape[-2:]
        maps = [torch.stack([slots[j][i] for j in range(len(e))]) if e
                else torch.zeros(0, *hw) for i, e in enumerate(extra)]
        return {"logits": logits.cpu(), "map_pred": map_pred, "map_true": map_true,
                "classes": [tuple(e) for e in extra], "maps": maps}

    def _call(self, logit_model: nn.Module, xb: torch.Tensor, targets: torch.Tensor
              ) -> torch.Tensor:
        """``fn`` on one chunk, its maps checked and brought to (N, H, W) on the CPU; the
        parameters' gradients and the model's hooks as they were before."""
        params = list(logit_model.parameters())
        grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
        hooks = [(m, name, set(getattr(m, name, {}))) for m in logit_model.modules()
                 for name in _HOOK_DICTS]
        try:
            with torch.enable_grad():
                out = self.fn(logit_model, xb, targets.to(torch.long))
        finally:
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            for m, name, before in hooks:
                left = getattr(m, name, {})
                for key in [k for k in left if k not in before]:
                    del left[key]
        return self._maps(out, xb)

    def _maps(self, out: Any, xb: torch.Tensor) -> torch.Tensor:
        n, _, h, w = xb.shape
        if isinstance(out, np.ndarray):
            out = torch.from_numpy(out)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"fn: expected maps (a tensor or numpy array of shape ({n}, H, W), "
                            f"({n}, 1, H, W) or ({n}, C, h, w)), got {type(out).__name__}")
        m = out.detach().to("cpu", torch.float32)
        if m.dim() == 4:
            m = (m.abs() if self.absolute else m).sum(1)
        elif self.absolute:
            m = m.abs()
        if m.dim() != 3 or m.shape[0] != n:
            raise ValueError(f"fn: expected maps of shape ({n}, H, W), ({n}, 1, H, W) or "
                             f"({n}, C, h, w), got {tuple(out.shape)}")
        bad = int((~torch.isfinite(m)).sum())
        if bad:
            raise ValueError(f"fn: expected finite maps, got {bad} NaN or inf values")
        if tuple(m.shape[1:]) != (h, w):
            m = F.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        return m


def _own(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()
