"""The LibraWorld backbone: MM-DiT on (pooled) pixel patches, MiniLM text, x- or preconditioned prediction.

Why pixels and no VAE: a VAE must be trained first, and on 2 CPU cores that is slow (a 2.7 M-parameter
diffusers AutoencoderKL, 8x, reached 17 dB PSNR on LibraWorld frames after 5 minutes). Token count, not
latent size, sets the transformer's cost. The latent is the video itself, optionally average-pooled
``latent_downsample`` x (decoded by bilinear upsampling): a fixed, exact "autoencoder".

What decides whether the transformer can learn: the values per token against its width. A token of
2x8x8 patches of 32 px latents carries 384 values; a 192- or 256-wide network cannot even pass a clean
input through (one-step x-prediction at t = 0.05 is 5x worse than returning x_t, measured), so samples
stay noisy. Tokens narrower than the model (2x4x4 patches of 16 px latents: 96 values) avoid that.
Outputs: ``x`` predicts the clean video (JiT), ``v`` the velocity, ``preconditioned`` the EDM form
(clean estimate = c_skip x_t + c_out F: a correction at low noise, x0 at high noise); trainers always
see a velocity model, like every other backbone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from safetensors.torch import load_file, save_file

from libragen.core.config import StrictModel
from libragen.core.files import atomic_path
from libragen.models.backbone import Backbone, References, TextBatch, spread_blocks, time_like
from libragen.models.mmdit import MMDiT, MMDiTConfig, ReferenceCache, TokenLayout
from libragen.models.text import MINILM_DIM, shared_minilm
from libragen.models.upsampler import LatentUpsampler, UpsamplerConfig

DECODER_WEIGHTS = "decoder.safetensors"


class LibraWorldBackboneConfig(StrictModel):
    """Video size, patching and transformer sizes of a LibraWorld backbone."""

    frames: int = Field(16, ge=1)
    height: int = Field(64, ge=8)
    width: int = Field(64, ge=8)
    fps: float = Field(8.0, gt=0)
    patch: tuple[int, int, int] = (2, 16, 16)
    ref_size: int = Field(64, ge=8)
    latent_downsample: int = Field(1, ge=1)  # pixels pooled f x f into the latent
    decoder: Literal["bilinear", "learned"] = "bilinear"  # learned: LatentUpsampler (libragen train decoder)
    upsampler: UpsamplerConfig = UpsamplerConfig()
    prediction: Literal["x", "v", "preconditioned"] = "x"
    x_pred_min_t: float = Field(0.05, gt=0, lt=1)
    sigma_data: float = Field(0.5, gt=0)  # std of clean latents, for the preconditioned (EDM) output
    text_max_length: int = Field(64, ge=4)
    text_layers: tuple[int, ...] = Field((-1,), min_length=1)  # MiniLM hidden states per token (0: embeddings)
    transformer: MMDiTConfig = MMDiTConfig()

    def model_post_init(self, _context: object) -> None:
        pt, ph, pw = self.patch
        f = self.latent_downsample
        if self.height % f or self.width % f or self.ref_size % f:
            raise ValueError(f"latent_downsample {f} must divide height/width/ref_size")
        h, w, r = self.height // f, self.width // f, self.ref_size // f
        if self.frames % pt or h % ph or w % pw or r % ph or r % pw:
            raise ValueError(f"patch {self.patch} must divide the latent's frames/height/width/ref_size")
        if self.decoder == "learned" and f == 1:
            raise ValueError("a learned decoder needs pooled latents (latent_downsample >= 2)")
        if self.transformer.skip_projection and self.prediction != "preconditioned":
            raise ValueError("transformer.skip_projection is part of the preconditioned output")


class LibraWorldBackbone(Backbone):
    """Pixel-patch MM-DiT backbone for LibraWorld videos (B, T, 3, H, W) in [-1, 1]."""

    kind = "libraworld"
    lora_targets = ("to_q", "to_k", "to_v", "to_out", "mlp_in", "mlp_out")

    def __init__(self, config: LibraWorldBackboneConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LibraWorldBackboneConfig()
        pt, ph, pw = config.patch
        patch_dim = 3 * pt * ph * pw
        self.transformer = MMDiT(
            config.transformer.model_copy(
                update={"in_dim": patch_dim, "out_dim": patch_dim, "text_dim": MINILM_DIM * len(config.text_layers)}
            )
        )
        f = config.latent_downsample
        self.upsampler = None  # frozen, outside ``trainable``; trained on its own by ``libragen train decoder``
        if config.decoder == "learned":
            self.upsampler = LatentUpsampler(f, config.upsampler).requires_grad_(False)
        self.latent_shape = (3, config.frames, config.height // f, config.width // f)
        self.video_size = (config.frames, config.height, config.width)
        self.fps = config.fps
        self.frame_groups = config.frames // pt  # one timestep per temporal token row (Diffusion Forcing)
        # The frozen text encoder is shared and kept out of this module's parameters and state dict.
        self.__dict__["_text_encoder"] = shared_minilm(None, config.text_max_length, tuple(config.text_layers))

    @property
    def trainable(self) -> MMDiT:
        return self.transformer

    # -- text, video, references --------------------------------------------------------------
    def encode_text(self, prompts: list[str]) -> TextBatch:
        return self._text_encoder(prompts).to(self.device)

    def enable_gradient_checkpointing(self, fraction: float = 1.0) -> None:
        self.transformer.checkpointed_blocks = set(spread_blocks(len(self.transformer.blocks), fraction))

    @property
    def device(self) -> torch.device:
        return self.transformer.patch_in.weight.device

    def pool_frames(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) pixels -> latent pixels (average of f x f blocks)."""
        f = self.config.latent_downsample
        return torch.nn.functional.avg_pool2d(images, f) if f > 1 else images

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        latents = self.pool_frames(video.flatten(0, 1)).unflatten(0, video.shape[:2])
        return latents.transpose(1, 2).contiguous()  # (B, T, 3, h, w) -> (B, 3, T, h, w): pixels are the latents

    def decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        video = latents.transpose(1, 2).clamp(-1, 1)
        if self.config.latent_downsample == 1:
            return video
        if self.upsampler is not None:
            return self.upsampler(video.flatten(0, 1)).unflatten(0, video.shape[:2]).clamp(-1, 1)
        _, height, width = self.video_size
        frames = torch.nn.functional.interpolate(
            video.flatten(0, 1), size=(height, width), mode="bilinear", align_corners=False
        )
        return frames.unflatten(0, video.shape[:2]).clamp(-1, 1)

    def encode_references(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> References:
        size = self.config.ref_size
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"references must be (B, R, 3, S, S), got {tuple(images.shape)}")
        if images.shape[-2:] != (size, size):
            images = torch.nn.functional.interpolate(
                images.flatten(0, 1), size=(size, size), mode="bilinear", antialias=True, align_corners=False
            ).unflatten(0, images.shape[:2])
        if mask is None:
            mask = torch.ones(images.shape[:2], dtype=torch.bool, device=images.device)
        return References(self.pool_frames(images.flatten(0, 1)).unflatten(0, images.shape[:2]), mask)

    # -- patching -----------------------------------------------------------------------------
    def _layout(self, latents: torch.Tensor, refs: References | None) -> TokenLayout:
        pt, ph, pw = self.config.patch
        _, _, t, h, w = latents.shape
        size = self.config.ref_size // self.config.latent_downsample
        return TokenLayout(
            (t // pt, h // ph, w // pw), (size // ph, size // pw), 0 if refs is None else refs.latents.shape[1]
        )

    def patchify(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, tokens, C*pt*ph*pw) in (t, h, w) token order."""
        pt, ph, pw = self.config.patch
        b, c, t, h, w = latents.shape
        x = latents.reshape(b, c, t // pt, pt, h // ph, ph, w // pw, pw)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (t // pt) * (h // ph) * (w // pw), c * pt * ph * pw)

    def unpatchify(self, tokens: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        pt, ph, pw = self.config.patch
        b, c, t, h, w = shape
        x = tokens.reshape(b, t // pt, h // ph, w // pw, c, pt, ph, pw)
        return x.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(shape)

    def _ref_patches(self, refs: References) -> tuple[torch.Tensor, torch.Tensor]:
        """Each reference image repeated over one temporal patch -> tokens (B, R*h*w, dim) and key mask."""
        pt = self.config.patch[0]
        b, r = refs.latents.shape[:2]
        frames = refs.latents.flatten(0, 1)[:, :, None].expand(-1, -1, pt, -1, -1)  # (B*R, C, pt, S, S)
        tokens = self.patchify(frames)  # (B*R, n, dim)
        n = tokens.shape[1]
        key_mask = refs.mask[:, :, None].expand(b, r, n).reshape(b, r * n)
        return tokens.reshape(b, r * n, -1), key_mask

    # -- denoising ----------------------------------------------------------------------------
    def predict_velocity(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text: TextBatch,
        refs: References | None = None,
        ref_offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
        ref_cache: object | None = None,
    ) -> torch.Tensor:
        if isinstance(ref_cache, _PixelRefCache):
            refs, cache = ref_cache.refs, ref_cache.cache
        else:
            cache = None
        layout = self._layout(latents, refs)
        ref_patches = key_mask = None
        if refs is not None and cache is None:
            ref_patches, key_mask = self._ref_patches(refs)
        patches = self.patchify(latents)
        out = self.transformer(
            patches,
            timestep,
            text.tokens,
            text.mask,
            layout,
            ref_patches=ref_patches,
            ref_key_mask=key_mask,
            ref_offset=ref_offset,
            ref_cache=cache,
        )
        out = self.unpatchify(out, tuple(latents.shape))
        if self.config.prediction == "v":
            return out
        if self.config.prediction == "preconditioned":
            velocity = preconditioned_velocity(latents, timestep, out, self.config.sigma_data)
            if self.transformer.skip_projection is not None:
                removed = self.unpatchify(self.transformer.skip_projection(patches), tuple(latents.shape))
                velocity = velocity + skip_removal_velocity(timestep, removed, self.config)
            return velocity
        t = time_like(timestep.clamp(min=self.config.x_pred_min_t), latents)
        return (latents - out) / t  # x_t = (1 - t) x0 + t eps  =>  v = eps - x0 = (x_t - x0) / t

    def reference_cache(
        self, refs: References, ref_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ) -> object | None:
        if not self.transformer.config.one_way_refs:
            return None
        patches, key_mask = self._ref_patches(refs)
        video_like = torch.empty(1, *self.latent_shape)  # references sit after the native video's time slots
        layout = self._layout(video_like, refs)
        return _PixelRefCache(refs, self.transformer.reference_cache(patches, layout, key_mask, ref_offset))

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], dtype: torch.dtype | None = None) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().cpu().to(dtype or v.dtype).contiguous() for k, v in self.transformer.state_dict().items()
        }
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file(state, str(tmp))
        if self.upsampler is not None:
            self.save_decoder(folder)
        self.save_meta(folder)

    def save_meta(self, path: str | os.PathLike[str]) -> None:
        """Write ``backbone.json`` (kind and config) into a backbone folder."""
        with atomic_path(Path(path) / "backbone.json") as tmp:
            tmp.write_text(json.dumps({"kind": self.kind, "config": self.config.model_dump(mode="json")}, indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike[str], weights: str = "model.safetensors") -> LibraWorldBackbone:
        folder = Path(path)
        meta = json.loads((folder / "backbone.json").read_text())
        model = cls(LibraWorldBackboneConfig.model_validate(meta["config"]))
        state = {k: v.float() for k, v in load_file(str(folder / weights)).items()}
        model.transformer.load_state_dict(state)
        if model.upsampler is not None:
            decoder = folder / DECODER_WEIGHTS
            if not decoder.is_file():
                raise FileNotFoundError(f"{folder}: learned decoder named but {DECODER_WEIGHTS} missing")
            model.upsampler.load_state_dict({k: v.float() for k, v in load_file(str(decoder)).items()})
        return model

    def save_decoder(self, path: str | os.PathLike[str]) -> None:
        """Write the learned decoder's weights (float32) into a backbone folder."""
        if self.upsampler is None:
            raise ValueError("this backbone decodes bilinearly; it has no learned decoder")
        state = {k: v.detach().cpu().contiguous() for k, v in self.upsampler.state_dict().items()}
        with atomic_path(Path(path) / DECODER_WEIGHTS) as tmp:
            save_file(state, str(tmp))


def preconditioned_velocity(
    latents: torch.Tensor, timestep: torch.Tensor, output: torch.Tensor, sigma_data: float
) -> torch.Tensor:
    """Velocity from a network output ``F`` under EDM preconditioning (Karras et al. 2022) for rectified flow.

    With x_t = (1 - t) x0 + t eps, the clean estimate is x0 = c_skip x_t + c_out F, where
    D = (1 - t)^2 s^2 + t^2, c_skip = (1 - t) s^2 / D and c_out = t s / sqrt(D) (s = ``sigma_data``). At low
    noise x0 ~ x_t, so the network only adds a correction (a plain x-prediction must pass every value of
    its token through its narrower width, and cannot even copy a clean input); at high noise it predicts
    x0 (low rank), which a v-prediction cannot. The velocity v = (x_t - x0) / t is written without the
    division, so it is exact down to t = 0.
    """
    t = time_like(timestep, latents)
    s2 = sigma_data**2
    d = (1 - t) ** 2 * s2 + t**2
    return (t - (1 - t) * s2) / d * latents - sigma_data / d.sqrt() * output


def skip_removal_velocity(
    timestep: torch.Tensor, removed: torch.Tensor, config: LibraWorldBackboneConfig
) -> torch.Tensor:
    """Velocity change when the skip connection reads x_t − P x_t instead of x_t (``transformer.skip_projection``).

    x0 = c_skip (x_t − P x_t) + c_out F, so v = (x_t − x0) / t gains c_skip P x_t / t. P is learned per token (full
    rank): it can drop the directions of a token the rank-limited output head cannot denoise (where real data have
    almost no variance, so x_t there is noise). t is clamped at ``x_pred_min_t`` (the term has a 1/t).
    """
    t = time_like(timestep, removed).clamp(min=config.x_pred_min_t)
    s2 = config.sigma_data**2
    c_skip = (1 - t) * s2 / ((1 - t) ** 2 * s2 + t**2)
    return c_skip / t * removed


class _PixelRefCache:
    """Reference K/V cache plus the references it was built from (for their count and grid)."""

    def __init__(self, refs: References, cache: ReferenceCache) -> None:
        self.refs = refs
        self.cache = cache
