"""The generator protocol DeepVID samples neighbours from, and the trivial pixel-space generator.

DeepVID only needs two things from a generative model: map an image to its latent mean, and map
latent codes back to images. Anything with these two methods works (captum's ``LimeBase`` takes
its parts the same way), so a user can bring their own VAE, GAN inverter or diffusion encoder.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Generator(Protocol):
    """``encode(x)`` gives the latent mean of images ``x`` (N, C, H, W) -> (N, L);
    ``decode(z)`` maps latents (N, L) back to images (N, C, H, W) in the model's input space."""

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...


class PixelGenerator:
    """Identity "generator": the latent *is* the image, so neighbours are independent pixel noise.

    This is LIME-style perturbation. It is useful as a baseline and in tests (a teacher that only
    looks at one region must get a student whose weight mass sits in that region), but its
    neighbours are not semantically meaningful: prefer a fitted :class:`~deepvid_plugin.explain.VAE`.

    Example::

        >>> import torch
        >>> from deepvid_plugin.explain import PixelGenerator
        >>> g = PixelGenerator((1, 8, 8))
        >>> g.decode(g.encode(torch.zeros(2, 1, 8, 8))).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, shape: tuple[int, int, int]):
        if len(shape) != 3 or any(int(s) <= 0 for s in shape):
            raise ValueError(f"shape: expected (C, H, W) with positive sizes, got {shape!r}")
        self.shape = tuple(int(s) for s in shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(z.shape[0], *self.shape)
