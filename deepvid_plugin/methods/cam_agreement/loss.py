"""Exp-KD: distil a teacher into a student by matching their class activation maps (CAMs).

Exp-KD ("Explainability-based knowledge distillation", Pattern Recognition 2024) trains the student
to be right *for the same reasons* as the teacher: besides the logits, the student's CAMs for the
teacher's top-k classes must match the teacher's, pixel by pixel. This module is a training loss,
not an explainer::

    kd = CAMDistillLoss(teacher, student, "layer4", "features.6", top_k=3, kd_weight=1.0)
    for x, y in loader:
        logits, distill = kd(x)                       # one student forward, the teacher's too
        loss = F.cross_entropy(logits, y) + distill   # distill = cam term (+ logit-KD term)
        loss.backward(); opt.step(); opt.zero_grad()

**CAMs from features and classifier weights.** For a global-average-pooled head (features
``F`` of shape (K, h, w) -> mean over positions -> ``Linear``), ``CAM_c = sum_k W[c, k] F[k]``, and
its spatial mean is the logit of c minus its bias. For a flatten head (``F`` -> flatten ->
``Linear``), the row ``W[c]`` reshaped to (K, h, w) gives ``CAM_c = sum_k W[c, k] * F[k]``
elementwise, and its spatial *sum* is the logit minus the bias (:func:`class_activation_maps`).

**A LayerNorm after the pooling** (ConvNeXt's head: pool -> LayerNorm -> Linear, ``"gap_norm"``):
per sample the norm is affine in the pooled features, ``(p - mu) / sigma * gamma + beta``, so
``CAM_c = sum_k W[c, k] gamma_k / sigma * (F[k] - mu)`` with the sample's own ``mu`` and
``sigma`` of the pooled vector, and its spatial mean is the logit minus ``b_c + W[c] @ beta``:
the same identity, with the norm folded in as BatchNorm is folded into a convolution.

**Finding the head.** Pass ``teacher_head`` / ``student_head`` (an ``nn.Linear`` or its dotted
name); by default it is the last ``nn.Linear`` in ``named_modules()``. Registration order need not
be execution order, so on the first call each network is run once more, in eval mode under
``no_grad`` with its modes and the RNG restored, and the choice is *verified numerically*: the
layer and the head run exactly once, the head's input is the spatial mean (GAP head) or the
flattening (flatten head) of the layer's output, and the head's output is the model's output. Any
mismatch (an MLP head with a hidden layer, max pooling, something after the head, a layer that
does not feed the head directly) raises a ``ValueError`` that suggests a gradient-based CAM
(Grad-CAM) instead. Eval mode is used so that a Dropout in front of the head does not break the
check; the loss itself uses the features and weights, not the dropped-out activations.

**The loss** (per sample, then averaged over the batch): take the teacher's top-k classes; compute
both networks' CAMs for those classes, put them on the logit scale (a flatten head's map is
multiplied by its number of positions so that, like a GAP head's, its *mean* is the logit minus the
bias: one temperature then means the same for both kinds of head), apply ReLU (as CAM does),
resize both bilinearly to a common size (by default the larger of the two, per axis), take a
softmax over the k classes *at each pixel* at ``temperature``, and average the squared difference
of the two maps over classes and pixels. The public implementation took the softmax over the
*batch* axis and then a mean, which is the constant 1/B: its student got no gradient from the CAM
term. Here the softmax is over classes, and a batch's loss is exactly the mean of its samples'.

**Models people train today.** The feature layer may be a transformer's tokens or a Swin stage's
``(B, h, w, C)`` output: it becomes a ``(B, C, h, w)`` grid automatically, or through
``teacher_reshape=``/``student_reshape=`` (:mod:`deepvid_plugin.core.layers`), and a head that
averages the patch tokens (timm ``global_pool="avg"`` with ``fc_norm=False``, Swin) is read like a
GAP head. A class-token head is not a spatial mean of anything, so it is refused (with the
Grad-CAM hint). Model outputs go through :func:`~deepvid_plugin.core.outputs.logits_of`
(``output_transform=``; HuggingFace outputs, dicts and tuples recognised). With
``outputs="sigmoid"`` (multi-label teacher and student) each pixel's class scores are compared
as independent sigmoids at ``temperature`` instead of a softmax over the k classes, and the
logit-KD term is the Bernoulli KL per class (times T^2).

**The teacher** runs in eval mode under ``no_grad`` for the duration of each call (via
:func:`~deepvid_plugin.core.guard.frozen_eval`; every submodule's ``training`` flag is
restored afterwards), so its BatchNorm statistics never move and it never gets a gradient, whatever
mode the user left it in. The student runs in whatever mode the user set. Forward hooks exist only
during a call and are removed in ``finally``, even when the model raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from deepvid_plugin.core import checks
from deepvid_plugin.core.guard import frozen_eval, module_device_dtype, preserved_rng
from deepvid_plugin.core.layers import grid_of
from deepvid_plugin.core.outputs import check_outputs, check_transform, logits_of

__all__ = [
    "CAMDistillLoss",
    "CAMMaps",
    "DistillOutput",
    "HeadKind",
    "class_activation_maps",
    "hinton_kd_loss",
]

HeadKind = Literal["gap", "gap_norm", "flatten"]
_GRADCAM_HINT = ("CAMDistillLoss reads CAMs from the layer's features and the weights of a Linear "
                 "classifier fed directly by them (through global average pooling or flattening). "
                 "For any other head (an MLP with a hidden layer, attention pooling, max pooling...) "
                 "use a gradient-based CAM such as Grad-CAM instead, or pick the layer/head pair "
                 "that is read this way.")


# ---- results -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DistillOutput:
    """What :class:`CAMDistillLoss` returns. Unpacks as ``logits, loss = kd(x)``.

    ``loss`` is the weighted distillation loss, ``cam_weight * cam_loss`` plus
    ``kd_weight * kd_loss`` when ``kd_weight > 0``; add your own task loss (cross-entropy) to it.
    ``cam_loss`` and ``kd_loss`` are the unweighted terms, still attached to the graph, for
    re-weighting or logging (``parts`` gives them as floats). ``kd_loss`` is always computed (it is
    cheap) but only enters ``loss`` when ``kd_weight > 0``.
    """

    logits: torch.Tensor  # the student's logits (B, C), attached to the graph
    loss: torch.Tensor  # scalar, weighted sum of the distillation terms
    cam_loss: torch.Tensor  # scalar, unweighted CAM term
    kd_loss: torch.Tensor  # scalar, unweighted Hinton logit-KD term (T^2-scaled)
    teacher_logits: torch.Tensor  # (B, C), no grad
    top_classes: torch.Tensor  # (B, k) the teacher's top-k classes the CAMs were compared on

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.logits, self.loss))

    @property
    def parts(self) -> dict[str, float]:
        """The terms as plain floats, for a logger."""
        return {"loss": float(self.loss.detach()), "cam": float(self.cam_loss.detach()),
                "kd": float(self.kd_loss.detach())}


@dataclasses.dataclass(frozen=True)
class CAMMaps:
    """Both networks' raw CAMs for every class (no ReLU, no resizing), from :meth:`maps`.

    ``teacher``/``student`` are (B, C, h, w) at each network's own resolution and satisfy the CAM
    identity: mean over positions (GAP head) or sum (flatten head) = logit - bias.
    """

    teacher: torch.Tensor
    student: torch.Tensor
    teacher_logits: torch.Tensor
    student_logits: torch.Tensor
    teacher_head_kind: HeadKind
    student_head_kind: HeadKind


# ---- the maths ---------------------------------------------------------------------------------
def class_activation_maps(features: torch.Tensor, head: nn.Linear, kind: HeadKind,
                          classes: torch.Tensor | None = None,
                          norm: nn.LayerNorm | None = None) -> torch.Tensor:
    """Raw CAMs (no ReLU, no bias) of ``head`` over ``features`` (B, K, h, w).

    ``classes``: None for every class -> (B, C, h, w); or a (B, k) index tensor -> (B, k, h, w).
    GAP head: the spatial mean of a class's map is its logit minus its bias. Flatten head: the
    spatial sum is. ``"gap_norm"`` (a LayerNorm ``norm`` between the pooling and the head): the
    norm folded in per sample, the spatial mean is the logit minus ``bias + W @ norm.bias``.
    """
    if features.dim() != 4:
        raise ValueError(f"features: expected a 4-D tensor (B, K, h, w), got shape "
                         f"{tuple(features.shape)}")
    b, k, h, w = features.shape
    weight = head.weight
    if kind == "gap_norm":
        if norm is None:
            raise ValueError("norm: expected the LayerNorm between the pooling and the head for "
                             "kind 'gap_norm', got None")
        pooled = features.mean(dim=(2, 3))
        mu = pooled.mean(1, keepdim=True)
        scale = torch.rsqrt(pooled.var(1, unbiased=False, keepdim=True) + norm.eps)  # (B, 1)
        gamma = norm.weight if norm.weight is not None else torch.ones_like(pooled[0])
        centred = (features - mu[:, :, None, None]) * scale[:, :, None, None]
        folded = weight * gamma  # (C, K)
        if classes is None:
            return torch.einsum("ck,bkhw->bchw", folded, centred)
        return torch.einsum("bck,bkhw->bchw", folded[classes], centred)
    if kind == "gap":
        if weight.shape[1] != k:
            raise ValueError(f"features: expected {weight.shape[1]} channels for a GAP head with "
                             f"in_features={weight.shape[1]}, got {k}")
        if classes is None:
            return torch.einsum("ck,bkhw->bchw", weight, features)
        return torch.einsum("bck,bkhw->bchw", weight[classes], features)
    if kind == "flatten":
        if weight.shape[1] != k * h * w:
            raise ValueError(f"features: expected K*h*w = {weight.shape[1]} (the head's "
                             f"in_features) for a flatten head, got {k}*{h}*{w} = {k * h * w}")
        per_pos = weight.reshape(weight.shape[0], k, h, w)
        if classes is None:
            return torch.einsum("ckhw,bkhw->bchw", per_pos, features)
        return torch.einsum("bckhw,bkhw->bchw", per_pos[classes], features)
    raise ValueError(f"kind: expected 'gap' or 'flatten', got {kind!r}")


def hinton_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                   temperature: float, outputs: str = "logits") -> torch.Tensor:
    """KL(teacher || student) of the softened distributions, times T^2 (Hinton et al. 2015), per
    sample then averaged over the batch. ``outputs="sigmoid"``: the sum over classes of each
    class's Bernoulli KL (independent classes)."""
    t = float(temperature)
    if outputs == "sigmoid":
        s, q = student_logits / t, teacher_logits / t
        p = torch.sigmoid(q)
        kl = p * (F.logsigmoid(q) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-q)
                                                                 - F.logsigmoid(-s))
        return kl.sum(1).mean() * (t * t)
    return F.kl_div(F.log_softmax(student_logits / t, dim=1),
                    F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)


def _cam_loss_per_sample(t_cam: torch.Tensor, s_cam: torch.Tensor, temperature: float,
                         size: tuple[int, int], outputs: str = "logits") -> torch.Tensor:
    """(B, k, h, w) logit-scale maps of the same classes -> (B,) per-sample losses."""
    t_cam = F.interpolate(t_cam.relu(), size=size, mode="bilinear", align_corners=False)
    s_cam = F.interpolate(s_cam.relu(), size=size, mode="bilinear", align_corners=False)
    if outputs == "sigmoid":  # independent classes: each pixel's score of each class on its own
        p_t, p_s = torch.sigmoid(t_cam / temperature), torch.sigmoid(s_cam / temperature)
        return (p_t - p_s).pow(2).mean(dim=(1, 2, 3))
    # dim=1 is the class axis: each pixel gets a distribution over the k classes. (The public code
    # used dim=0, the batch, and its mean is the constant 1/B.)
    p_t = torch.softmax(t_cam / temperature, dim=1)
    p_s = torch.softmax(s_cam / temperature, dim=1)
    return (p_t - p_s).pow(2).mean(dim=(1, 2, 3))


# ---- the loss ----------------------------------------------------------------------------------
class CAMDistillLoss:
    """Exp-KD's CAM alignment loss (+ optional Hinton logit KD). See the module docstring.

    Args:
        teacher, student: the two classifiers (``nn.Module``, returning logits (B, C)).
        teacher_layer, student_layer: the feature layer of each (module or dotted name from
            ``named_modules()``); its output (B, K, h, w) must feed the head directly.
        top_k: how many of the teacher's top classes the CAMs are compared on (>= 2: a softmax
            over one class is the constant 1).
        temperature: of the per-pixel softmax over the k classes (maps are on the logit scale).
        cam_weight, kd_weight: weights of the CAM term and the logit-KD term in ``loss``.
        kd_temperature: Hinton's T for the logit-KD term.
        size: the common (h, w) the maps are resized to; None = the larger of the two, per axis.
        teacher_head, student_head: the classifier ``nn.Linear`` (module or dotted name); None =
            the last ``nn.Linear`` in the network (verified numerically on the first call).
        teacher_reshape, student_reshape: a callable from the layer's output to (B, K, h, w)
            (pytorch-grad-cam's ``reshape_transform``); None finds convolutional, Swin and token
            layouts itself (:mod:`deepvid_plugin.core.layers`).
        outputs: ``"logits"`` (one class per image) or ``"sigmoid"`` (independent classes).
        output_transform: a callable from a network's output to its logits (B, C), for both
            networks; HuggingFace outputs, dicts with ``"logits"`` and tuples are recognised
            without it.

    Not an ``nn.Module`` on purpose: registering the networks as children would make ``.train()``
    on the loss flip the teacher's mode and put the teacher's weights in ``.parameters()``.

    Example::

        >>> import torch
        >>> from deepvid_plugin.distill import CAMDistillLoss
        >>> def net(width):
        ...     return torch.nn.Sequential(torch.nn.Conv2d(1, width, 3, padding=1),
        ...                                torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        ...                                torch.nn.Flatten(), torch.nn.Linear(width, 4))
        >>> teacher, student = net(8), net(4)
        >>> kd = CAMDistillLoss(teacher, student, "1", "1", top_k=2)
        >>> logits, distill = kd(torch.rand(3, 1, 8, 8))
        >>> logits.shape, distill.dim()
        (torch.Size([3, 4]), 0)
    """

    def __init__(self, teacher: nn.Module, student: nn.Module,
                 teacher_layer: nn.Module | str, student_layer: nn.Module | str, *,
                 top_k: int = 3, temperature: float = 1.0, cam_weight: float = 1.0,
                 kd_weight: float = 0.0, kd_temperature: float = 4.0,
                 size: int | tuple[int, int] | None = None,
                 teacher_head: nn.Module | str | None = None,
                 student_head: nn.Module | str | None = None,
                 teacher_reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 student_reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 outputs: str = "logits",
                 output_transform: Callable[[object], torch.Tensor] | None = None) -> None:
        for arg, model in (("teacher", teacher), ("student", student)):
            if not isinstance(model, nn.Module):
                raise TypeError(f"{arg}: expected a torch.nn.Module, got {type(model).__name__}")
        self.teacher, self.student = teacher, student
        self.teacher_layer_name, self._t_layer = _resolve(teacher, teacher_layer, "teacher_layer",
                                                          "teacher")
        self.student_layer_name, self._s_layer = _resolve(student, student_layer, "student_layer",
                                                          "student")
        self.teacher_head_name, self._t_head = _resolve_head(teacher, teacher_head, "teacher_head",
                                                             "teacher")
        self.student_head_name, self._s_head = _resolve_head(student, student_head, "student_head",
                                                             "student")
        c_t, c_s = self._t_head.out_features, self._s_head.out_features
        if c_t != c_s:
            raise ValueError(f"student_head: expected {c_t} classes like teacher_head "
                             f"{self.teacher_head_name!r}, got {c_s} ({self.student_head_name!r})")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 2 <= top_k <= c_t:
            raise ValueError(f"top_k: expected an int in [2, {c_t}] (the number of classes; a "
                             f"softmax over one class is constant), got {top_k!r}")
        self.top_k = top_k
        self.temperature = _positive(temperature, "temperature")
        self.kd_temperature = _positive(kd_temperature, "kd_temperature")
        self.cam_weight = _non_negative(cam_weight, "cam_weight")
        self.kd_weight = _non_negative(kd_weight, "kd_weight")
        self.size = _size(size)
        self.teacher_reshape = check_transform("teacher_reshape", teacher_reshape)
        self.student_reshape = check_transform("student_reshape", student_reshape)
        self.outputs = check_outputs(outputs, ("logits", "sigmoid"))
        self.output_transform = check_transform("output_transform", output_transform)
        # Set on the first call by _verify (per network: "gap", "gap_norm" or "flatten"), with
        # the LayerNorm of a "gap_norm" head.
        self.teacher_head_kind: HeadKind | None = None
        self.student_head_kind: HeadKind | None = None
        self._norms: dict[str, nn.LayerNorm | None] = {"teacher": None, "student": None}

    def __repr__(self) -> str:
        return (f"CAMDistillLoss(teacher_layer={self.teacher_layer_name!r}, "
                f"student_layer={self.student_layer_name!r}, teacher_head="
                f"{self.teacher_head_name!r} ({self.teacher_head_kind}), student_head="
                f"{self.student_head_name!r} ({self.student_head_kind}), top_k={self.top_k}, "
                f"temperature={self.temperature}, cam_weight={self.cam_weight}, "
                f"kd_weight={self.kd_weight}, kd_temperature={self.kd_temperature})")

    # -- public -----------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> DistillOutput:
        self._check_input(x)
        self._ensure_verified(x)
        with frozen_eval(self.teacher):
            t_logits, t_feat = self._forward("teacher", x)
        s_logits, s_feat = self._forward("student", x)
        top = t_logits.topk(self.top_k, dim=1).indices
        per_sample = self._per_sample(t_feat, s_feat, top)
        cam_loss = per_sample.mean()
        kd_loss = hinton_kd_loss(s_logits, t_logits, self.kd_temperature, self.outputs)
        loss = self.cam_weight * cam_loss
        if self.kd_weight > 0:
            loss = loss + self.kd_weight * kd_loss
        return DistillOutput(logits=s_logits, loss=loss, cam_loss=cam_loss, kd_loss=kd_loss,
                             teacher_logits=t_logits, top_classes=top)

    @torch.no_grad()
    def maps(self, x: torch.Tensor) -> CAMMaps:
        """Every class's raw CAM for both networks, both in eval mode (modes restored)."""
        self._check_input(x)
        self._ensure_verified(x)
        with frozen_eval(self.teacher, self.student):
            t_logits, t_feat = self._forward("teacher", x)
            s_logits, s_feat = self._forward("student", x)
        return CAMMaps(teacher=class_activation_maps(t_feat, self._t_head, self.teacher_head_kind,
                                                     norm=self._norms["teacher"]),
                       student=class_activation_maps(s_feat, self._s_head, self.student_head_kind,
                                                     norm=self._norms["student"]),
                       teacher_logits=t_logits, student_logits=s_logits,
                       teacher_head_kind=self.teacher_head_kind,
                       student_head_kind=self.student_head_kind)

    # -- internals --------------------------------------------------------------------------------
    def _network(self, arg: str) -> tuple[nn.Module, nn.Module, str, Callable | None]:
        if arg == "teacher":
            return self.teacher, self._t_layer, self.teacher_layer_name, self.teacher_reshape
        return self.student, self._s_layer, self.student_layer_name, self.student_reshape

    def _forward(self, arg: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, feature grid) of one network on ``x``."""
        model, layer, name, reshape = self._network(arg)
        with _recording(layer, "output") as seen:
            out = model(x)
        logits = logits_of(out, self.output_transform, n=x.shape[0], what=f"{arg} output")
        return logits, _single_feature_map(seen, f"{arg}_layer", name, x, reshape, model)

    def _per_sample(self, t_feat: torch.Tensor, s_feat: torch.Tensor,
                    top: torch.Tensor) -> torch.Tensor:
        t_cam = _logit_scale(class_activation_maps(t_feat, self._t_head, self.teacher_head_kind,
                                                   top, self._norms["teacher"]),
                             self.teacher_head_kind)
        s_cam = _logit_scale(class_activation_maps(s_feat, self._s_head, self.student_head_kind,
                                                   top, self._norms["student"]),
                             self.student_head_kind)
        size = self.size or (max(t_cam.shape[2], s_cam.shape[2]),
                             max(t_cam.shape[3], s_cam.shape[3]))
        return _cam_loss_per_sample(t_cam.detach(), s_cam, self.temperature, size, self.outputs)

    def _check_input(self, x: torch.Tensor) -> None:
        """Named errors instead of torch's (an empty batch: "cannot reshape tensor of 0
        elements"; NaN pixels: "atol must be greater than or equal to zero, but got -nan"; a
        half-precision network given float32: "Input type (float) and bias type (c10::Half)")."""
        checks.images("x", x)
        if torch.is_autocast_enabled(x.device.type):
            return  # autocast runs each layer in its own dtype
        dtypes = {arg: module_device_dtype(model)[1]
                  for arg, model in (("teacher", self.teacher), ("student", self.student))}
        if dtypes["teacher"] != dtypes["student"]:
            raise TypeError(f"teacher, student: expected networks of one dtype (or the loss "
                            f"called under torch.autocast), got a {dtypes['teacher']} teacher "
                            f"and a {dtypes['student']} student; e.g. teacher.float()")
        if dtypes["teacher"] != x.dtype:
            raise TypeError(f"x: expected {dtypes['teacher']} images (the networks' dtype), got "
                            f"{x.dtype}; cast them with x.to({dtypes['teacher']})")

    def _ensure_verified(self, x: torch.Tensor) -> None:
        if self.teacher_head_kind is None:
            self.teacher_head_kind = _verify_head(self, "teacher", self._t_head,
                                                  self.teacher_head_name, x)
        if self.student_head_kind is None:
            self.student_head_kind = _verify_head(self, "student", self._s_head,
                                                  self.student_head_name, x)


# ---- helpers -----------------------------------------------------------------------------------
def _logit_scale(cam: torch.Tensor, kind: HeadKind) -> torch.Tensor:
    # A flatten head's map sums to the logit; times h*w its mean does, like a GAP head's.
    return cam * (cam.shape[2] * cam.shape[3]) if kind == "flatten" else cam


@contextlib.contextmanager
def _recording(module: nn.Module, what: Literal["input", "output"]) -> Iterator[list]:
    """Record ``module``'s first positional input or its output during the block; the hook is
    removed on exit, also when the block raises."""
    seen: list = []

    def hook(_mod: nn.Module, args: tuple, out: object) -> None:
        seen.append(args[0] if what == "input" and args else out)

    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _single_feature_map(seen: list, arg: str, name: str, x: torch.Tensor,
                        reshape: Callable | None, model: nn.Module) -> torch.Tensor:
    if len(seen) != 1:
        raise ValueError(f"{arg}: expected {name!r} to run exactly once per forward, it ran "
                         f"{len(seen)} times")
    return grid_of(name, seen[0], (x.shape[-2], x.shape[-1]), reshape, model, arg=arg)


def _verify_head(loss: CAMDistillLoss, arg: str, head: nn.Linear, head_name: str,
                 x: torch.Tensor) -> HeadKind:
    """Run the network once (eval, no_grad, modes and RNG restored) and check that its layer
    feeds ``head`` through a GAP or a flatten and that ``head``'s output is the model's output."""
    model, layer, layer_name, _ = loss._network(arg)
    with preserved_rng(), frozen_eval(model), _recording(head, "input") as h_in, \
            _recording(head, "output") as h_out:
        out, feat = loss._forward(arg, x)
    if len(h_in) != 1:
        raise ValueError(f"{arg}_head: expected {head_name!r} to run exactly once per forward, it "
                         f"ran {len(h_in)} times. {_GRADCAM_HINT}")
    between = _between(model, layer_name, head_name)
    a, logits = h_in[0], h_out[0]
    if not isinstance(logits, torch.Tensor) or logits.shape != out.shape \
            or not _close(logits, out):
        raise ValueError(f"{arg}_head: expected {head_name!r}'s output to be {arg}'s logits, but "
                         f"something runs after it (or another Linear is the classifier: pass "
                         f"{arg}_head=...). {_GRADCAM_HINT}")
    b, k, h, w = feat.shape
    flat = a.reshape(a.shape[0], -1) if isinstance(a, torch.Tensor) else None
    if flat is not None and flat.shape == (b, k) and _close(flat, feat.mean(dim=(2, 3))):
        return "gap"
    norm = _norm_between(model, layer_name, head_name, k)
    if flat is not None and flat.shape == (b, k) and norm is not None and _close(
            flat, F.layer_norm(feat.mean(dim=(2, 3)), (k,), norm.weight, norm.bias, norm.eps)):
        loss._norms[arg] = norm
        return "gap_norm"
    if flat is not None and flat.shape == (b, k * h * w) and _close(flat, feat.flatten(1)):
        return "flatten"
    got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
    why = (f" (between them run {between}: a class-token head, a norm after the pooling or an "
           f"MLP is not read this way)" if between else "")
    raise ValueError(f"{arg}_head: expected {head_name!r}'s input to be the global average "
                     f"({b}, {k}) or the flattening ({b}, {k * h * w}) of {arg}_layer "
                     f"{layer_name!r}'s output (as a grid: {tuple(feat.shape)}), got an input of "
                     f"shape {got} that is neither{why}. {_GRADCAM_HINT}")


def _norm_between(model: nn.Module, layer_name: str, head_name: str,
                  channels: int) -> nn.LayerNorm | None:
    """The one LayerNorm over ``channels`` registered between the layer and the head, if any."""
    names = [n for n, m in model.named_modules() if n and not list(m.children())]
    after = [i for i, n in enumerate(names) if n == layer_name or n.startswith(layer_name + ".")]
    if not after or head_name not in names:
        return None
    modules = dict(model.named_modules())
    norms = [modules[n] for n in names[after[-1] + 1:names.index(head_name)]
             if isinstance(modules[n], nn.LayerNorm)
             and tuple(modules[n].normalized_shape) == (channels,)]
    return norms[0] if len(norms) == 1 else None


def _between(model: nn.Module, layer_name: str, head_name: str) -> list[str]:
    """The parametrised or normalising modules registered between the layer and the head (what
    usually breaks the CAM identity), for the error message."""
    names = [n for n, m in model.named_modules() if n and not list(m.children())]
    after = [i for i, n in enumerate(names) if n == layer_name or n.startswith(layer_name + ".")]
    if not after or head_name not in names:
        return []
    inside = names[after[-1] + 1:names.index(head_name)]
    kept = [f"{n!r} ({type(m).__name__})" for n, m in model.named_modules() if n in inside
            and (any(True for _ in m.parameters(recurse=False)) or "Norm" in type(m).__name__)]
    return kept[:4]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach(), b.detach()
    scale = float(b.abs().max()) if b.numel() else 1.0
    return bool(torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5 * max(scale, 1.0)))


def _resolve(model: nn.Module, layer: object, arg: str, model_arg: str) -> tuple[str, nn.Module]:
    """(dotted name, module) for a module of ``model`` given as a module or a dotted name."""
    if isinstance(layer, nn.Module):
        for name, mod in model.named_modules():
            if mod is layer:
                return name, mod
        raise ValueError(f"{arg}: expected a submodule of {model_arg} (or its dotted name), got a "
                         f"{type(layer).__name__} that is not part of {model_arg}")
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer and layer in modules:
            return layer, modules[layer]
        names = [n for n in modules if n]
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
        hint = (f"close matches: {close}" if close
                else f"its modules include {names[:12]}{' ...' if len(names) > 12 else ''}")
        raise ValueError(f"{arg}: no module named {layer!r} in {model_arg}; {hint}")
    raise TypeError(f"{arg}: expected an nn.Module or a dotted name from named_modules(), got "
                    f"{type(layer).__name__}")


def _resolve_head(model: nn.Module, head: object, arg: str,
                  model_arg: str) -> tuple[str, nn.Linear]:
    if head is None:
        linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{arg}: {model_arg} has no nn.Linear to read class weights from. "
                             f"{_GRADCAM_HINT}")
        return linears[-1]
    name, mod = _resolve(model, head, arg, model_arg)
    if not isinstance(mod, nn.Linear):
        raise ValueError(f"{arg}: expected an nn.Linear classifier, got {type(mod).__name__} "
                         f"{name!r}. {_GRADCAM_HINT}")
    return name, mod


def _positive(v: object, arg: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{arg}: expected a finite number > 0, got {v!r}")
    return float(v)


def _non_negative(v: object, arg: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{arg}: expected a finite number >= 0, got {v!r}")
    return float(v)


def _size(size: object) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        return int(size[0]), int(size[1])
    raise ValueError(f"size: expected None, a positive int or a pair (h, w) of them, got {size!r}")
