"""Training the learned decoder of a pooled-pixel LibraWorld backbone (``libragen train decoder``).

The backbone's encoder is fixed (average pooling), so the decoder is plain supervised regression:
real frames are pooled, lightly noised (generated latents are never exact) and decoded, and the L1
error to the original frame is minimised. Only the decoder is trained; the transformer is untouched.
Frames of the last ``holdout_clips`` clips are kept apart and the result records PSNR of bilinear
upsampling and of the learned decoder on them. The backbone folder gets ``decoder.safetensors`` and its
``backbone.json`` switches to ``decoder: learned``; ``decoder.json`` records the settings and numbers.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from rich.console import Console

from libragen.core.config import StrictModel
from libragen.core.files import atomic_path
from libragen.core.progress import progress_bar
from libragen.models.libraworld import LibraWorldBackbone
from libragen.models.upsampler import LatentUpsampler, UpsamplerConfig
from libragen.train.vgfm import ClipBank


class DecoderTrainConfig(StrictModel):
    """Data and optimisation of a decoder run."""

    data: list[str] = Field(min_length=1)
    max_clips: int = Field(1000, ge=2)
    holdout_clips: int = Field(50, ge=1)
    steps: int = Field(600, ge=1)
    batch_frames: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    latent_noise: float = Field(0.02, ge=0)  # std of Gaussian noise added to the pooled input
    upsampler: UpsamplerConfig = UpsamplerConfig()
    seed: int = 0
    threads: int | None = Field(None, ge=1)


def psnr(decoded: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [-1, 1]."""
    mse = (decoded.clamp(-1, 1) - target).pow(2).mean().item()
    return float(10 * np.log10(4.0 / max(mse, 1e-12)))


def _frames(bank: ClipBank, clips: range) -> torch.Tensor:
    """All frames of ``clips`` as (N, 3, H, W) in [-1, 1]."""
    return bank.batch(torch.tensor(list(clips))).flatten(0, 1)


def train_decoder(
    model: str | os.PathLike[str], config: DecoderTrainConfig, console: Console | None = None
) -> dict[str, float]:
    """Train a learned decoder for the backbone saved in ``model`` and write it into that folder."""
    console = console or Console(stderr=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    folder = Path(model)
    backbone = LibraWorldBackbone.load(folder)
    factor = backbone.config.latent_downsample
    if factor < 2:
        raise ValueError(f"{folder}: latents are full-size pixels (latent_downsample 1); nothing to decode")
    bank = ClipBank.from_worlds(config.data, backbone.video_size, config.max_clips, console)
    clips = len(bank.captions)
    if clips <= config.holdout_clips:
        raise ValueError(f"{clips} clips: need more than holdout_clips={config.holdout_clips}")
    train_clips = range(clips - config.holdout_clips)
    held = _frames(bank, range(clips - config.holdout_clips, clips))
    held_latents = backbone.pool_frames(held)

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    decoder = LatentUpsampler(factor, config.upsampler)
    optimiser = torch.optim.AdamW(decoder.parameters(), lr=config.lr)
    frames_per_clip = bank.frames.shape[1]
    started = time.time()
    with progress_bar("train decoder", console) as progress:
        task = progress.add_task("", total=config.steps)
        for step in range(config.steps):
            lr = config.lr * 0.5 * (1 + np.cos(np.pi * step / config.steps))
            for group in optimiser.param_groups:
                group["lr"] = lr
            pick = torch.randint(len(train_clips) * frames_per_clip, (config.batch_frames,), generator=generator)
            clip, frame = pick // frames_per_clip, pick % frames_per_clip
            target = torch.from_numpy(bank.frames[clip.numpy(), frame.numpy()]).permute(0, 3, 1, 2).float() / 127.5 - 1
            latents = backbone.pool_frames(target)
            latents = latents + config.latent_noise * torch.randn(latents.shape, generator=generator)
            loss = (decoder(latents) - target).abs().mean()
            if not torch.isfinite(loss):
                raise RuntimeError(f"decoder training diverged at step {step} (loss {loss.item()})")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            progress.update(task, advance=1, description=f"L1 {loss.item():.4f}")
    decoder.eval()
    with torch.no_grad():
        result = {
            "psnr_bilinear_db": psnr(decoder.bilinear(held_latents), held),
            "psnr_learned_db": psnr(torch.cat([decoder(c) for c in held_latents.split(256)]), held),
            "heldout_frames": len(held),
            "seconds": time.time() - started,
        }
    backbone.config = backbone.config.model_copy(update={"decoder": "learned", "upsampler": config.upsampler})
    backbone.upsampler = decoder.requires_grad_(False)
    backbone.save_decoder(folder)
    backbone.save_meta(folder)
    record = {"command": " ".join(["libragen", *sys.argv[1:]]), "config": config.model_dump(mode="json"), **result}
    with atomic_path(folder / "decoder.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return result
