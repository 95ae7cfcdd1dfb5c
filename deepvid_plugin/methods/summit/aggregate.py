"""Summit's two aggregations over a probe set: which channels fire, and which inputs drive them.

- Activation aggregation: per image, each channel's spatial max (negative values count as 0),
  normalised over the layer's channels; the smallest set of top channels whose share of that
  mass reaches ``top_share`` is counted for the image's class (the authors' "probability mass"
  rule, default 3%).
- Influence aggregation: per image and output channel, each input channel's spatial max of its
  contribution through the kernel (BatchNorm folded in), all at once as a grouped convolution
  (im2col + one batched matmul over the groups); the ``top_inputs`` largest are counted for
  the image's class.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from deepvid_plugin.methods.summit.topology import Hop, Plan, Tap, Term

# Values of one batched-matmul output computed at once: small enough to stay in cache while
# its spatial max is taken (measured fastest on CPU among 2**18 .. 2**26).
CHUNK_ELEMENTS = 1 << 20


@torch.no_grad()
def conv_influence(x: torch.Tensor, weight: torch.Tensor, stride=(1, 1), padding=(0, 0),
                   dilation=(1, 1), chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """Spatial max of each input channel's contribution to each output channel: (N, out, in).

    ``contribution[n, o, i] = max_p conv2d(x[n, i], weight[o, i])[p]``: the grouped convolution
    ``F.conv2d(x, w', groups=in)`` in which group ``i`` convolves input channel ``i`` with its
    ``out`` kernels. It is computed the way such a convolution is implemented, as im2col and one
    batched matmul over the groups. On CPU, Summit over ResNet-18's blocks ran 2.4x faster this
    way than with ``F.conv2d(..., groups=in)`` (oneDNN's kernels for these shapes are slow and
    erratic), with identical counts; the tests compare with both.
    """
    n, c_in, c_out = x.shape[0], x.shape[1], weight.shape[0]
    out = x.new_empty(n, c_out, c_in)
    for first, o, m, outs, write in _influence_blocks(x, weight, stride, padding, dilation,
                                                      chunk_elements):
        write(out[first:first + m, o:o + outs])
    return out


@torch.no_grad()
def top_influences(x: torch.Tensor, weight: torch.Tensor, k: int, stride=(1, 1),
                   padding=(0, 0), dilation=(1, 1), chunk_elements: int = CHUNK_ELEMENTS
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest :func:`conv_influence` values per image and output (sorted, largest
    first) and their input indices, both (N, out, k); ranked chunk by chunk while each chunk is
    still in cache, so the full (N, out, in) tensor is never built."""
    n, c_in, c_out = x.shape[0], x.shape[1], weight.shape[0]
    values = x.new_empty(n, c_out, k)
    indices = torch.empty(n, c_out, k, dtype=torch.long, device=x.device)
    # Rows are ranked along a contiguous last dim (topk there measured ~1.5x faster than along
    # a strided one), written straight into a reused buffer; short rows are padded with -inf
    # (see _ranked_width).
    width = _ranked_width(c_in, k, x.device)
    buffer = None
    for first, o, m, outs, write in _influence_blocks(x, weight, stride, padding, dilation,
                                                      chunk_elements):
        if buffer is None:
            buffer = x.new_full((m * outs * width,), float("-inf"))
        rows = buffer[:m * outs * width].view(m, outs, width)
        write(rows[:, :, :c_in])
        v, i = rows.topk(k, dim=2)
        if width != c_in and bool((i >= c_in).any()):
            # Only a row holding -inf values can tie with the padding: rank it unpadded.
            v, i = rows[:, :, :c_in].contiguous().topk(k, dim=2)
        values[first:first + m, o:o + outs] = v
        indices[first:first + m, o:o + outs] = i
    return values, indices


# torch.topk on CPU picks its algorithm by row length: a partial sort when a row holds at least
# 64 * k values, else nth_element over the whole row, measured ~5x slower per value (k=5: 9 ns
# vs 1.8 ns per value). Rows up to 3x shorter than that are padded with -inf to take the fast
# path (ResNet-18's 128- and 256-channel hops: the ranking ran ~2x faster). Either way the k
# largest values come out sorted; only which of several *equal* values is kept can differ.
_PARTIAL_SORT_ROW = 64


def _ranked_width(c_in: int, k: int, device: torch.device) -> int:
    target = _PARTIAL_SORT_ROW * k
    if device.type != "cpu" or c_in >= target or 3 * c_in < target:
        return c_in
    return target


def _influence_blocks(x, weight, stride, padding, dilation, chunk_elements):
    """Yield ``(first image, first output, images, outputs, write)`` per chunk; ``write(dest)``
    fills ``dest`` (images, outputs, in), which may be strided, with the chunk's maxima.

    Images, then output channels, are chunked so one matmul gives about ``chunk_elements``
    values, which stay in cache while their spatial max is taken.
    """
    n, c_in, h, w = x.shape
    c_out, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
    ksize = (kh, kw)
    # Taps that only ever see zero padding (a 3x3 kernel on a 1x1 map: 8 of 9) add nothing.
    seen = F.unfold(x.new_ones(1, 1, h, w), ksize, dilation=dilation, padding=padding,
                    stride=stride)[0].amax(dim=1) > 0
    kernels = weight.reshape(c_out, c_in, kh * kw)[:, :, seen].permute(1, 0, 2)  # (in, out, t)
    cols = F.unfold(x, ksize, dilation=dilation, padding=padding, stride=stride)
    cols = cols.view(n, c_in, kh * kw, -1)[:, :, seen]
    taps, positions = cols.shape[2], cols.shape[3]
    images = max(1, min(n, chunk_elements // max(1, c_in * c_out * positions)))
    step = c_out if images > 1 else max(1, min(c_out, chunk_elements // max(1, c_in * positions)))
    if taps == 1 and positions == 1:
        # One tap at one position (a 3x3 kernel on a 1x1 map, a 1x1 conv onto 1x1): each
        # contribution is one product, w[o, i] * x[n, i], the value the matmul gives, so it is
        # formed directly in the destination's layout (no matmul, no transpose).
        k_oi = kernels[:, :, 0].T  # (out, in)
        x_ni = cols[:, :, 0, 0]
        for first in range(0, n, images):
            xb = x_ni[first:first + images, None, :]
            for o in range(0, c_out, step):
                kb = k_oi[None, o:o + step]
                yield first, o, xb.shape[0], kb.shape[1], (
                    lambda dest, xb=xb, kb=kb: torch.mul(xb, kb, out=dest))
        return
    for first in range(0, n, images):
        cb = cols[first:first + images]
        m = cb.shape[0]
        cb = cb.permute(1, 2, 0, 3).reshape(c_in, taps, m * positions)
        for o in range(0, c_out, step):
            outs = min(step, c_out - o)
            yield first, o, m, outs, (
                lambda dest, o=o, cb=cb, m=m, outs=outs: _max_into(
                    torch.bmm(kernels[:, o:o + outs], cb), dest, c_in, outs, m, positions))


def _max_into(y, dest, c_in, outs, m, positions):
    """``dest`` (images, outs, in) = the spatial max of ``y`` (in, outs, images * positions)."""
    if positions in (8, 16, 32):
        # Halving with elementwise maxima (contiguous runs of 4..16 values, vectorised) measured
        # 2.2x faster than amax over 16 values (ResNet-18's 4x4 maps); exact, as max is.
        v = y.view(-1, positions)
        while v.shape[1] > 2:
            half = v.shape[1] // 2
            v = torch.maximum(v[:, :half], v[:, half:])
        torch.maximum(v[:, 0].view(c_in, outs, m), v[:, 1].view(c_in, outs, m),
                      out=dest.permute(2, 1, 0))
        return dest
    y = y.view(c_in, outs, m, positions)
    if positions <= 4:
        # A reduction over <= 4 values writes the strided destination directly: measured 30%
        # faster than reducing and then transposing; for longer runs the opposite holds.
        torch.amax(y, dim=3, out=dest.permute(2, 1, 0))
    else:
        dest.copy_(y.amax(dim=3).permute(2, 1, 0))
    return dest


def own_class_influence(z: torch.Tensor, weight: torch.Tensor, groups: torch.Tensor,
                        channels: int) -> torch.Tensor:
    """Each channel's total contribution to the image's own class's logit through the
    classifier, (N, C): the only logit in that class's graph. For a pooled head
    (``in_features == C``) that is ``W[g, k] * z[k]``; for a flattened head the matching slice
    of the weights, summed over the channel's positions (a logit is a sum, so there is no
    spatial max to take). Every logit's, (N, classes, C), counted per class, grew with the
    square of the classes: 4 GB of counts at 1000 classes and 512 channels."""
    n = z.shape[0]
    positions = weight.shape[1] // channels
    return torch.einsum("nks,nks->nk", z.reshape(n, channels, positions),
                        weight[groups].reshape(n, channels, positions))


def candidates(term: Term, channels: int) -> int:
    """How many inputs of a term can be ranked per output (identity and depthwise: only its
    own channel)."""
    return 1 if term.weight is None or term.depthwise else channels


def hop_top_inputs(hop: Hop, store: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    """(N, out, k) indices of each output's ``k`` most influential inputs, over all the hop's
    terms (input axis = the terms' channels concatenated in ``hop.terms`` order).

    Each term is ranked on its own and the short lists merged, which equals ranking the
    concatenation without building it. An identity shortcut offers output ``o`` one candidate:
    input ``o`` itself, worth its spatial max.
    """
    values, indices, offset = [], [], 0
    for term in hop.terms:
        x = store[term.tap.key]
        n, c = x.shape[:2]
        if term.weight is None:
            v = x.amax(dim=(2, 3)).unsqueeze(2)  # (N, out, 1)
            i = torch.arange(c, device=x.device).view(1, c, 1).expand(n, c, 1)
        elif term.depthwise:  # output o's only input is o: its contribution's spatial max
            y = F.conv2d(x, term.weight.to(x.dtype), stride=term.stride, padding=term.padding,
                         dilation=term.dilation, groups=c)
            v = y.amax(dim=(2, 3)).unsqueeze(2)
            i = torch.arange(c, device=x.device).view(1, c, 1).expand(n, c, 1)
        else:
            v, i = top_influences(x, term.weight.to(x.dtype), min(k, c), term.stride,
                                  term.padding, term.dilation)  # (N, out, k)
        values.append(v)
        indices.append(i + offset)
        offset += c
    if len(values) == 1:
        return indices[0][:, :, :k]
    best = torch.cat(values, dim=2).topk(k, dim=2).indices
    return torch.cat(indices, dim=2).gather(2, best)


def count_top_inputs(top: torch.Tensor, groups: torch.Tensor, c_in: int,
                     n_groups: int) -> torch.Tensor:
    """(groups, out, in) counts of how often each input was among an output's top inputs,
    from ``top`` (N, out, k) input indices."""
    n, c_out, _ = top.shape
    outs = torch.arange(c_out, device=top.device).view(1, c_out, 1)
    flat = (groups.view(n, 1, 1) * c_out + outs) * c_in + top
    return torch.bincount(flat.reshape(-1), minlength=n_groups * c_out * c_in).view(
        n_groups, c_out, c_in)


def channel_max(a: torch.Tensor) -> torch.Tensor:
    """Per image and channel, the spatial maximum (N, C)."""
    return a.amax(dim=tuple(range(2, a.dim()))) if a.dim() > 2 else a


def top_share_mask(maxima: torch.Tensor, top_share: float) -> torch.Tensor:
    """(N, C) bool: the fewest top channels whose share of the (clamped) max mass reaches
    ``top_share``; an image whose channels are all <= 0 carries no mass and marks none."""
    m = maxima.clamp(min=0).double()
    total = m.sum(dim=1, keepdim=True)
    share = m / total.clamp(min=torch.finfo(m.dtype).tiny)
    sorted_share, order = share.sort(dim=1, descending=True, stable=True)  # ties: lower index
    before = sorted_share.cumsum(dim=1) - sorted_share
    chosen = (before < top_share) & (total > 0)
    return torch.zeros_like(chosen).scatter(1, order, chosen)


@contextlib.contextmanager
def captured(model: nn.Module, taps: tuple[Tap, ...]) -> Iterator[dict[str, torch.Tensor]]:
    """Hooks that copy each tap's tensor into the yielded dict; removed on exit."""
    modules = dict(model.named_modules())
    store: dict[str, torch.Tensor] = {}

    def keep(key: str, t: torch.Tensor, channels_last: bool) -> None:
        if key in store:
            raise RuntimeError(f"layers: module {key.split('|')[0]!r} ran more than once in one "
                               f"forward pass; Summit needs each tapped module to run once")
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"layers: expected module {key.split('|')[0]!r} to see a tensor, "
                             f"got {type(t).__name__}")
        # A copy: later in-place ops (ReLU(inplace=True), out += identity) would change it.
        store[key] = (t.detach().permute(0, 3, 1, 2) if channels_last else t.detach()).clone()

    def pre(tap: Tap):
        return lambda _m, args: keep(tap.key, args[0], tap.channels_last)

    def post(tap: Tap):
        return lambda _m, _args, out: keep(tap.key, out, tap.channels_last)

    handles = []
    try:
        for tap in taps:
            module = modules[tap.module]
            handles.append(module.register_forward_pre_hook(pre(tap)) if tap.side == "in"
                           else module.register_forward_hook(post(tap)))
        yield store
    finally:
        for h in handles:
            h.remove()


def check_shapes(plan: Plan, store: dict[str, torch.Tensor], logits: torch.Tensor) -> None:
    """The channel correspondence the plan assumes, checked on the real tensors."""
    sizes = {g.name: g.channels for g in plan.layers}
    for g in plan.layers:
        got = store[g.tap.key].shape
        if len(got) != 4 or got[1] != g.channels:
            raise ValueError(f"layers: expected {g.name!r} to give (N, {g.channels}, H, W), got "
                             f"{tuple(got)}")
    for hop in plan.hops:
        for term in hop.terms:
            got = store[term.tap.key].shape
            if len(got) != 4 or got[1] != sizes[term.source]:
                raise ValueError(f"layers: expected the input of {hop.target!r} to have "
                                 f"{sizes[term.source]} channels like {term.source!r}, got "
                                 f"{tuple(got)}")
    z = store[plan.head.tap.key]
    if z.dim() != 2 or z.shape[1] != plan.head.weight.shape[1]:
        raise ValueError(f"layers: expected the classifier {plan.head.name!r} to get (N, "
                         f"{plan.head.weight.shape[1]}), got {tuple(z.shape)}")
    if logits.dim() != 2 or logits.shape[1] != plan.head.weight.shape[0]:
        raise ValueError(f"model: expected logits (N, {plan.head.weight.shape[0]}) from "
                         f"{plan.head.name!r}, got {tuple(logits.shape)}")
