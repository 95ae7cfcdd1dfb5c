"""DeepVID's neighbourhood over regions: the instance with some of its regions switched off.

Each neighbour keeps every region of the instance (superpixels or patches, from
:mod:`~deepvid_plugin.methods.deepvid.features`) with probability ``keep`` and sets the others to
a baseline; the student reads the on/off mask, one number per region. Switching whole regions off
is what moves a real model (independent pixel noise of any size leaves its prediction unchanged on
natural images; see :class:`~deepvid_plugin.explain.DeepVID` for the measurements), so the
teacher's labels vary over the neighbourhood and the student learns which regions the model uses.

Baselines (what a switched-off region becomes, :data:`BASELINES`):

- ``"zero"``: 0 in the model's input units: the dataset's mean colour for normalised inputs
  (ImageNet-style), black for images in [0, 1]; the same baseline as the deletion/insertion
  evidence, so the student models exactly the intervention the evidence measures;
- ``"mean"``: the instance's own mean colour;
- ``"blur"``: the instance blurred at the scale of a region (keeps its layout, removes detail);
- ``"reconstruction"``: the generator's reconstruction of the instance.

With ``neighbourhood="vae+masks"`` the regions that stay on also carry the generator's decoded
variation ``decode(z + r*eps) - decode(z)`` (its semantic variation, kept at :data:`VARIATION_SIDE`
pixels on the longer side and upsampled, so a 224-px neighbourhood stays small in memory).

Neighbours are never all materialised: :class:`Regions` keeps an instance's masks (and
variation) and :meth:`Regions.images` composes any rows on demand, chunk by chunk, so the teacher
pass at 224 px needs memory for one chunk, not for 512 images. Row 0 is the instance itself (every
region on, no variation). Masks and latent noise are drawn from per-instance streams seeded by
``(seed, instance id)``, so an instance gets the same neighbours in any batch and at every epoch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from deepvid_plugin.core.seeds import instance_seed
from deepvid_plugin.methods.deepvid.features import segments_for
from deepvid_plugin.methods.deepvid.neighbours import latent_noise

BASELINES = ("zero", "mean", "blur", "reconstruction")
#: the generator's variation is kept at most this many pixels on the longer side.
VARIATION_SIDE = 64


@dataclasses.dataclass(frozen=True, eq=False)
class Regions:
    """One instance's fixed neighbourhood over regions (see the module docstring)."""

    image: torch.Tensor  # (C, H, W) float32, the instance
    segments: torch.Tensor  # (H, W) int64 region index 0..F-1
    baseline: torch.Tensor  # (C, H, W) float32
    masks: torch.Tensor  # (M, F) bool, row 0 all on
    variation: torch.Tensor | None  # (M, C, h, w) float16, row 0 zero; None without generator

    @property
    def n_features(self) -> int:
        return int(self.masks.shape[1])

    @property
    def nbytes(self) -> int:
        tensors = [self.image, self.segments, self.baseline, self.masks]
        tensors += [] if self.variation is None else [self.variation]
        return sum(t.element_size() * t.numel() for t in tensors)

    def images(self, rows: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """(R, C, H, W) float32 neighbours ``rows``, composed now."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        on = self.masks[rows][:, self.segments].unsqueeze(1)  # (R, 1, H, W)
        kept = self.image.unsqueeze(0)
        if self.variation is not None:
            v = self.variation[rows].float()
            if v.shape[-2:] != self.image.shape[-2:]:
                v = F.interpolate(v, size=self.image.shape[-2:], mode="bilinear",
                                  align_corners=False)
            kept = kept + v
        return torch.where(on, kept, self.baseline.unsqueeze(0))


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (C, H, W) with reflection at the borders, separable."""
    radius = max(1, min(int(math.ceil(3 * sigma)), min(x.shape[-2:]) - 1))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[0]
    y = F.pad(x.unsqueeze(0), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


def baseline_of(x: torch.Tensor, kind: str, n_features: int,
                reconstruction: torch.Tensor | None = None) -> torch.Tensor:
    """What switched-off regions of the (C, H, W) instance ``x`` become."""
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean((1, 2), keepdim=True).expand_as(x).clone()
    if kind == "blur":
        # at the scale of a region: its layout stays, its detail goes
        return _blur(x, max(1.0, 0.5 * math.sqrt(x.shape[1] * x.shape[2] / n_features)))
    if kind == "reconstruction":
        if reconstruction is None:
            raise ValueError("baseline: 'reconstruction' needs a generator, got generator=None")
        return reconstruction
    raise ValueError(f"baseline: expected one of {list(BASELINES)}, got {kind!r}")


def sample_regions(x: torch.Tensor, ids: Sequence[str], n: int, seed: int, *, features: str,
                   n_features: int, baseline: str, keep: float, generator: object = None,
                   radius: torch.Tensor | None = None, batch_size: int = 64) -> list[Regions]:
    """The fixed region neighbourhoods of the K instances ``x`` (K, C, H, W), on the CPU.

    ``generator`` (with ``radius``) adds its decoded variation to the regions that stay on;
    None means masks only. The generator runs under no_grad; the caller owns eval mode and RNG
    isolation (nothing here touches the global RNG).
    """
    out = []
    recon_all = mu_all = None
    if generator is not None:
        with torch.no_grad():
            dev = _device(generator)
            mu_all = generator.encode(x.to(dev))
            if mu_all.dim() != 2 or mu_all.shape[0] != x.shape[0]:
                raise ValueError(f"generator.encode: expected latent means of shape "
                                 f"({x.shape[0]}, L), got {tuple(mu_all.shape)}")
            recon_all = generator.decode(mu_all).float().cpu()
            if tuple(recon_all.shape[1:]) != tuple(x.shape[1:]):
                raise ValueError(f"generator.decode: expected images of shape "
                                 f"{tuple(x.shape[1:])}, got {tuple(recon_all.shape[1:])}")
    for k, iid in enumerate(ids):
        xi = x[k].float().cpu()
        segments = segments_for(xi, features, n_features)
        f = int(segments.max()) + 1
        gen = torch.Generator().manual_seed(instance_seed(seed, "\0regions" + iid))
        masks = torch.rand(n, f, generator=gen) < keep
        masks[0] = True
        recon = None if recon_all is None else recon_all[k]
        base = baseline_of(xi, baseline, f, recon)
        variation = None
        if generator is not None and radius is not None and bool((radius > 0).any()):
            variation = _variation(generator, mu_all[k], recon, n, seed, iid, radius, batch_size)
        out.append(Regions(xi, segments, base.float(), masks, variation))
    return out


def _variation(generator, mu, recon, n, seed, iid, radius, batch_size) -> torch.Tensor:
    """(n, C, h, w) float16 decoded variation ``decode(mu + r*eps) - decode(mu)``, row 0 zero,
    area-downsampled to at most VARIATION_SIDE pixels on the longer side."""
    eps = latent_noise(mu.shape[0], n, seed, iid).to(mu.device, mu.dtype)
    z = mu.unsqueeze(0) + radius.to(mu.device, mu.dtype) * eps
    h, w = recon.shape[-2:]
    scale = min(1.0, VARIATION_SIDE / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    parts = []
    with torch.no_grad():
        for zb in z.split(batch_size):
            v = generator.decode(zb).float().cpu() - recon.unsqueeze(0)
            parts.append((v if size == (h, w) else F.interpolate(v, size=size, mode="area")).half())
    out = torch.cat(parts)
    out[0] = 0.0
    return out


def _device(module: object) -> torch.device:
    params = getattr(module, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


__all__ = ["BASELINES", "VARIATION_SIDE", "Regions", "baseline_of", "sample_regions"]
