"""The Backbone interface: what every trainer and sampler may ask of a video model.

A backbone encodes prompts, moves videos and reference images to and from its latent space, and
predicts the rectified-flow velocity ``v = noise - clean`` from noisy latents
``x_t = (1 - t) * clean + t * noise`` (t = 1 is pure noise). Trainers and samplers only use these
methods, so the LibraWorld MM-DiT and a Wan checkpoint are interchangeable.
"""

from __future__ import annotations

import abc
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass
class TextBatch:
    """Token-level text features (B, L, D) and their padding mask (B, L), True for real tokens."""

    tokens: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> TextBatch:
        return TextBatch(self.tokens.to(device), self.mask.to(device))


@dataclass
class References:
    """Reference latents (B, R, C, h, w) with ``mask`` (B, R) True for real references (not padding)."""

    latents: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> References:
        return References(self.latents.to(device), self.mask.to(device))


class Backbone(nn.Module, abc.ABC):
    """A text(+references)-to-video flow model. ``trainable`` is the nn.Module LoRA and optimisers act on."""

    #: Shape (C, T, H, W) of the latents of one video at the backbone's native size.
    latent_shape: tuple[int, int, int, int]
    #: Frames, height, width and fps of the videos the backbone makes.
    video_size: tuple[int, int, int]
    fps: float
    #: Module names (peft ``target_modules``) a LoRA adapts by default.
    lora_targets: tuple[str, ...] = ()
    #: The timestep shift the sampler uses unless told otherwise (SD3's shift; Wan's flow_shift).
    sampling_shift: float = 1.0
    #: How many groups of latent frames can take their own timestep ((B, G) timesteps; Diffusion Forcing
    #: training); None: one timestep per video.
    frame_groups: int | None = None

    @property
    @abc.abstractmethod
    def trainable(self) -> nn.Module:
        """The denoiser: the module whose parameters training updates (and LoRA targets)."""

    @abc.abstractmethod
    def encode_text(self, prompts: list[str]) -> TextBatch:
        """Token features of ``prompts`` (the empty prompt is the unconditional branch)."""

    @abc.abstractmethod
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Videos (B, T, 3, H, W) in [-1, 1] -> latents (B, *latent_shape)."""

    @abc.abstractmethod
    def decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> videos (B, T, 3, H, W) in [-1, 1]."""

    @abc.abstractmethod
    def encode_references(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> References:
        """Prepared reference images (B, R, 3, S, S) in [-1, 1] (see ``core.refs``) -> reference latents."""

    @abc.abstractmethod
    def predict_velocity(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text: TextBatch,
        refs: References | None = None,
        ref_offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
        ref_cache: object | None = None,
    ) -> torch.Tensor:
        """Velocity (same shape as ``latents``) at ``timestep`` (B,) in [0, 1], or (B, frame_groups) per group.

        ``ref_offset`` moves the references' RoPE slot; ``ref_cache`` (from :meth:`reference_cache`)
        replaces ``refs`` when the backbone can cache reference keys/values across steps.
        """

    def reference_cache(
        self, refs: References, ref_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ) -> object | None:
        """Precomputed reference state reused across denoising steps, or None when not supported."""
        return None

    @property
    def device(self) -> torch.device:
        return next(self.trainable.parameters()).device

    def enable_gradient_checkpointing(self, fraction: float = 1.0) -> None:
        """Recompute the activations of ``fraction`` of the blocks (evenly spread) in backward.

        Less memory for more time (about a third of those blocks' forward cost); not every backbone can.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support gradient checkpointing")

    def save_lora(self, path: str | os.PathLike[str], lora_config: dict, adapter_name: str = "default") -> None:
        """Write one LoRA adapter of ``trainable`` (peft keys, safetensors) and its config to ``path``."""
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        from libragen.core.files import atomic_path

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        state = get_peft_model_state_dict(self.trainable, adapter_name=adapter_name)
        state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        if not state:
            raise ValueError("the backbone has no LoRA to save")
        with atomic_path(folder / "lora.safetensors") as tmp:
            save_file(state, str(tmp), metadata={"lora_config": json.dumps(lora_config, default=list)})

    @abc.abstractmethod
    def save(self, path: str | os.PathLike[str], dtype: torch.dtype | None = None) -> None:
        """Write config + weights so :func:`libragen.models.load_backbone` restores the backbone.

        ``dtype`` stores the weights in that type (float16 to ship); loading casts back to float32.
        """


def spread_blocks(count: int, fraction: float) -> list[int]:
    """Indices of ``fraction`` of ``count`` blocks, evenly spread from block 0 (gradient checkpointing's choice).

    Early blocks first: backward reaches them last, when most stored activations are already freed,
    so their recomputation does not land on the memory peak (the last block's would).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return sorted({min(count - 1, int(k / fraction)) for k in range(max(1, round(count * fraction)))})


def time_like(t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """Timesteps (B,) or per frame group (B, G) broadcastable to latents (B, C, T, ...) (G divides T)."""
    if t.ndim == 1:
        return t.view(-1, *([1] * (latents.ndim - 1)))
    frames = latents.shape[2]
    if t.ndim != 2 or frames % t.shape[1]:
        raise ValueError(f"timesteps {tuple(t.shape)} do not split {frames} latent frames into equal groups")
    per_frame = t.repeat_interleave(frames // t.shape[1], dim=1)
    return per_frame.view(t.shape[0], 1, frames, *([1] * (latents.ndim - 3)))
