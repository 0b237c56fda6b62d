"""Wan2.1 / Wan2.2 through diffusers as a LibraGen :class:`Backbone` (the real-scale path).

Loads a local diffusers-format folder (``Wan2.1-T2V-1.3B-Diffusers``, ``Wan2.2-T2V-A14B-Diffusers``…):
``WanTransformer3DModel`` (two of them for Wan2.2 A14B, switched at the pipeline's
``boundary_ratio``), ``AutoencoderKLWan`` and the UMT5 text encoder. Nothing is downloaded.

References follow LibraGen's injection semantics (see :mod:`libragen.models.wan_attention`): each
reference image is fitted into the video frame on a white canvas, VAE-encoded as one latent frame and
appended after the video on the time axis, kept clean (timestep 0), placed in its own RoPE slot (after
the native video length, ``config.frames``, so a cache built before sampling matches) that
``ref_offset`` moves, and — one-way by default — attended by the video while attending only to the
references, so their keys/values are computed once per sampling run. The velocity returned covers the
video frames only: references never reach the decoder.

Timesteps: our t in [0, 1] is Wan's sigma; the transformer is fed ``1000 t`` like ``WanPipeline``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from libragen.core.config import StrictModel
from libragen.core.files import atomic_path
from libragen.models.backbone import Backbone, References, TextBatch, spread_blocks
from libragen.models.wan_attention import install_reference_injection, state_aware_checkpointing
from libragen.models.wan_recompute import CheapRecompute, install_cheap_recompute

NUM_TRAIN_TIMESTEPS = 1000


class WanBackboneConfig(StrictModel):
    """Video size and injection settings of a Wan backbone (the weights come from the diffusers folder)."""

    frames: int = Field(81, ge=1)  # 4k + 1 for Wan's 4x temporal VAE
    height: int = Field(480, ge=16)
    width: int = Field(832, ge=16)
    fps: float = Field(16.0, gt=0)
    max_sequence_length: int = Field(512, ge=1)  # UMT5 tokens; Wan was trained with 512
    one_way_refs: bool = True  # references attend only to references (K/V cacheable); False = Phantom-like
    max_refs: int = Field(4, ge=1)
    offload: bool = False  # text encoder and VAE stay on the CPU and visit the device only while used
    # training keeps GELU/norm/RoPE inputs only and recomputes their outputs in backward (same gradients)
    recompute_cheap_activations: bool = True


@dataclass
class _WanRefCache:
    """Per-expert reference K/V of one sampling run (one-way references only)."""

    refs: References
    offset: tuple[float, float, float]
    keys: dict[str, tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]]


class WanBackbone(Backbone):
    """diffusers' Wan pipeline components behind the Backbone interface."""

    kind = "wan"
    lora_targets = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")

    def __init__(self, pipeline, config: WanBackboneConfig) -> None:  # pipeline: diffusers.WanPipeline
        super().__init__()
        self.config = config
        self.pipeline = pipeline  # plain attribute: the text encoder and VAE are placed by hand (offload)
        self.transformer = pipeline.transformer
        self.transformer_2 = getattr(pipeline, "transformer_2", None)
        self._experts = {"transformer": self.transformer}
        if self.transformer_2 is not None:
            self._experts["transformer_2"] = self.transformer_2
        self._recompute = CheapRecompute() if config.recompute_cheap_activations else None
        self._states = {
            name: install_reference_injection(model, self._recompute) for name, model in self._experts.items()
        }
        if self._recompute is not None:
            for model in self._experts.values():
                install_cheap_recompute(model, self._recompute)
        boundary = pipeline.config.get("boundary_ratio") if hasattr(pipeline, "config") else None
        self.boundary = None if self.transformer_2 is None or boundary is None else float(boundary)
        self._text_cache: dict[str, tuple[torch.Tensor, int]] = {}
        scheduler = getattr(pipeline, "scheduler", None)
        scheduler_config = scheduler.config if scheduler is not None else {}
        self.sampling_shift = float(scheduler_config.get("flow_shift") or scheduler_config.get("shift") or 5.0)

        vae = pipeline.vae
        self._temporal = int(vae.config.scale_factor_temporal)
        self._spatial = int(vae.config.scale_factor_spatial)
        if (config.frames - 1) % self._temporal:
            raise ValueError(f"frames must be {self._temporal}k + 1 for this VAE, got {config.frames}")
        patch = self.transformer.config.patch_size
        for name, size in (("height", config.height), ("width", config.width)):
            if size % (self._spatial * patch[1]):
                raise ValueError(f"{name} must be a multiple of {self._spatial * patch[1]}, got {size}")
        self.latent_shape = (
            int(vae.config.z_dim),
            (config.frames - 1) // self._temporal + 1,
            config.height // self._spatial,
            config.width // self._spatial,
        )
        self.video_size = (config.frames, config.height, config.width)
        self.fps = config.fps

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        config: WanBackboneConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        offload: bool | None = None,
    ) -> WanBackbone:
        """Load a local diffusers-format Wan folder (``model_index.json``); never touches the network.

        ``offload`` (when given) overrides the config's: text encoder and VAE kept on the CPU between uses."""
        from diffusers import AutoencoderKLWan, WanPipeline

        folder = Path(path)
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(f"{folder}: not a diffusers model folder (no model_index.json)")
        meta = folder / "backbone.json"
        if config is None:
            config = (
                WanBackboneConfig.model_validate(json.loads(meta.read_text())["config"])
                if meta.is_file()
                else WanBackboneConfig()
            )
        if offload is not None:
            config = config.model_copy(update={"offload": offload})
        # the VAE stays in float32 whatever the transformer's dtype (Wan's own recommendation)
        vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", dtype=torch.float32, local_files_only=True)
        pipeline = WanPipeline.from_pretrained(folder, vae=vae, dtype=dtype, local_files_only=True)
        backbone = cls(pipeline, config)
        backbone.to_device(device)
        return backbone

    def to_device(self, device: str | torch.device) -> WanBackbone:
        """Transformers to ``device``; text encoder and VAE too unless ``config.offload``."""
        for model in self._experts.values():
            model.to(device)
        encoders_device = "cpu" if self.config.offload else device
        for module in (self.pipeline.text_encoder, self.pipeline.vae):
            if module is not None:  # a transformer-only pipeline (cached text and latents) has neither
                module.to(encoders_device)
        return self

    def to(self, *args, **kwargs) -> WanBackbone:  # type: ignore[override]
        """``nn.Module.to`` that also places the text encoder and VAE (by ``config.offload``) on a device move."""
        super().to(*args, **kwargs)
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None:
            self.to_device(device)
        return self

    @contextlib.contextmanager
    def _visiting(self, module: nn.Module) -> Iterator[nn.Module]:
        """With offload, move ``module`` to the transformer's device for one call and back to the CPU."""
        if not self.config.offload:
            yield module
            return
        module.to(self.device)
        try:
            yield module
        finally:
            module.to("cpu")

    # -- Backbone interface ----------------------------------------------------------------------
    @property
    def trainable(self) -> nn.Module:
        if self.transformer_2 is None:
            return self.transformer
        return nn.ModuleDict(self._experts)

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def enable_gradient_checkpointing(self, fraction: float = 1.0, selective: bool = False) -> None:
        """Recompute the activations of ``fraction`` of the blocks in backward; ``selective`` keeps their
        full-rank matmul and attention outputs and recomputes only the cheap operations (norms, RoPE,
        modulation, GELU, LoRA's low-rank B projection)."""
        for name, model in self._experts.items():
            chosen = [model.blocks[i] for i in spread_blocks(len(model.blocks), fraction)]
            checkpointing = state_aware_checkpointing(self._states[name], chosen, selective, self._recompute)
            model.enable_gradient_checkpointing(checkpointing)

    def encode_text(self, prompts: list[str]) -> TextBatch:
        missing = list(dict.fromkeys(p for p in prompts if p not in self._text_cache))
        if missing:
            length = self.config.max_sequence_length
            tokens = self.pipeline.tokenizer(
                missing, padding="max_length", max_length=length, truncation=True, add_special_tokens=True
            )
            with self._visiting(self.pipeline.text_encoder) as encoder, torch.no_grad():
                embeds, _ = self.pipeline.encode_prompt(
                    missing,
                    do_classifier_free_guidance=False,
                    max_sequence_length=length,
                    device=next(encoder.parameters()).device,
                    dtype=self.dtype,
                )
            for prompt, embed, mask in zip(missing, embeds, tokens["attention_mask"], strict=True):
                self._text_cache[prompt] = (embed.cpu(), int(sum(mask)))
        embeds = torch.stack([self._text_cache[p][0] for p in prompts]).to(self.device)
        lengths = torch.tensor([self._text_cache[p][1] for p in prompts])
        mask = torch.arange(embeds.shape[1])[None] < lengths[:, None]
        return TextBatch(embeds, mask.to(self.device))

    def _latent_stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.pipeline.vae.config
        shape = (1, config.z_dim, 1, 1, 1)
        mean = torch.tensor(config.latents_mean, dtype=torch.float32, device=device).view(shape)
        std = torch.tensor(config.latents_std, dtype=torch.float32, device=device).view(shape)
        return mean, std

    def _vae_encode(self, video: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) in [-1, 1] -> normalised latents (N, z, t, h, w) in float32 on the device."""
        with self._visiting(self.pipeline.vae) as vae, torch.no_grad():
            vae_device = next(vae.parameters()).device
            latents = vae.encode(video.to(vae_device, vae.dtype)).latent_dist.mode().float()
            mean, std = self._latent_stats(vae_device)
            return ((latents - mean) / std).to(self.device)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"videos must be (B, T, 3, H, W), got {tuple(video.shape)}")
        return self._vae_encode(video.permute(0, 2, 1, 3, 4))

    def decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        with self._visiting(self.pipeline.vae) as vae, torch.no_grad():
            vae_device = next(vae.parameters()).device
            mean, std = self._latent_stats(vae_device)
            z = latents.to(vae_device).float() * std + mean
            video = vae.decode(z.to(vae.dtype)).sample.float()
        return video.permute(0, 2, 1, 3, 4).clamp(-1, 1).to(latents.device)

    def _fit_to_frame(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S') reference images -> (N, 3, H, W): resized with aspect kept, centred on white."""
        _, height, width = self.video_size
        scale = min(height / images.shape[-2], width / images.shape[-1])
        new_h, new_w = max(1, round(images.shape[-2] * scale)), max(1, round(images.shape[-1] * scale))
        resized = F.interpolate(images, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        top, left = (height - new_h) // 2, (width - new_w) // 2
        return F.pad(resized, (left, width - new_w - left, top, height - new_h - top), value=1.0)

    def encode_references(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> References:
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"references must be (B, R, 3, S, S), got {tuple(images.shape)}")
        b, r = images.shape[:2]
        if r > self.config.max_refs:
            raise ValueError(f"{r} references given, this backbone takes at most {self.config.max_refs}")
        frames = self._fit_to_frame(images.flatten(0, 1).float())[:, :, None]  # (B*R, 3, 1, H, W)
        latents = self._vae_encode(frames)[:, :, 0]  # (B*R, z, h, w)
        if mask is None:
            mask = torch.ones(b, r, dtype=torch.bool)
        return References(latents.unflatten(0, (b, r)), mask.to(self.device))

    # -- denoising ------------------------------------------------------------------------------
    def _ref_key_mask(self, refs: References, model: nn.Module) -> torch.Tensor | None:
        """(B, R * tokens per frame) key mask, or None when every reference is real (no mask needed)."""
        if bool(refs.mask.all()):
            return None
        _, p_h, p_w = model.config.patch_size
        per_frame = (refs.latents.shape[-2] // p_h) * (refs.latents.shape[-1] // p_w)
        return refs.mask.repeat_interleave(per_frame, dim=1)

    def _reference_pass(
        self, name: str, refs: References, offset: tuple[float, float, float]
    ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """Run the references alone (timestep 0, no text) and return every block's reference K/V."""
        model = self._experts[name]
        frames = refs.latents.permute(0, 2, 1, 3, 4).to(model.dtype)  # (B, z, R, h, w)
        zeros = torch.zeros(frames.shape[0], device=frames.device)
        no_text = torch.zeros(frames.shape[0], 1, model.config.text_dim, dtype=model.dtype, device=frames.device)
        keys: dict[int, torch.Tensor] = {}
        values: dict[int, torch.Tensor] = {}
        state = self._states[name]
        with state.use(
            mode="refs",
            video_frames=self.latent_shape[1],
            ref_frames=frames.shape[2],
            offset=offset,
            ref_key_mask=self._ref_key_mask(refs, model),
            keys=keys,
            values=values,
        ):
            model(frames, zeros, no_text, return_dict=False)  # the refs pass never reads the text
        return keys, values

    def _forward(
        self,
        name: str,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        refs: References | None,
        offset: tuple[float, float, float],
        cached: tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]] | None,
    ) -> torch.Tensor:
        model = self._experts[name]
        state = self._states[name]
        x = latents.to(model.dtype)
        wan_t = timestep.float() * NUM_TRAIN_TIMESTEPS
        if refs is None:
            return model(x, wan_t, text, return_dict=False)[0]
        key_mask = self._ref_key_mask(refs, model)
        if self.config.one_way_refs:
            keys, values = cached if cached is not None else self._reference_pass(name, refs, offset)
            with state.use(mode="video", ref_key_mask=key_mask, keys=keys, values=values):
                return model(x, wan_t, text, return_dict=False)[0]
        frames = refs.latents.permute(0, 2, 1, 3, 4).to(model.dtype)
        joint = torch.cat([x, frames], dim=2)
        _, p_h, p_w = model.config.patch_size
        per_frame = (x.shape[-2] // p_h) * (x.shape[-1] // p_w)
        token_t = torch.cat(
            [wan_t[:, None].expand(-1, x.shape[2] * per_frame), wan_t.new_zeros(len(x), frames.shape[2] * per_frame)],
            dim=1,
        )
        with state.use(
            mode="joint", video_frames=x.shape[2], ref_frames=frames.shape[2], offset=offset, ref_key_mask=key_mask
        ):
            return model(joint, token_t, text, return_dict=False)[0][:, :, : x.shape[2]]

    def predict_velocity(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text: TextBatch,
        refs: References | None = None,
        ref_offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
        ref_cache: object | None = None,
    ) -> torch.Tensor:
        if isinstance(ref_cache, _WanRefCache):
            refs, ref_offset = ref_cache.refs, ref_cache.offset
        if refs is not None and refs.latents.shape[1] > self.config.max_refs:
            raise ValueError(f"{refs.latents.shape[1]} references given, at most {self.config.max_refs}")
        saving = self._recompute.saving() if self._recompute is not None else contextlib.nullcontext()
        with saving:
            return self._predict(latents, timestep, text, refs, ref_offset, ref_cache)

    def _predict(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text: TextBatch,
        refs: References | None,
        ref_offset: tuple[float, float, float],
        ref_cache: object | None,
    ) -> torch.Tensor:
        """``predict_velocity``'s body, run inside the recomputation's saved-tensor hooks."""
        tokens = text.tokens.to(self.dtype)
        if self.boundary is None:
            cached = ref_cache.keys["transformer"] if isinstance(ref_cache, _WanRefCache) else None
            return self._forward("transformer", latents, timestep, tokens, refs, ref_offset, cached).float()
        # Wan2.2 A14B: the high-noise expert takes t >= boundary, the low-noise expert the rest.
        high = timestep >= self.boundary
        out = torch.empty(latents.shape, dtype=torch.float32, device=latents.device)
        for name, rows in (("transformer", high), ("transformer_2", ~high)):
            if not bool(rows.any()):
                continue
            sub_refs = None if refs is None else References(refs.latents[rows], refs.mask[rows])
            cached = None
            if isinstance(ref_cache, _WanRefCache):
                keys, values = ref_cache.keys[name]
                cached = ({i: k[rows] for i, k in keys.items()}, {i: v[rows] for i, v in values.items()})
            out[rows] = self._forward(
                name, latents[rows], timestep[rows], tokens[rows], sub_refs, ref_offset, cached
            ).float()
        return out

    def reference_cache(
        self, refs: References, ref_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ) -> object | None:
        if not self.config.one_way_refs:
            return None
        with torch.no_grad():
            keys = {name: self._reference_pass(name, refs, ref_offset) for name in self._experts}
        return _WanRefCache(refs, ref_offset, keys)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], dtype: torch.dtype | None = None) -> None:
        """The whole pipeline in diffusers format (loadable by ``WanPipeline.from_pretrained``) + backbone.json."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        dtypes = {name: model.dtype for name, model in self._experts.items()}
        if dtype is not None:  # cast for writing, then back (a float32 model keeps float16-rounded weights)
            for model in self._experts.values():
                model.to(dtype)
        try:
            self.pipeline.save_pretrained(folder, safe_serialization=True)
        finally:
            for name, model in self._experts.items():
                model.to(dtypes[name])
        with atomic_path(folder / "backbone.json") as tmp:
            tmp.write_text(json.dumps({"kind": self.kind, "config": self.config.model_dump(mode="json")}, indent=2))

    def save_lora(self, path: str | os.PathLike[str], lora_config: dict, adapter_name: str = "default") -> None:
        """The trained LoRA in diffusers' Wan format: ``WanPipeline.load_lora_weights(path)`` loads it.

        Wan2.2's low-noise expert goes to ``path/transformer_2`` (load with ``load_into_transformer_2=True``).
        """
        from diffusers import WanPipeline
        from peft import get_peft_model_state_dict

        folder = Path(path)
        for name, model in self._experts.items():
            state = get_peft_model_state_dict(model, adapter_name=adapter_name)
            state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
            target = folder if name == "transformer" else folder / name
            WanPipeline.save_lora_weights(
                target, transformer_lora_layers=state, transformer_lora_adapter_metadata=lora_config
            )
