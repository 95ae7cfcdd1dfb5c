"""Neighbours of an instance: ``decode(mu + radius * eps)``, plus optional pixel jitter.

The noise of each instance is drawn from its own RNG, seeded from ``(seed, instance_id)``, so
an instance always gets the same neighbours however many other instances are explained with it
and in whatever order. That is what makes explanations comparable across epochs: a change in the
explanation is a change in the model, not in the sample.

Pixel jitter (independent Gaussian noise of std ``jitter`` on every pixel of every decoded
neighbour except row 0) is drawn from a second per-instance stream, so turning it on or off never
changes the latent noise. Why it exists: decoded neighbours vary only inside the generator's
low-dimensional latent subspace, so a linear student fitted on them cannot tell apart pixels that
co-vary there; the jitter makes every pixel vary independently by a little (see
:class:`~deepvid_plugin.explain.DeepVID` for the measurements).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from deepvid_plugin.core.seeds import instance_seed
from deepvid_plugin.methods.deepvid.generator import Generator


def latent_noise(latent_dim: int, n: int, seed: int, instance_id: str) -> torch.Tensor:
    """(n, latent_dim) standard normal noise for one instance; row 0 is zero (the reconstruction)."""
    gen = torch.Generator(device="cpu").manual_seed(instance_seed(seed, instance_id))
    eps = torch.randn(n, latent_dim, generator=gen)
    eps[0] = 0.0
    return eps


def pixel_noise(shape: Sequence[int], n: int, seed: int, instance_id: str) -> torch.Tensor:
    """(n, *shape) standard normal pixel noise for one instance; row 0 is zero.

    Its own stream (the id is prefixed with ``"\\0jitter"``), independent of :func:`latent_noise`.
    """
    gen = torch.Generator(device="cpu").manual_seed(instance_seed(seed, "\0jitter" + instance_id))
    noise = torch.randn(n, *shape, generator=gen)
    noise[0] = 0.0
    return noise


def sample_neighbours(generator: Generator, x: torch.Tensor, ids: Sequence[str], n: int,
                      radius: float | torch.Tensor, seed: int,
                      batch_size: int = 1024, jitter: float = 0.0) -> torch.Tensor:
    """(K, n, C, H, W) neighbours of the K images ``x``; ``[:, 0]`` reconstructs each instance.

    ``radius`` is a scalar or a (latent_dim,) tensor (one radius per latent dimension).
    ``jitter`` is the std of the pixel noise added to rows ``1..n-1``, in the images' own units
    (0 = pure generator neighbours). Runs the generator under no_grad; the caller owns eval mode
    and RNG isolation.
    """
    # One instance at a time: an encoder's output can differ in the last bits with the size of
    # its batch, and the neighbours of an instance must not depend on what else is explained.
    mu = torch.cat([generator.encode(x[k : k + 1]) for k in range(x.shape[0])])
    if mu.dim() != 2 or mu.shape[0] != x.shape[0]:
        raise ValueError(f"generator.encode: expected latent means of shape ({x.shape[0]}, L), "
                         f"got {tuple(mu.shape)}")
    latent_dim = mu.shape[1]
    r = torch.as_tensor(radius, dtype=mu.dtype, device=mu.device)
    if r.dim() not in (0, 1) or (r.dim() == 1 and r.shape[0] != latent_dim):
        raise ValueError(f"radius: expected a scalar or {latent_dim} values (one per latent "
                         f"dimension), got shape {tuple(r.shape)}")
    out = []
    for k, iid in enumerate(ids):
        eps = latent_noise(latent_dim, n, seed, iid).to(mu.device, mu.dtype)
        z = mu[k : k + 1] + r * eps
        decoded = torch.cat([generator.decode(zb) for zb in z.split(batch_size)])
        if tuple(decoded.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(f"generator.decode: expected images of shape {tuple(x.shape[1:])}, "
                             f"got {tuple(decoded.shape[1:])}")
        if jitter > 0:
            noise = pixel_noise(decoded.shape[1:], n, seed, iid)
            decoded = decoded + float(jitter) * noise.to(decoded.device, decoded.dtype)
        out.append(decoded)
    return torch.stack(out)
