"""The subject-to-video SFT objective: rectified flow with references and condition dropout.

Text and references are dropped independently per sample, so the branches the dynamic CFG combines
— v(∅,∅), v(∅,R) and v(T,R) — are all trained. A dropped reference set keeps its tensors but is
masked out (the backbone then attends to no reference), so batch shapes never change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field

from libragen.core.config import StrictModel
from libragen.models.backbone import Backbone, References
from libragen.train.flow import TimestepConfig, sample_timesteps, velocity_errors


class ConditionDropout(StrictModel):
    """Per-sample probabilities of training without the text and without the references."""

    text: float = Field(0.1, ge=0, le=1)
    refs: float = Field(0.1, ge=0, le=1)


@dataclass
class S2VBatch:
    """Clean video latents (B, C, T, h, w), their prompts, and their references (or None)."""

    latents: torch.Tensor
    prompts: list[str]
    refs: References | None = None


def encode_reference_set(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """One sample's reference images (R, 3, S, S) in [-1, 1] -> their latents (R, …) on the CPU (to cache)."""
    with torch.no_grad():
        return backbone.encode_references(images[None].to(backbone.device)).latents[0].cpu()


def encode_reference_files(backbone: Backbone, paths: list[str | os.PathLike[str]]) -> torch.Tensor:
    """One sample's reference image files -> their latents (R, …) on the CPU, each prepared (resized, white-padded)
    the way training and ``libragen generate`` prepare references."""
    from libragen.core.refs import prepare_reference
    from libragen.infer.pipeline import load_image

    size = backbone.video_size[-1]
    images = np.stack([prepare_reference(load_image(path), size=size) for path in paths])
    return encode_reference_set(backbone, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0)


def stack_reference_latents(backbone: Backbone, sets: list[torch.Tensor]) -> References:
    """Per-sample reference latents (R_i, …) -> one batch, zero-padded to the largest R and masked."""
    most = max(len(latents) for latents in sets)
    stacked = torch.zeros(len(sets), most, *sets[0].shape[1:])
    mask = torch.zeros(len(sets), most, dtype=torch.bool)
    for b, latents in enumerate(sets):
        stacked[b, : len(latents)], mask[b, : len(latents)] = latents, True
    return References(stacked.to(backbone.device), mask.to(backbone.device))


def drop_conditions(
    batch: S2VBatch, dropout: ConditionDropout, generator: torch.Generator
) -> tuple[list[str], References | None]:
    """Prompts with some replaced by "" and references with some samples' masks cleared."""
    b = len(batch.prompts)
    drop_text = torch.rand(b, generator=generator) < dropout.text
    drop_refs = torch.rand(b, generator=generator) < dropout.refs
    prompts = ["" if drop else p for p, drop in zip(batch.prompts, drop_text.tolist(), strict=True)]
    refs = batch.refs
    if refs is not None:
        refs = References(refs.latents, refs.mask & ~drop_refs.to(refs.mask.device)[:, None])
    return prompts, refs


def sft_loss(
    backbone: Backbone,
    batch: S2VBatch,
    generator: torch.Generator,
    timesteps: TimestepConfig,
    dropout: ConditionDropout,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean velocity loss of one S2V batch, with condition dropout; noise and t come from ``generator``."""
    prompts, refs = drop_conditions(batch, dropout, generator)
    clean = batch.latents
    t = sample_timesteps(clean.shape[0], timesteps, generator).to(clean.device)
    noise = torch.randn(clean.shape, generator=generator).to(clean.device)
    errors = velocity_errors(backbone, clean, backbone.encode_text(prompts), t, noise, refs)
    loss = errors.mean()
    return loss, {"loss": float(loss.detach())}
