"""Layers as the explainers need them: a ``(N, C, h, w)`` grid of features, whatever the layer
returns, and a default layer that is never a patch embedding.

Convolutional layers give ``(N, C, h, w)``. Transformers do not: a ViT/DeiT block gives tokens
``(N, prefix + h * w, C)`` (a class token, DeiT's distillation token, DINOv2's register tokens in
front of the patch tokens), a Swin stage (timm, torchvision) gives ``(N, h, w, C)``. Grad-CAM,
Exp-KD's CAMs and Network Dissection all need the grid, so every kind takes a ``reshape=``
option, a callable from the layer's output to ``(N, C, h, w)`` exactly as pytorch-grad-cam's
``reshape_transform``, and without it the layout is found here (:func:`find_grid`):

- 4-d outputs are ``(N, C, h, w)`` unless the model says ``output_fmt == "NHWC"`` (timm's Swin)
  or only the ``(h, w, C)`` reading has the input's aspect ratio (torchvision's Swin);
- 3-d outputs are tokens: the prefix is the model's ``num_prefix_tokens`` (timm) when it has
  one, otherwise the fewest leading tokens (0 to 8) whose removal leaves a grid with the input's
  aspect ratio (197 tokens of a 224x224 input: 1 + 14x14; 198: 2 + 14x14; 201: 5 + 14x14).

Anything else (a pooled ``(N, C)`` vector, tokens that form no grid) is refused, naming the layer
and the shape and pointing at ``reshape=``.

The default layer (:func:`default_layer`): a CNN's last convolution, as before; but when the
last convolution the model runs is a patch embedding (stride = kernel size > 1: ViT, DeiT, Swin,
HuggingFace ViT), the first norm of the model's last transformer block (timm ``blocks[-1].norm1``,
torchvision ``encoder.layers[-1].ln_1``, HuggingFace ``layernorm_before``), the layer
pytorch-grad-cam's ViT and Swin examples use: the final norm after the blocks only reaches the
class token's gradient in a class-token ViT, which leaves the patch tokens' map empty. When no such
norm is found the default is refused, with the option to pass.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["Grid", "default_layer", "find_grid", "grid_of", "preview"]

#: the most leading (class, distillation, register) tokens looked for when the model does not say
MAX_PREFIX = 8
#: how far a grid's aspect ratio may be from the input's and still be taken for it
_RATIO_TOLERANCE = 1.3


@dataclasses.dataclass(frozen=True)
class Grid:
    """How a layer's output maps onto a ``(N, C, h, w)`` grid."""

    layout: str  # "nchw", "nhwc" or "tokens"
    prefix: int = 0  # leading tokens dropped ("tokens" only)
    size: tuple[int, int] | None = None  # (h, w) of the token grid ("tokens" only)

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self.layout == "nchw":
            return t
        if self.layout == "nhwc":
            return t.permute(0, 3, 1, 2)
        h, w = self.size  # type: ignore[misc]
        return t[:, self.prefix:].reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)

    def describe(self) -> str:
        if self.layout == "tokens":
            return f"tokens: {self.prefix} prefix + {self.size[0]}x{self.size[1]} patches"  # type: ignore[index]
        return self.layout.upper()


def _ratio_ok(h: int, w: int, input_hw: tuple[int, int]) -> bool:
    if h < 1 or w < 1:
        return False
    want = input_hw[0] / input_hw[1]
    return abs(math.log((h / w) / want)) <= math.log(_RATIO_TOLERANCE)


def _token_grid(n_tokens: int, input_hw: tuple[int, int]) -> tuple[int, int] | None:
    """The factorisation ``h * w = n_tokens`` closest to the input's aspect ratio, if close."""
    best = None
    for h in range(1, math.isqrt(n_tokens) + 1):
        if n_tokens % h:
            continue
        for hh, ww in ((h, n_tokens // h), (n_tokens // h, h)):
            if _ratio_ok(hh, ww, input_hw):
                err = abs(math.log((hh / ww) / (input_hw[0] / input_hw[1])))
                if best is None or err < best[0]:
                    best = (err, (hh, ww))
    return None if best is None else best[1]


def find_grid(shape: tuple[int, ...], input_hw: tuple[int, int], *,
              prefix_tokens: int | None = None, output_fmt: str | None = None) -> Grid | None:
    """The grid layout of an output of ``shape`` for an input of ``input_hw`` (see the module
    docstring), or None when it is not a grid."""
    if len(shape) == 4:
        if output_fmt == "NHWC":
            return Grid("nhwc")
        if not _ratio_ok(shape[2], shape[3], input_hw) and _ratio_ok(shape[1], shape[2], input_hw):
            return Grid("nhwc")
        return Grid("nchw")
    if len(shape) == 3:
        n = shape[1]
        prefixes = [prefix_tokens] if prefix_tokens is not None else range(MAX_PREFIX + 1)
        for p in prefixes:
            if 0 <= p < n:
                size = _token_grid(n - p, input_hw)
                if size is not None:
                    return Grid("tokens", p, size)
    return None


def _model_hints(model: nn.Module | None) -> dict[str, Any]:
    # timm's ViTs say how many prefix tokens they have; timm's Swin that it is channels-last.
    hints: dict[str, Any] = {}
    if model is None:
        return hints
    model = getattr(model, "wrapped", model)  # a ModelView: the model's own attributes
    p = getattr(model, "num_prefix_tokens", None)
    if isinstance(p, int) and not isinstance(p, bool):
        hints["prefix_tokens"] = p
    fmt = getattr(model, "output_fmt", None)
    if isinstance(fmt, str):
        hints["output_fmt"] = fmt.upper() if fmt.upper() in ("NHWC", "NCHW") else None
    return hints


def grid_of(name: str, t: Any, input_hw: tuple[int, int],
            reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
            model: nn.Module | None = None, arg: str = "layer") -> torch.Tensor:
    """``t``, the output of layer ``name`` for an input of ``input_hw``, as ``(N, C, h, w)``:
    through ``reshape`` when given, else through the layout :func:`find_grid` recognises.
    ``arg`` names the layer argument in errors (``reshape`` errors name its reshape)."""
    if reshape is not None:
        g = reshape(t)
        n = t.shape[0] if isinstance(t, torch.Tensor) else None
        if not isinstance(g, torch.Tensor) or g.dim() != 4 or (n is not None and g.shape[0] != n):
            got = f"shape {tuple(g.shape)}" if isinstance(g, torch.Tensor) else type(g).__name__
            raise ValueError(f"{arg.replace('layer', 'reshape')}: expected a callable returning "
                             f"(N, C, h, w) feature maps of {name!r}, got {got}")
        return g
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{arg}: expected {name!r} to output a tensor of feature maps, got "
                         f"{type(t).__name__}; name a layer that outputs a tensor, or pass "
                         f"reshape=lambda out: ... returning (N, C, h, w)")
    grid = find_grid(tuple(t.shape), input_hw, **_model_hints(model))
    if grid is None:
        raise ValueError(
            f"{arg}: expected {name!r} to output (N, C, h, w) feature maps, (N, h, w, C) or "
            f"tokens (N, [prefix +] h*w, C) of the {input_hw[0]}x{input_hw[1]} input, got shape "
            f"{tuple(t.shape)}; name a spatial layer, or pass reshape=lambda t: ... returning "
            f"(N, C, h, w)")
    return grid(t)


def preview(names: list[str], n: int = 12) -> str:
    names = [nm for nm in names if nm]  # "" is the model itself
    more = f" ... ({len(names) - n} more)" if len(names) > n else ""
    return f"{names[:n]}{more}"


def _is_patch_embedding(conv: nn.Conv2d) -> bool:
    k, s = tuple(conv.kernel_size), tuple(conv.stride)
    return k == s and max(k) > 1 and conv.padding in ((0, 0), "valid")


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or type(module).__name__.endswith(
        ("LayerNorm", "LayerNorm2d", "RMSNorm"))


def _repeated_blocks(model: nn.Module) -> set[str]:
    """Names of modules that have a sibling of the same class in a ModuleList/Sequential
    (transformer blocks, ResNet blocks)."""
    out: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, (nn.ModuleList, nn.Sequential)):
            children = list(module.named_children())
            types = [type(c) for _, c in children]
            for child_name, child in children:
                if types.count(type(child)) > 1:
                    out.add(f"{name}.{child_name}" if name else child_name)
    return out


def _block_of(name: str, named: dict[str, nn.Module], repeated: set[str]) -> str | None:
    """The innermost ancestor of ``name`` that is a transformer block: its class says so
    (``Block``, ``EncoderBlock``, ``ViTLayer``, ``SwinLayer``...) or it is repeated in a
    ModuleList/Sequential."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        ancestor = ".".join(parts[:i])
        kind = type(named[ancestor]).__name__
        if ancestor in repeated or kind.endswith(("Block", "Layer")):
            return ancestor
    return None


def default_layer(model: nn.Module, probe: torch.Tensor,
                  run: Callable[[torch.Tensor], Any]) -> tuple[str, nn.Module]:
    """The default layer of ``model`` (see the module docstring), found by one forward of
    ``probe`` through ``run``."""
    named = dict(model.named_modules())
    names = {m: n for n, m in named.items() if n}
    order: list[tuple[str, nn.Module, tuple[int, ...] | None]] = []

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
        order.append((names[module], module, shape))

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with torch.no_grad():
            run(probe)
    finally:
        for h in handles:
            h.remove()
    convs = [(n, m) for n, m, _ in order if isinstance(m, nn.Conv2d)]
    if convs and not _is_patch_embedding(convs[-1][1]):
        return convs[-1]
    hw = (probe.shape[-2], probe.shape[-1])
    blocks = _repeated_blocks(model)
    hints = _model_hints(model)
    # the last repeated block that holds a norm with a spatial output, and its first such norm
    candidates = [(n, m) for n, m, shape in order
                  if _is_norm(m) and shape is not None and len(shape) in (3, 4)
                  and find_grid(shape, hw, **hints) is not None]
    for name, _ in reversed(candidates):
        parent = _block_of(name, named, blocks)
        if parent is not None:
            first = next(c for c in candidates if c[0].startswith(parent + "."))
            return first
    if not convs:
        raise ValueError(f"layer: the model has no nn.Conv2d and no transformer block norm "
                         f"with a spatial output to default to; name a layer whose output is "
                         f"(N, C, h, w) (or tokens, with reshape=...), one of "
                         f"{preview(list(named))}")
    raise ValueError(f"layer: the model's last convolution {convs[-1][0]!r} is a patch "
                     f"embedding and no transformer block norm with a token grid was found to "
                     f"default to; name the layer to explain (e.g. the last block's first norm) "
                     f"and, for tokens that are not a square grid, reshape=lambda t: ... "
                     f"returning (N, C, h, w)")
