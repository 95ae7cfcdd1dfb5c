"""A small convolutional VAE: DeepVID's default neighbour generator.

It works for 1 or 3 channels and images of any size from 8x8: the encoder halves the resolution
until it is at most 4x4, the decoder doubles it back and crops to the exact size. Images larger
than 64 pixels on a side are modelled at a low resolution (:data:`LOW_RES_SIDE` on the longer
side, or ``resolution=``): they are area-downsampled before encoding and decoded images are
upsampled (bilinear) back to full size. A small VAE reconstructs little of a photograph's detail
at any resolution; what DeepVID uses from it at large sizes is its decoded *variation*
(``decode(z + r*eps) - decode(z)``), added to the full-resolution instance, and a 3x224x224 VAE at
32x32 trains in minutes on a CPU. Inputs are standardised per channel with statistics taken in
:meth:`VAE.fit`, so the VAE works in whatever input space the user's classifier expects (raw 0..16
digits, ImageNet-normalised tensors, ...).

Saving stores ``config`` + ``state_dict`` only (loaded with ``weights_only=True``): no pickled
classes, so a saved VAE loads in any later version and loading runs no code.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deepvid_plugin.core import checks

_FORMAT = "deepvid-vae"
_FORMAT_VERSION = 1
#: the largest side modelled at full resolution; larger images are modelled at LOW_RES_SIDE.
MAX_SIDE = 64
LOW_RES_SIDE = 32


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    channels: int
    height: int
    width: int
    latent_dim: int = 16
    width_mult: int = 32
    resolution: int | None = None  # longer side modelled; None: full size up to 64, else 32

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels: expected 1 or 3, got {self.channels}")
        for name in ("height", "width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 8:
                raise ValueError(f"{name}: expected an image size of at least 8 pixels, got {v!r}")
        checks.integer("latent_dim", self.latent_dim, 1)
        checks.integer("width_mult", self.width_mult, 1)
        r = self.resolution
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, np.integer))
                              or not 8 <= r <= MAX_SIDE):
            raise ValueError(f"resolution: expected None or a side between 8 and {MAX_SIDE} "
                             f"pixels, got {r!r}")

    @property
    def model_size(self) -> tuple[int, int]:
        """(height, width) the VAE models: the image's own up to 64 pixels, else scaled down."""
        longest = max(self.height, self.width)
        side = self.resolution if self.resolution is not None else (
            longest if longest <= MAX_SIDE else LOW_RES_SIDE)
        if side >= longest:
            return self.height, self.width
        scale = side / longest
        return max(8, round(self.height * scale)), max(8, round(self.width * scale))

    @property
    def n_down(self) -> int:
        return max(1, math.ceil(math.log2(max(self.model_size) / 4)))


@dataclasses.dataclass(frozen=True)
class FitReport:
    epochs: int
    reconstruction_mse: float  # per value, in the standardised input space, at model_size
    kl: float  # per instance, nats

    def __str__(self) -> str:
        return (f"VAE fitted for {self.epochs} epochs: reconstruction MSE {self.reconstruction_mse:.4f} "
                f"(standardised pixels; 1.0 = predicting the mean), KL {self.kl:.2f} nats")


class VAE(nn.Module):
    """Convolutional VAE implementing the :class:`~deepvid_plugin.methods.deepvid.generator.Generator`
    protocol. Build it with ``VAE(channels, height, width)`` or :meth:`VAE.for_data`.

    Example::

        >>> import torch
        >>> from deepvid_plugin.explain import VAE
        >>> x = torch.rand(32, 1, 8, 8)
        >>> vae = VAE.for_data(x)
        >>> report = vae.fit(x, epochs=1, progress=False)
        >>> vae.encode(x[:2]).shape
        torch.Size([2, 16])
    """

    def __init__(self, channels: int, height: int, width: int, latent_dim: int = 16,
                 width_mult: int = 32, resolution: int | None = None):
        super().__init__()
        self.config = VAEConfig(channels, height, width, latent_dim, width_mult, resolution)
        height, width = self.config.model_size
        c, n = self.config.width_mult, self.config.n_down
        enc: list[nn.Module] = []
        ch_in = channels
        for i in range(n):
            ch_out = c * min(2 ** i, 4)
            enc += [nn.Conv2d(ch_in, ch_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            ch_in = ch_out
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self._h0, self._w0 = height, width
        for _ in range(n):
            self._h0, self._w0 = math.ceil(self._h0 / 2), math.ceil(self._w0 / 2)
        flat = ch_in * self._h0 * self._w0
        self.to_mu = nn.Linear(flat, latent_dim)
        self.to_logvar = nn.Linear(flat, latent_dim)
        self.from_z = nn.Linear(latent_dim, flat)
        self._ch0 = ch_in
        dec: list[nn.Module] = []
        for i in reversed(range(n)):
            ch_out = c * min(2 ** max(i - 1, 0), 4) if i > 0 else c
            dec += [nn.LeakyReLU(0.2), nn.ConvTranspose2d(ch_in, ch_out, 4, stride=2, padding=1)]
            ch_in = ch_out
        self.decoder = nn.Sequential(*dec, nn.LeakyReLU(0.2), nn.Conv2d(ch_in, channels, 3, padding=1))
        # Standardisation statistics, set by fit(); buffers so they travel with state_dict.
        self.register_buffer("data_mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("data_std", torch.ones(1, channels, 1, 1))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # ---- Generator protocol -----------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent means of images ``x`` (N, C, H, W)."""
        return self._encode(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W), in the same space as the data given to :meth:`fit` (upsampled
        to the full size when the VAE models a lower resolution)."""
        out = self._decode_standard(z)
        if out.shape[-2:] != (self.config.height, self.config.width):
            out = F.interpolate(out, size=(self.config.height, self.config.width),
                                mode="bilinear", align_corners=False)
        return (out * self.data_std + self.data_mean).contiguous()

    # ---- internals ---------------------------------------------------------------------------
    def _decode_standard(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised images at the modelled resolution."""
        h = self.from_z(z).view(-1, self._ch0, self._h0, self._w0)
        # channels-last: the transposed convolutions run ~2x faster on CPU (measured at 3x32x32,
        # 512 latents: 0.98 s -> 0.49 s, one thread; outputs within 4e-8), and decoding is
        # most of DeepVID's first call
        h = h.contiguous(memory_format=torch.channels_last)
        mh, mw = self.config.model_size
        return self.decoder(h)[:, :, :mh, :mw]

    def _standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised ``x`` at the modelled resolution (area-downsampled when lower)."""
        x = (x - self.data_mean) / self.data_std
        size = self.config.model_size
        return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="area")

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(self._standardise(x))
        return self.to_mu(h), self.to_logvar(h).clamp(-10, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self._encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar

    # ---- training ----------------------------------------------------------------------------
    @classmethod
    def for_data(cls, data: torch.Tensor, **kwargs: Any) -> VAE:
        """A VAE shaped for ``data`` (N, C, H, W): any size from 8x8; above 64 pixels on a side
        it models a lower resolution (see the module docstring).

        Example::

            >>> vae = VAE.for_data(torch.zeros(2, 3, 224, 224))
            >>> vae.config.model_size
            (32, 32)
        """
        if not isinstance(data, torch.Tensor) or data.dim() != 4:
            raise ValueError(f"data: expected a (N, C, H, W) tensor, got "
                             f"{getattr(data, 'shape', type(data).__name__)}")
        return cls(data.shape[1], data.shape[2], data.shape[3], **kwargs)

    def fit(self, data: torch.Tensor | Iterable, epochs: int = 30, batch_size: int = 128,
            lr: float = 2e-3, beta: float = 1.0, seed: int = 0, progress: bool = True) -> FitReport:
        """Train on ``data``: a (N, C, H, W) tensor, or a DataLoader/iterable of tensors or of
        ``(x, y, ...)`` tuples. Shows a progress bar and returns the final reconstruction error.

        ``beta`` (> 0) weights the KL term; lower values give sharper reconstructions but a less
        regular latent space (and so less meaningful neighbours). ``epochs`` and ``batch_size``
        are ints >= 1, ``lr`` a number > 0 and ``seed`` an int >= 0.
        """
        from tqdm.auto import tqdm

        # Checked before any work: a bad value would otherwise surface deep inside the optimiser
        # (lr), the scheduler (epochs) or only as a useless VAE (beta <= 0 leaves the latent space
        # unregularised, so DeepVID's radius-r neighbours would not be variations of the image).
        epochs = checks.integer("epochs", epochs, 1)
        batch_size = checks.integer("batch_size", batch_size, 1)
        lr = checks.positive("lr", lr)
        beta = checks.positive("beta", beta)
        seed = checks.integer("seed", seed, 0)
        batches = _as_batches(data, batch_size, seed)
        device = self.data_mean.device
        first = next(iter(batches), None)
        if first is None:
            raise ValueError("data: expected at least one image, got an empty dataset")
        self._check_images("data", first)
        self._set_stats(batches, device)
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        self.train()
        mse = kl = float("nan")
        bar = tqdm(range(epochs), desc="fitting VAE", unit="epoch", disable=not progress)
        for _ in bar:
            tot_mse = tot_kl = n = 0.0
            for xb in batches:
                xb = xb.to(device, torch.float32)
                mu, logvar = self._encode(xb)
                eps = torch.randn(mu.shape, generator=gen).to(device)
                recon = self._decode_standard(mu + eps * torch.exp(0.5 * logvar))
                # compared at the modelled resolution: a low-resolution VAE is scored on what
                # it models
                rec = F.mse_loss(recon, self._standardise(xb), reduction="none").flatten(1)
                n_values = rec.shape[1]
                rec = rec.sum(1)
                kld = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
                loss = (rec + beta * kld).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot_mse += rec.sum().item() / n_values
                tot_kl += kld.sum().item()
                n += xb.shape[0]
            sched.step()
            mse, kl = tot_mse / n, tot_kl / n
            bar.set_postfix(recon_mse=f"{mse:.4f}", kl=f"{kl:.1f}")
        self.eval()
        self.fitted.fill_(True)
        self.report_ = FitReport(epochs, mse, kl)
        return self.report_

    def _check_images(self, name: str, x: torch.Tensor) -> None:
        want = (self.config.channels, self.config.height, self.config.width)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"{name}: expected images of shape (N, {want[0]}, {want[1]}, {want[2]}), "
                             f"got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")

    def _set_stats(self, batches: Iterable[torch.Tensor], device: torch.device) -> None:
        s = s2 = n = 0.0
        for xb in batches:
            xb = xb.to(device, torch.float64)
            s = s + xb.sum(dim=(0, 2, 3))
            s2 = s2 + xb.pow(2).sum(dim=(0, 2, 3))
            n += xb.shape[0] * xb.shape[2] * xb.shape[3]
        mean = s / n
        std = (s2 / n - mean.pow(2)).clamp_min(1e-12).sqrt()
        self.data_mean.copy_(mean.view(1, -1, 1, 1).float())
        self.data_std.copy_(std.view(1, -1, 1, 1).float().clamp_min(1e-3))

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write config + state_dict (tensors and plain values only, no pickled classes)."""
        torch.save({"format": _FORMAT, "version": _FORMAT_VERSION,
                    "config": dataclasses.asdict(self.config), "state_dict": self.state_dict()},
                   path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> VAE:
        blob = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise ValueError(f"path: expected a VAE saved by VAE.save(), got {os.fspath(path)!r}")
        if int(blob.get("version", 0)) > _FORMAT_VERSION:
            raise ValueError(f"path: VAE file format version {blob['version']} is newer than this "
                             f"deepvid-plugin reads ({_FORMAT_VERSION}); upgrade deepvid-plugin")
        vae = cls(**blob["config"])
        vae.load_state_dict(blob["state_dict"])
        vae.eval()
        return vae


def _as_batches(data: Any, batch_size: int, seed: int) -> list[torch.Tensor]:
    """Materialise ``data`` as a list of image batches (small datasets: DeepVID's VAE is fitted
    once, on at most a few tens of thousands of images)."""
    if isinstance(data, torch.Tensor):
        perm = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(seed))
        return list(data[perm].split(batch_size))
    if isinstance(data, Iterable):
        out = []
        for item in data:
            x = item[0] if isinstance(item, (tuple, list)) else item
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"data: expected batches of tensors or (x, y) tuples, got "
                                f"{type(x).__name__}")
            out.append(x)
        return out
    raise TypeError(f"data: expected a tensor or a DataLoader, got {type(data).__name__}")
