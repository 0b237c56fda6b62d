"""Learned decoder for pooled-pixel latents: bilinear upsampling plus a small convolutional correction.

The LibraWorld backbone's latents are average-pooled frames (a fixed encoder). Bilinear upsampling
decodes them exactly in the mean but blurs every edge by the pooling factor. This decoder keeps the
bilinear image as its base and adds a correction predicted from the latent frame by a few 3x3 conv
blocks at latent resolution and a pixel shuffle (so its cost stays at latent resolution). The head
starts at zero, so an untrained decoder *is* bilinear upsampling, and training can only move away from
it where that lowers the reconstruction error. Trained by ``libragen train decoder`` on real frames.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from libragen.core.config import StrictModel


class UpsamplerConfig(StrictModel):
    """Width and depth of the correction network (the factor is the backbone's ``latent_downsample``)."""

    width: int = Field(64, ge=4)
    blocks: int = Field(3, ge=1)


class _ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))


class LatentUpsampler(nn.Module):
    """Latent frames (N, 3, h, w) -> frames (N, 3, h*f, w*f): bilinear base + learned correction."""

    def __init__(self, factor: int, config: UpsamplerConfig | None = None) -> None:
        super().__init__()
        if factor < 2:
            raise ValueError("a learned decoder needs latents pooled by a factor of at least 2")
        config = config or UpsamplerConfig()
        self.factor = factor
        self.stem = nn.Conv2d(3, config.width, 3, padding=1)
        self.blocks = nn.Sequential(*[_ResidualBlock(config.width) for _ in range(config.blocks)])
        self.head = nn.Conv2d(config.width, 3 * factor * factor, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.shuffle = nn.PixelShuffle(factor)

    def bilinear(self, latents: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(latents, scale_factor=self.factor, mode="bilinear", align_corners=False)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        correction = self.shuffle(self.head(nn.functional.silu(self.blocks(self.stem(latents)))))
        return self.bilinear(latents) + correction
