"""Which module pairs Summit can connect, and how: the *plan* of graph layers and hops.

Supported structures (anything else gets a ``ValueError`` naming the module in the way):

- **Conv stages**: a chosen ``nn.Conv2d`` (``groups=1``, zero padding), optionally followed by a
  ``BatchNorm2d`` (folded into the weights, sign of gamma included) and elementwise activations.
  The node activation is the stage's output (after BatchNorm and activation).
- **Residual blocks**: torchvision's ``BasicBlock`` and ``Bottleneck``. A block that follows
  another chosen layer is expanded into its inner convs as hops (``block.conv1`` -> ... -> block)
  plus the shortcut (identity, or its ``downsample`` = 1x1 ``Conv2d`` + ``BatchNorm2d``) as edges
  from the previous chosen layer straight to the block's output channels.
- **ConvNeXt blocks** (timm's ``ConvNeXtBlock``: depthwise conv, LayerNorm, a 1x1-conv or Linear
  MLP, layer scale, identity shortcut): a block that follows another chosen layer is expanded
  like a residual block: ``block.conv_dw`` (a depthwise hop: each output channel has one input,
  its own), ``block.mlp.fc1`` (the MLP's expansion, read after the LayerNorm), and the block's
  output (``fc2`` with the layer scale folded in, plus the identity shortcut). Its stem and
  downsampling convolutions are conv stages; their channel-wise LayerNorm2d is channel-preserving.
- **The head**: after the last chosen layer, only channel-preserving modules (pooling,
  elementwise activations, BatchNorm, LayerNorm2d, Dropout, Flatten, Identity) and then one
  final ``nn.Linear`` whose input is the pooled (``in_features == C``) or flattened
  (``in_features == C * positions``) feature map.

Transformer blocks (attention mixes every position with every other), squeeze-and-excitation
and other data-dependent channel mixing have no kernel to read influences from: naming one is
refused, with the module's name and type.

Between two chosen layers only channel-preserving modules may run, so channel ``i`` of one
layer's output is channel ``i`` of the next conv's input. The model's execution order is taken
from its module registration order (true for ``nn.Sequential`` and torchvision's ResNets).
"""

from __future__ import annotations

import dataclasses
import difflib

import torch
from torch import nn

from deepvid_plugin.core.layers import preview

# Modules that keep channel ``i`` as channel ``i``: they may sit between two chosen layers.
_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
                nn.Hardswish, nn.Mish, nn.PReLU)
_CHANNEL_PRESERVING = _ELEMENTWISE + (nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout,
                                      nn.Dropout2d, nn.Identity)
_HEAD_PASS = _CHANNEL_PRESERVING + (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten)


def _block_types() -> tuple[type, ...]:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    return (BasicBlock, Bottleneck)


def _is_convnext_block(module: nn.Module) -> bool:
    # timm's ConvNeXtBlock, recognised by its parts (timm is not a dependency)
    mlp = getattr(module, "mlp", None)
    return (type(module).__name__ == "ConvNeXtBlock" and isinstance(
        getattr(module, "conv_dw", None), nn.Conv2d) and mlp is not None
        and isinstance(getattr(mlp, "fc1", None), (nn.Conv2d, nn.Linear))
        and isinstance(getattr(mlp, "fc2", None), (nn.Conv2d, nn.Linear)))


def _is_block(module: nn.Module) -> bool:
    return isinstance(module, _block_types()) or _is_convnext_block(module)


def _channel_norm(module: nn.Module) -> bool:
    """A LayerNorm over the channels of a (N, C, h, w) map (timm's and torchvision's
    LayerNorm2d): it rescales each position, channel i stays channel i."""
    return isinstance(module, nn.LayerNorm) and type(module).__name__ == "LayerNorm2d"


def _passes(module: nn.Module, allowed: tuple[type, ...]) -> bool:
    return isinstance(module, allowed) or _channel_norm(module)


@dataclasses.dataclass(frozen=True)
class Tap:
    """Where a tensor is captured: a module's input (``"in"``) or output (``"out"``)."""

    module: str
    side: str
    channels_last: bool = False  # the tensor is (N, h, w, C): captured as (N, C, h, w)

    @property
    def key(self) -> str:
        return f"{self.module}|{self.side}"


@dataclasses.dataclass(frozen=True)
class GraphLayer:
    name: str
    channels: int
    tap: Tap  # the tensor whose per-channel spatial max is the node activation


@dataclasses.dataclass(frozen=True)
class Term:
    """One source layer's contribution to a hop's target: through a folded conv, or identity."""

    source: str
    tap: Tap
    weight: torch.Tensor | None  # (out, in, kh, kw) with BatchNorm folded; None = identity
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    depthwise: bool = False  # weight (C, 1, kh, kw): output channel c reads input c only


@dataclasses.dataclass(frozen=True)
class Hop:
    target: str
    terms: tuple[Term, ...]


@dataclasses.dataclass(frozen=True)
class Head:
    name: str
    source: str
    tap: Tap
    weight: torch.Tensor  # (classes, in_features)


@dataclasses.dataclass(frozen=True)
class Plan:
    layers: tuple[GraphLayer, ...]
    hops: tuple[Hop, ...]
    head: Head

    @property
    def taps(self) -> tuple[Tap, ...]:
        found = [g.tap for g in self.layers] + [t.tap for h in self.hops for t in h.terms]
        found.append(self.head.tap)
        return tuple(dict.fromkeys(found))


def atoms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules and residual blocks, in registration (= assumed execution) order."""
    blocks = _block_types()
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, blocks) or _is_convnext_block(child) \
                    or next(child.children(), None) is None:
                out.append((full, child))
            else:
                walk(full, child)

    walk("", model)
    return out


def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> torch.Tensor:
    """The conv weight scaled per output channel by BatchNorm's gamma / sqrt(var + eps).

    Folding into the weight (not multiplying the max afterwards) keeps the sign right: with a
    negative gamma the largest contribution is the most negative pre-BN one.
    """
    w = conv.weight.detach()
    if bn is None:
        return w
    if bn.running_var is None:
        raise ValueError(f"layers: BatchNorm2d after the conv must track running stats "
                         f"(track_running_stats=True) to be folded, got {bn}")
    scale = torch.rsqrt(bn.running_var.detach().to(w.dtype) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    return w * scale.view(-1, 1, 1, 1)


def _check_conv(name: str, conv: nn.Module, in_channels: int, source: str) -> nn.Conv2d:
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"layers: expected {name!r} to be an nn.Conv2d, got "
                         f"{type(conv).__name__}")
    if conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError(f"layers: {name!r}: expected groups=1 and padding_mode='zeros', got "
                         f"groups={conv.groups}, padding_mode={conv.padding_mode!r}")
    if conv.in_channels != in_channels:
        raise ValueError(f"layers: {name!r} expects {conv.in_channels} input channels but the "
                         f"previous chosen layer {source!r} has {in_channels}; a module that "
                         f"changes channels lies between them")
    return conv


def _term(name: str, conv: nn.Conv2d, bn: nn.Module | None, source: str, tap: Tap) -> Term:
    if bn is not None and not isinstance(bn, nn.BatchNorm2d):
        raise ValueError(f"layers: expected a BatchNorm2d after {name!r}, got "
                         f"{type(bn).__name__}")
    return Term(source, tap, fold(conv, bn), conv.stride, _padding(name, conv), conv.dilation)


def _padding(name: str, conv: nn.Conv2d) -> tuple[int, int]:
    """Numeric padding (unfold takes no 'same'/'valid'); 'same' only where it is symmetric."""
    if not isinstance(conv.padding, str):
        return conv.padding
    if conv.padding == "valid":
        return (0, 0)
    totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
    if any(t % 2 for t in totals):
        raise ValueError(f"layers: {name!r}: padding='same' with an even kernel pads "
                         f"asymmetrically, which is not supported; got kernel_size="
                         f"{conv.kernel_size}")
    return (totals[0] // 2, totals[1] // 2)


def _between(run: list[tuple[str, nn.Module]], allowed: tuple[type, ...], a: str, b: str) -> None:
    for name, module in run:
        if not _passes(module, allowed):
            hint = " (add it to layers)" if isinstance(module, nn.Conv2d) or _is_block(
                module) else ""
            raise ValueError(f"layers: cannot connect {a!r} to {b!r}: {name!r} "
                             f"({type(module).__name__}) runs between them{hint}; only "
                             f"channel-preserving modules may ({', '.join(t.__name__ for t in allowed)})")


def _block(name: str, block: nn.Module, prev: GraphLayer | None,
           layers: list[GraphLayer], hops: list[Hop]) -> None:
    convs = [n for n in ("conv1", "conv2", "conv3") if hasattr(block, n)]
    out_channels = getattr(block, convs[-1]).out_channels
    if prev is None:  # the first chosen layer: its output channels only, nothing feeds it
        layers.append(GraphLayer(name, out_channels, Tap(name, "out")))
        return
    source = prev
    for k, conv_name in enumerate(convs[:-1]):  # inner convs: one graph layer each
        full = f"{name}.{conv_name}"
        conv = _check_conv(full, getattr(block, conv_name), source.channels, source.name)
        bn = getattr(block, f"bn{k + 1}")
        hops.append(Hop(full, (_term(full, conv, bn, source.name, Tap(full, "in")),)))
        # The next conv's input is relu(bn(conv(x))): exactly this inner layer's activation.
        inner = GraphLayer(full, conv.out_channels, Tap(f"{name}.{convs[k + 1]}", "in"))
        layers.append(inner)
        source = inner
    last = f"{name}.{convs[-1]}"
    conv = _check_conv(last, getattr(block, convs[-1]), source.channels, source.name)
    branch = _term(last, conv, getattr(block, f"bn{len(convs)}"), source.name, Tap(last, "in"))
    shortcut = _shortcut(name, block, prev)
    hops.append(Hop(name, (branch, shortcut)))
    layers.append(GraphLayer(name, out_channels, Tap(name, "out")))


def _convnext(name: str, block: nn.Module, prev: GraphLayer | None,
              layers: list[GraphLayer], hops: list[Hop]) -> None:
    """A timm ConvNeXt block: depthwise conv -> LayerNorm -> fc1 -> GELU -> fc2 -> layer scale,
    plus the identity shortcut (see the module docstring)."""
    dw, mlp = block.conv_dw, block.mlp
    fc1, fc2 = mlp.fc1, mlp.fc2
    channels = dw.out_channels
    if prev is None:
        layers.append(GraphLayer(name, channels, Tap(name, "out")))
        return
    if dw.groups != dw.in_channels or dw.in_channels != channels or dw.padding_mode != "zeros":
        raise ValueError(f"layers: {name!r}: expected a depthwise conv_dw (groups = channels, "
                         f"zero padding), got {dw}")
    if dw.in_channels != prev.channels:
        raise ValueError(f"layers: {name!r} expects {dw.in_channels} input channels but the "
                         f"previous chosen layer {prev.name!r} has {prev.channels}")
    shortcut = getattr(block, "shortcut", None)
    if shortcut is not None and not isinstance(shortcut, nn.Identity):
        raise ValueError(f"layers: {name!r}: expected an identity shortcut, got "
                         f"{type(shortcut).__name__}")
    for part in ("norm", "drop1"):
        extra = getattr(mlp, part, None)
        if extra is not None and not isinstance(extra, (nn.Identity, nn.Dropout)):
            raise ValueError(f"layers: {name!r}: expected nothing between mlp.fc1's activation "
                             f"and mlp.fc2, got mlp.{part} ({type(extra).__name__})")
    last = isinstance(fc1, nn.Linear)  # Linear MLP: it runs on (N, h, w, C)
    dw_name, fc1_name, fc2_name = f"{name}.conv_dw", f"{name}.mlp.fc1", f"{name}.mlp.fc2"
    hops.append(Hop(dw_name, (Term(prev.name, Tap(dw_name, "in"), dw.weight.detach(), dw.stride,
                                   _padding(dw_name, dw), dw.dilation, depthwise=True),)))
    layers.append(GraphLayer(dw_name, channels, Tap(dw_name, "out")))
    w1 = fc1.weight.detach().reshape(fc1.out_features if last else fc1.out_channels, channels, 1, 1)
    hops.append(Hop(fc1_name, (Term(dw_name, Tap(fc1_name, "in", last), w1),)))
    hidden = w1.shape[0]
    layers.append(GraphLayer(fc1_name, hidden, Tap(fc2_name, "in", last)))
    w2 = fc2.weight.detach().reshape(channels, hidden, 1, 1)
    gamma = getattr(block, "gamma", None)
    if isinstance(gamma, torch.Tensor):
        w2 = w2 * gamma.detach().reshape(-1, 1, 1, 1)
    hops.append(Hop(name, (Term(fc1_name, Tap(fc2_name, "in", last), w2),
                           Term(prev.name, Tap(name, "in"), None))))
    layers.append(GraphLayer(name, channels, Tap(name, "out")))


def _shortcut(name: str, block: nn.Module, prev: GraphLayer) -> Term:
    down = getattr(block, "downsample", None)
    if down is None:
        return Term(prev.name, Tap(name, "in"), None)
    parts = list(down.children()) if isinstance(down, nn.Sequential) else []
    if len(parts) not in (1, 2) or not isinstance(parts[0], nn.Conv2d):
        raise ValueError(f"layers: {name!r}: expected downsample = Sequential(Conv2d, "
                         f"BatchNorm2d), got {down}")
    conv = _check_conv(f"{name}.downsample.0", parts[0], prev.channels, prev.name)
    return _term(f"{name}.downsample.0", conv, parts[1] if len(parts) == 2 else None,
                 prev.name, Tap(name, "in"))


def _conv_stage(seq: list[tuple[str, nn.Module]], i: int) -> tuple[int, nn.Module | None]:
    """Index of the stage's last atom (conv, then BatchNorm?, then activations) and its BN."""
    j, bn = i + 1, None
    if j < len(seq) and isinstance(seq[j][1], nn.BatchNorm2d):
        bn, j = seq[j][1], j + 1
    while j < len(seq) and isinstance(seq[j][1], _ELEMENTWISE):
        j += 1
    return j - 1, bn


def build_plan(model: nn.Module, names: list[str]) -> Plan:
    """Resolve the chosen layer names against ``model`` into graph layers and hops."""
    seq = atoms(model)
    index = {n: i for i, (n, _) in enumerate(seq)}
    blocks = _block_types()
    valid = [n for n, m in seq if isinstance(m, nn.Conv2d) or _is_block(m)]
    modules = dict(model.named_modules())
    for name in names:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
            why = (f"; {name!r} is a {type(modules[name]).__name__}, and transformer blocks or "
                   f"data-dependent channel mixing have no kernel to read influences from"
                   if name in modules else "")
            raise ValueError(f"layers: expected names of nn.Conv2d modules, torchvision ResNet "
                             f"blocks or timm ConvNeXt blocks of the model (Summit follows "
                             f"influences through convolutions{why}), got {name!r}; close "
                             f"matches: {close}; all: {preview(valid)}")
    positions = [index[n] for n in names]
    if positions != sorted(positions):
        raise ValueError(f"layers: expected the layers in forward order "
                         f"{sorted(names, key=index.get)}, got {names}")
    layers: list[GraphLayer] = []
    hops: list[Hop] = []
    prev: GraphLayer | None = None
    prev_end = -1
    for name in names:
        i = index[name]
        module = seq[i][1]
        if prev is not None:
            _between(seq[prev_end + 1:i], _CHANNEL_PRESERVING, prev.name, name)
        if isinstance(module, blocks):
            _block(name, module, prev, layers, hops)
            end = i
        elif _is_convnext_block(module):
            _convnext(name, module, prev, layers, hops)
            end = i
        else:
            end, bn = _conv_stage(seq, i)
            if prev is not None:
                conv = _check_conv(name, module, prev.channels, prev.name)
                hops.append(Hop(name, (_term(name, conv, bn, prev.name, Tap(name, "in")),)))
            layers.append(GraphLayer(name, module.out_channels, Tap(seq[end][0], "out")))
        prev, prev_end = layers[-1], end
    if prev is None:
        raise ValueError("layers: expected at least one layer name, got []")
    return Plan(tuple(layers), tuple(hops), _head(seq, prev_end, prev))


def _head(seq: list[tuple[str, nn.Module]], prev_end: int, last: GraphLayer) -> Head:
    rest = seq[prev_end + 1:]
    if not rest or not isinstance(rest[-1][1], nn.Linear):
        final = f"{rest[-1][0]!r} ({type(rest[-1][1]).__name__})" if rest else "nothing"
        raise ValueError(f"layers: expected the model to end in an nn.Linear classifier after "
                         f"{last.name!r}, found {final} as its last module")
    name, linear = rest[-1]
    _between(rest[:-1], _HEAD_PASS, last.name, name)
    if linear.in_features % last.channels:
        raise ValueError(f"layers: the classifier {name!r} has in_features="
                         f"{linear.in_features}, expected a multiple of {last.name!r}'s "
                         f"{last.channels} channels (pooled or flattened features)")
    return Head(name, last.name, Tap(name, "in"), linear.weight.detach())
