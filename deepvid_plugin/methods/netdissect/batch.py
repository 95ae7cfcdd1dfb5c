"""One batch of one layer's activations tallied against the probe's labels (Network Dissection's
hot loop): the strongest images per unit, and the intersections and unions of each unit's
thresholded, upsampled maps with every label, counted only where a map can reach its unit's
threshold (bit-identical to tallying every map, and much cheaper)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from deepvid_plugin.methods.netdissect.tally import merge_images

_CHUNK_ELEMENTS = 1 << 23  # upsampled mask elements held at once (32 MB as float32)


class BatchTally:
    """Adds batches to a layer's running tallies; keeps the batch's label counts between layers
    (the same probe rows are tallied once per layer)."""

    def __init__(self, top_images: int):
        self.top_images = top_images
        self._scratch: dict[str, torch.Tensor] = {}

    def add(self, a: torch.Tensor, thr: torch.Tensor, rows: torch.Tensor,
                     lab: dict[str, torch.Tensor], s: int, t: dict) -> None:
        """Add one batch of one layer to the running tallies ``t`` (in place)."""
        b, u = a.shape[:2]
        n_lab = t["inter"].shape[1]
        peak = a.amax((2, 3))  # (b, U): each map's maximum, at the layer's resolution
        # strongest images per unit
        t["tv"], t["ti"] = merge_images(t["tv"], t["ti"], peak.T,
                                        rows[None, :].expand(u, b), self.top_images)
        # Exact integer counting in float32 (every partial sum stays below 2**24), autocast off.
        with torch.autocast(a.device.type, enabled=False):
            if a.shape[2:] == (1, 1):
                # a 1x1 map upsamples to a constant: the mask is all or nothing per image, so
                # the tallies follow from per-image label sizes without building any mask
                on = (a[:, :, 0, 0] > thr).double()  # (b, U)
                t["units"] += (on.sum(0) * s * s).round().long()
                t["ucat"] += (on.T @ lab["gate"][rows] * (s * s)).round().long()
                t["inter"] += (on.T @ lab["sizes"][rows]).round().long()
                return
            if a.shape[2:] != (s, s) and _sparse_upsample(a, u):
                # Only maps whose maximum can reach the threshold get upsampled; with quantile
                # 0.005 that is a few percent of them.
                self._live(a, thr, _may_exceed(peak, thr), rows, lab, s, t)
                return
            per = max(1, min(b, _CHUNK_ELEMENTS // (u * s * s), (1 << 24) // (s * s) - 1))
            thr = thr[None, :, None, None]
            for c0 in range(0, b, per):
                chunk, r = a[c0:c0 + per], rows[c0:c0 + per]
                n = len(r)
                if chunk.shape[2:] == (s, s):  # compare first: bools are cheap to transpose
                    mask = (chunk > thr).permute(0, 2, 3, 1).reshape(n * s * s, u).float()
                else:  # channels-last upsampling is fast, and lays the result out as
                    # (pixels, units): thresholded in place, the reshape is free
                    mask = F.interpolate(chunk.contiguous(memory_format=torch.channels_last),
                                         size=(s, s), mode="bilinear", align_corners=False)
                    mask = mask.gt_(thr).permute(0, 2, 3, 1).reshape(n * s * s, u)
                counts = mask.view(n, s * s, u).sum(1).double()  # (n, U), exact
                t["units"] += counts.sum(0).round().long()
                t["ucat"] += (counts.T @ lab["gate"][r]).round().long()
                # pixel labels: a sparse (labels, pixels) incidence matrix times the masks; its
                # cost scales with the labelled pixels, not with the number of labels. A label
                # repeated in two layers at one pixel counts twice, as in label_pixels (and
                # NetDissect-Lite).
                pix = lab["pixel"][r].permute(0, 2, 3, 1).reshape(n * s * s, -1)
                p, k = torch.nonzero(pix, as_tuple=True)
                incidence = torch.sparse_coo_tensor(
                    torch.stack([pix[p, k], p]), torch.ones(len(p), device=a.device),
                    (n_lab + 1, n * s * s), check_invariants=False)
                inter = torch.sparse.mm(incidence, mask)  # (labels + 1, U)
                t["inter"] += inter[1:].T.round().long()
                # image-level labels cover their whole image
                img = torch.zeros(n, n_lab + 1, device=a.device, dtype=torch.float64)
                img.scatter_(1, lab["image"][r], 1.0)
                t["inter"] += (counts.T @ img[:, 1:]).round().long()


    def _live(self, a: torch.Tensor, thr: torch.Tensor, live: torch.Tensor,
                    rows: torch.Tensor, lab: dict[str, torch.Tensor], s: int, t: dict) -> None:
        """The upsampled-map tallies from the ``live`` (b, U) maps alone: the others are below
        their unit's threshold at every pixel and add nothing. Each live mask meets only its
        own image's labels, so the intersections are, per image, its live masks times its
        (pixels, labels) label counts: no (pixels, units) mask is ever built."""
        b, u = a.shape[:2]
        n_lab = t["inter"].shape[1]
        counts = torch.zeros(b, u, dtype=torch.float64, device=a.device)  # mask pixels
        inter = torch.zeros(u, n_lab + 1, dtype=torch.float64, device=a.device)
        onehot = self._pixel_label_counts(rows, lab, n_lab, s)  # (b, s * s, labels + 1)
        for ni, ui, on in _upsampled_live(a, thr, live, s):  # on: (P, s * s) float 0/1
            counts[ni, ui] = on.sum(1, dtype=torch.float64)
            hist = on.new_empty(len(ni), n_lab + 1)
            images, sizes = torch.unique_consecutive(ni, return_counts=True)  # ni is sorted
            start = 0
            for img, size in zip(images.tolist(), sizes.tolist(), strict=True):
                torch.mm(on[start:start + size], onehot[img], out=hist[start:start + size])
                start += size
            inter.index_add_(0, ui, hist.double())  # exact: integers below 2**24
        t["units"] += counts.sum(0).round().long()
        t["ucat"] += (counts.T @ lab["gate"][rows]).round().long()
        # A label repeated in two layers at one pixel counts twice, as in label_pixels.
        t["inter"] += inter[:, 1:].round().long()
        img = torch.zeros(b, n_lab + 1, device=a.device, dtype=torch.float64)
        img.scatter_(1, lab["image"][rows], 1.0)  # image-level labels cover their whole image
        t["inter"] += (counts.T @ img[:, 1:]).round().long()

    def _pixel_label_counts(self, rows: torch.Tensor, lab: dict[str, torch.Tensor], n_lab: int,
                            s: int) -> torch.Tensor:
        """(b, s * s, labels + 1) float32: how many pixel-label layers give each label at each
        pixel of the images ``rows``; kept for the next layer of the same batch."""
        cached = self._scratch.get("label_rows")
        if (cached is not None and cached.device == rows.device and cached.shape == rows.shape
                and torch.equal(cached, rows)):
            return self._scratch["label_counts"]
        pix = lab["pixel"][rows].flatten(2).transpose(1, 2)  # (b, s * s, layers)
        out = torch.zeros(len(rows), s * s, n_lab + 1, device=rows.device)
        out.scatter_add_(2, pix, torch.ones(pix.shape, device=rows.device))
        self._scratch["label_rows"], self._scratch["label_counts"] = rows.clone(), out
        return out

# Lanes of the CPU's vectorised channels-last bilinear kernel: a channel's upsampled values are
# bit-identical wherever it sits only if every channel takes the vector path, i.e. the channel
# count is a multiple of the vector width (8 floats with AVX2, 16 with AVX-512); a multiple of
# 64 covers both, and is what ResNets and VGGs have.
_LANES = 64


def _sparse_upsample(a: torch.Tensor, units: int) -> bool:
    """Whether the live-maps-only upsampling reproduces the full one bit for bit (CPU, float32,
    a channel count the vector kernel takes whole)."""
    return a.device.type == "cpu" and a.dtype == torch.float32 and units % _LANES == 0


def _may_exceed(peak: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """(b, U) bool: maps that may exceed ``thr`` anywhere once upsampled.

    A bilinear sample is a convex combination of at most four inputs, so it cannot exceed the
    map's maximum except by rounding: a few float32 ulps, far below the 1e-5 relative margin
    used here. A map whose values are all <= 0 gives samples <= 0 exactly (non-negative weights
    times non-positive values), below any threshold >= 0.
    """
    thr = thr[None, :]
    below = (peak + peak.abs() * 1e-5 < thr) | ((peak <= 0) & (thr >= 0))
    return ~below


def _upsampled_live(a: torch.Tensor, thr: torch.Tensor, live: torch.Tensor, s: int):
    """Yield ``(images, units, masks)`` for the ``live`` (b, U) maps of ``a``, in (image, unit)
    order and in groups of about ``_CHUNK_ELEMENTS`` mask pixels: ``masks`` (P, s * s) float32
    0/1 = ``upsample(map) > thr[unit]``.

    The live maps are gathered as the channels of one channels-last (1, P, h, w) tensor, padded
    to a multiple of ``_LANES`` channels so each one takes the same vector path as in the full
    (b, U, h, w) upsampling: the values, and so the masks, are bit-identical."""
    ni, ui = torch.nonzero(live, as_tuple=True)
    step = max(_LANES, _CHUNK_ELEMENTS // (s * s) // _LANES * _LANES)
    h, w = a.shape[2:]
    for first in range(0, len(ni), step):
        n_, u_ = ni[first:first + step], ui[first:first + step]
        p = len(n_)
        maps = a.new_zeros(1, h, w, -(-p // _LANES) * _LANES)  # (1, h, w, P), channels last
        maps[0, :, :, :p] = a[n_, u_].permute(1, 2, 0)
        up = F.interpolate(maps.permute(0, 3, 1, 2), size=(s, s), mode="bilinear",
                           align_corners=False)  # (1, P, s, s), channels-last in memory
        on = (up[0, :p] > thr[u_, None, None]).reshape(p, s * s)
        yield n_, u_, on.to(a.dtype)
