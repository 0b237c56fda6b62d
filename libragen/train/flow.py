"""Rectified-flow objective shared by every trainer: timestep sampling and the velocity loss.

Convention (same as diffusers' FlowMatchEulerDiscreteScheduler): ``x_t = (1 - t) * clean + t * noise``,
t in [0, 1] with 1 = pure noise, target velocity ``noise - clean``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from libragen.core.config import StrictModel
from libragen.models.backbone import Backbone, References, TextBatch, time_like


class TimestepConfig(StrictModel):
    """How training timesteps are drawn: logit-normal (SD3) or uniform, then shifted toward noise."""

    sampling: Literal["logit_normal", "uniform"] = "logit_normal"
    mean: float = 0.0
    std: float = Field(1.0, gt=0)
    shift: float = Field(1.0, gt=0)  # t' = s t / (1 + (s - 1) t); > 1 spends more steps at high noise
    # Diffusion Forcing: this share of the samples draws an independent t for each of the backbone's frame
    # groups (``Backbone.frame_groups``), so a clean-ish early frame must be continued by a noisy later one:
    # the prompt's motion words then decide the loss, where with one shared t the frames themselves show it.
    per_frame_probability: float = Field(0.0, ge=0, le=1)


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * t / (1 + (shift - 1) * t)


def sample_timesteps(n: int, config: TimestepConfig, generator: torch.Generator) -> torch.Tensor:
    """(n,) timesteps in (0, 1)."""
    if config.sampling == "uniform":
        t = torch.rand(n, generator=generator)
    else:
        t = torch.sigmoid(config.mean + config.std * torch.randn(n, generator=generator))
    return shift_timesteps(t, config.shift).clamp(1e-4, 1 - 1e-4)


def sample_training_timesteps(
    n: int, config: TimestepConfig, generator: torch.Generator, frame_groups: int | None
) -> torch.Tensor:
    """(n,) shared timesteps, or (n, frame_groups) when ``config.per_frame_probability`` > 0.

    Rows drawn per frame group have an independent t per group; the other rows repeat one t.
    """
    if config.per_frame_probability == 0:
        return sample_timesteps(n, config, generator)
    if not frame_groups:
        raise ValueError("per_frame_probability > 0 needs a backbone that takes one timestep per frame group")
    t = sample_timesteps(n * frame_groups, config, generator).view(n, frame_groups)
    shared = torch.rand(n, generator=generator) >= config.per_frame_probability
    return torch.where(shared[:, None], t[:, :1], t)


def noisy_latents(clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tt = time_like(t, clean)
    return (1 - tt) * clean + tt * noise


def velocity_errors(
    backbone: Backbone,
    clean: torch.Tensor,
    text: TextBatch,
    t: torch.Tensor,
    noise: torch.Tensor,
    refs: References | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample mean squared velocity error (B,) at timesteps ``t`` (B,) or (B, frame groups) with the given noise.

    ``weight`` (broadcastable to the latents, e.g. (B, 1, T, h, w)) turns the mean into a weighted mean
    per sample, so a weighted loss keeps the scale of the plain one.
    """
    prediction = backbone.predict_velocity(noisy_latents(clean, noise, t), t, text, refs)
    squared = (prediction - (noise - clean)).pow(2)
    if weight is None:
        return squared.flatten(1).mean(1)
    weight = weight.expand_as(squared)
    return (squared * weight).flatten(1).sum(1) / weight.flatten(1).sum(1)


def draw_timesteps_and_noise(
    backbone: Backbone, clean: torch.Tensor, generator: torch.Generator, timesteps: TimestepConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's training timesteps (B,) or (B, frame groups) and its noise, drawn in that order from ``generator``."""
    t = sample_training_timesteps(clean.shape[0], timesteps, generator, backbone.frame_groups).to(clean.device)
    noise = torch.randn(clean.shape, generator=generator).to(clean.device)
    return t, noise


def flow_matching_loss(
    backbone: Backbone,
    clean: torch.Tensor,
    text: TextBatch,
    generator: torch.Generator,
    timesteps: TimestepConfig,
    refs: References | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean rectified-flow loss of a batch; noise and timesteps come from ``generator`` (reproducible)."""
    t, noise = draw_timesteps_and_noise(backbone, clean, generator, timesteps)
    return velocity_errors(backbone, clean, text, t, noise, refs, weight).mean()
