"""A small MM-DiT for video with lightweight subject injection.

* Two weight streams (SD3's MM-DiT): text tokens use their own projections, MLP and modulation;
  video tokens and reference tokens share the image stream. All tokens meet in one joint attention.
* adaLN-zero modulation from the timestep (+ pooled text); every residual branch starts as identity.
* 3D RoPE on image tokens, RMS QK-norm per head.
* Subject injection (the LibraGen / Stand-In scheme): each reference image becomes tokens appended to
  the sequence, kept clean and modulated with timestep 0 (no text), placed in their own RoPE slot
  (temporal index after the video, plus a changeable offset), optionally tagged with a small learned
  per-reference embedding. With ``one_way_refs`` reference tokens attend only to themselves, so their
  keys and values do not depend on the noisy video and can be cached across denoising steps
  (:meth:`MMDiT.reference_cache`).

The module works on tokens; patchifying latents and encoding text live in the backbone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.checkpoint import checkpoint

from libragen.core.config import StrictModel
from libragen.models.rope import apply_rope, grid_positions, rope_angles


class MMDiTConfig(StrictModel):
    """Sizes of the transformer; ``in_dim`` / ``out_dim`` are the patch sizes the backbone feeds in."""

    in_dim: int = Field(768, ge=1)
    out_dim: int = Field(768, ge=1)
    text_dim: int = Field(384, ge=1)
    dim: int = Field(256, ge=8)
    depth: int = Field(6, ge=1)
    heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    text_mlp_ratio: float = Field(2.0, gt=0)  # text is short; a slimmer text MLP keeps the checkpoint small
    max_refs: int = Field(4, ge=0)
    ref_type_embedding: bool = True
    one_way_refs: bool = True
    local_mixing: bool = True  # depthwise 3x3x3 conv at the image MLP's input: local structure from step 0
    rope_theta: float = 10000.0
    # Global text condition (added to the timestep embedding for adaLN): the mean of the text tokens, plus with
    # ``text_attention_pool`` > 0 that many learned attention-pooling heads (Imagen's attention pooling). Why: the
    # mean of ~17 tokens hardly changes when one word does ("left" vs "right": pooled cosine 0.997), so the adaLN
    # path is blind to it; a pooling head can pick the word out, and a text-dependent adaLN shift before the
    # RoPE'd q/k is a relative-position attention bias, i.e. "look one token to the right in the previous frame".
    text_attention_pool: int = Field(0, ge=0)
    # A full-rank linear map from each video token's input values to its output values, for backbones whose tokens
    # carry more values than the width (the output head has rank <= dim, so some directions of every token could
    # never be denoised). The transformer only owns it; the backbone's preconditioning uses it (libraworld.py).
    skip_projection: bool = False

    def to_dict(self) -> dict:
        """Plain-dict view, the form libraries that read ``model.config`` expect (peft's merging does)."""
        return self.model_dump()


@dataclass
class TokenLayout:
    """Where the image tokens sit: the video grid and how many tokens each reference has."""

    grid: tuple[int, int, int]  # (t, h, w) token grid of the video
    ref_grid: tuple[int, int] = (0, 0)  # (h, w) token grid of one reference image
    num_refs: int = 0

    def grids(self, with_video: bool = True, with_refs: bool = True) -> list[Grid]:
        """Token runs for local mixing: the video grid, then one (1, h, w) grid per reference."""
        runs: list[Grid] = [(1, *self.grid)] if with_video else []
        if with_refs and self.num_refs:
            runs.append((self.num_refs, 1, *self.ref_grid))
        return runs

    @property
    def video_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def ref_tokens(self) -> int:
        return self.num_refs * self.ref_grid[0] * self.ref_grid[1]


@dataclass
class ReferenceCache:
    """Per-block keys/values of the reference tokens (one-way attention only) and their padding mask."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    key_mask: torch.Tensor  # (B, N_ref) True where the token belongs to a real reference


#: A run of tokens that form ``count`` grids of (t, h, w) each, e.g. (1, 8, 4, 4) for a video.
Grid = tuple[int, int, int, int]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] (scaled to [0, 1000] like diffusion timesteps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Stream(nn.Module):
    """One modality's weights in a joint block: modulation, projections, QK-norm, output, MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, local_mixing: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.to_out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp_in = nn.Linear(dim, hidden)
        self.mlp_out = nn.Linear(hidden, dim)
        self.local = nn.Conv3d(dim, dim, 3, padding=1, groups=dim) if local_mixing else None
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def qkv(self, x: torch.Tensor, mod: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, D) -> q, k, v of shape (B, heads, N, head_dim), QK-normed."""
        h = modulate(self.norm1(x), mod[0], mod[1])
        split = [p(h).unflatten(-1, (self.heads, -1)).transpose(1, 2) for p in (self.to_q, self.to_k, self.to_v)]
        return self.q_norm(split[0]), self.k_norm(split[1]), split[2]

    def finish(
        self, x: torch.Tensor, attended: torch.Tensor, mod: list[torch.Tensor], grids: list[Grid] | None = None
    ) -> torch.Tensor:
        """Residual update after attention: gated projection, then the gated MLP (with local mixing on ``grids``)."""
        x = x + mod[2] * self.to_out(attended.transpose(1, 2).flatten(2))
        h = modulate(self.norm2(x), mod[3], mod[4])
        if self.local is not None and grids:
            h = self._mix_locally(h, grids)
        return x + mod[5] * self.mlp_out(F.gelu(self.mlp_in(h), approximate="tanh"))

    def _mix_locally(self, h: torch.Tensor, grids: list[Grid]) -> torch.Tensor:
        """Add a depthwise conv over each token grid; ``grids`` are (count, t, h, w) runs in token order."""
        parts, start = [], 0
        b, _, channels = h.shape
        for count, t, hh, ww in grids:
            n = count * t * hh * ww
            volume = h[:, start : start + n].reshape(b * count, t, hh, ww, channels).permute(0, 4, 1, 2, 3)
            volume = volume + self.local(volume)
            parts.append(volume.permute(0, 2, 3, 4, 1).reshape(b, n, channels))
            start += n
        parts.append(h[:, start:])
        return torch.cat(parts, 1)


class JointBlock(nn.Module):
    """Joint attention over [text | image] with separate text and image weights."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, text_mlp_ratio: float, local_mixing: bool) -> None:
        super().__init__()
        self.text = Stream(dim, heads, text_mlp_ratio)
        self.image = Stream(dim, heads, mlp_ratio, local_mixing)

    def forward(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        image_mod: torch.Tensor,
        text_mod: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        extra_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        grids: list[Grid] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, Ni, D) with per-token modulation (B, Ni, 6D); text (B, Nt, D) with (B, 1, 6D).

        ``mask`` (B, 1, Nt+Ni, Nkeys) is True where attention is allowed; ``extra_kv`` are cached
        reference keys/values appended after the sequence's own keys.
        """
        image_mods, text_mods = image_mod.chunk(6, dim=-1), text_mod.chunk(6, dim=-1)
        qi, ki, vi = self.image.qkv(image, image_mods)
        qt, kt, vt = self.text.qkv(text, text_mods)
        qi, ki = apply_rope(qi, *rope), apply_rope(ki, *rope)
        q, k, v = torch.cat([qt, qi], 2), torch.cat([kt, ki], 2), torch.cat([vt, vi], 2)
        if extra_kv is not None:
            k, v = torch.cat([k, extra_kv[0]], 2), torch.cat([v, extra_kv[1]], 2)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        n_text = text.shape[1]
        text = self.text.finish(text, attended[:, :, :n_text], text_mods)
        image = self.image.finish(image, attended[:, :, n_text:], image_mods, grids)
        return image, text

    def reference_only(
        self,
        refs: torch.Tensor,
        mod: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        grids: list[Grid] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One-way update of reference tokens alone; returns (new refs, their keys, their values)."""
        mods = mod.chunk(6, dim=-1)
        q, k, v = self.image.qkv(refs, mods)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.image.finish(refs, attended, mods, grids), k, v


class MMDiT(nn.Module):
    """Predicts per-token outputs for video tokens from noisy video tokens, timestep, text and references."""

    def __init__(self, config: MMDiTConfig) -> None:
        super().__init__()
        self.config = config
        self.checkpointed_blocks: set[int] = set()  # blocks recomputed in backward (gradient checkpointing)
        dim = config.dim
        self.patch_in = nn.Linear(config.in_dim, dim)
        self.text_in = nn.Linear(config.text_dim, dim)
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.text_pool = nn.Linear(config.text_dim, dim)
        self.text_attention = None
        if config.text_attention_pool:
            if dim % config.text_attention_pool:
                raise ValueError(f"dim {dim} is not divisible by text_attention_pool {config.text_attention_pool}")
            self.text_query = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)
            self.text_attention = nn.MultiheadAttention(
                dim, config.text_attention_pool, kdim=config.text_dim, vdim=config.text_dim, batch_first=True
            )
        self.ref_type = nn.Parameter(torch.zeros(config.max_refs, dim)) if config.ref_type_embedding else None
        self.blocks = nn.ModuleList(
            JointBlock(dim, config.heads, config.mlp_ratio, config.text_mlp_ratio, config.local_mixing)
            for _ in range(config.depth)
        )
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.out_modulation = nn.Linear(dim, 2 * dim)
        self.patch_out = nn.Linear(dim, config.out_dim)
        for layer in (self.out_modulation, self.patch_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.skip_projection = None
        if config.skip_projection:
            self.skip_projection = nn.Linear(config.in_dim, config.out_dim, bias=False)
            nn.init.zeros_(self.skip_projection.weight)  # starts as no change to the skip connection

    @property
    def head_dim(self) -> int:
        return self.config.dim // self.config.heads

    # -- pieces -------------------------------------------------------------------------------
    def _video_condition(self, timestep: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Conditioning from timestep embedding + pooled text: (B, D) for timesteps (B,), (B, G, D) for (B, G)."""
        weights = text_mask.float().unsqueeze(-1)
        pooled = self.text_pool((text * weights).sum(1) / weights.sum(1).clamp(min=1.0))
        if self.text_attention is not None:
            query = self.text_query.expand(text.shape[0], -1, -1)
            ignore = ~text_mask & text_mask.any(1, keepdim=True)  # a row without tokens attends to its padding
            attended, _ = self.text_attention(query, text, text, key_padding_mask=ignore, need_weights=False)
            pooled = pooled + attended[:, 0]
        embedded = self.time_mlp(timestep_embedding(timestep.flatten(), self.config.dim))
        if timestep.ndim == 2:
            return F.silu(embedded.unflatten(0, timestep.shape) + pooled[:, None])
        return F.silu(embedded + pooled)

    @staticmethod
    def _per_row(condition: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """Video conditioning as (B, 1, D) (one timestep) or (B, G, D) (one per temporal token row)."""
        if condition.ndim == 2:
            return condition[:, None]
        if condition.shape[1] != layout.grid[0]:
            raise ValueError(f"{condition.shape[1]} timesteps per video for {layout.grid[0]} temporal token rows")
        return condition

    @staticmethod
    def _to_tokens(per_row: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """(B, 1 or G, X) modulation -> (B, Nv, X): each temporal token row's value on its h*w tokens."""
        if per_row.shape[1] == 1:
            return per_row.expand(-1, layout.video_tokens, -1)
        return per_row.repeat_interleave(layout.grid[1] * layout.grid[2], dim=1)

    def _reference_condition(self, device: torch.device) -> torch.Tensor:
        """(1, D) conditioning of reference tokens: timestep 0 and no text, so they stay 'clean'."""
        return F.silu(self.time_mlp(timestep_embedding(torch.zeros(1, device=device), self.config.dim)))

    def _ref_tokens(self, ref_patches: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        tokens = self.patch_in(ref_patches)
        if self.ref_type is not None and layout.num_refs:
            if layout.num_refs > self.config.max_refs:
                raise ValueError(f"{layout.num_refs} references given, the model takes at most {self.config.max_refs}")
            per_ref = layout.ref_grid[0] * layout.ref_grid[1]
            tokens = tokens + self.ref_type[: layout.num_refs].repeat_interleave(per_ref, dim=0)
        return tokens

    def positions(self, layout: TokenLayout, ref_offset: tuple[float, float, float]) -> tuple[torch.Tensor, ...]:
        """RoPE positions of video tokens and reference tokens (each reference in its own temporal slot)."""
        video = grid_positions(*layout.grid)
        refs = [
            grid_positions(
                1, *layout.ref_grid, offset=(layout.grid[0] + k + ref_offset[0], ref_offset[1], ref_offset[2])
            )
            for k in range(layout.num_refs)
        ]
        return video, torch.cat(refs) if refs else torch.zeros(0, 3)

    def _rope(self, positions: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = rope_angles(positions.to(device), self.head_dim, self.config.rope_theta)
        return cos[None], sin[None]

    @staticmethod
    def _attention_mask(
        text_mask: torch.Tensor, n_video: int, ref_key_mask: torch.Tensor, one_way: bool
    ) -> torch.Tensor:
        """(B, 1, Nq, Nk) boolean mask over queries [text | video | refs] and keys [text | video | refs]."""
        b, n_text = text_mask.shape
        n_ref = ref_key_mask.shape[1]
        keys = torch.cat([text_mask, text_mask.new_ones(b, n_video), ref_key_mask], dim=1)  # (B, Nk)
        mask = keys[:, None, :].expand(b, n_text + n_video + n_ref, -1).clone()
        if n_ref and one_way:
            mask[:, n_text + n_video :, : n_text + n_video] = False
        if n_ref:  # padded references still attend to themselves so no row is empty
            idx = torch.arange(n_text + n_video, n_text + n_video + n_ref, device=mask.device)
            mask[:, idx, idx] = True
        return mask[:, None]

    # -- forward passes -----------------------------------------------------------------------
    def forward(
        self,
        video_patches: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        layout: TokenLayout,
        ref_patches: torch.Tensor | None = None,
        ref_key_mask: torch.Tensor | None = None,
        ref_offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
        ref_cache: ReferenceCache | None = None,
    ) -> torch.Tensor:
        """Video patches (B, Nv, in_dim) at ``timestep`` (B,) or (B, temporal token rows) -> outputs (B, Nv, out_dim).

        References come either as patches (B, Nr, in_dim) with ``ref_key_mask`` (B, Nr), run with the
        video, or as a :class:`ReferenceCache` built by :meth:`reference_cache` (one-way only).
        """
        b, n_video = video_patches.shape[:2]
        video_c = self._per_row(self._video_condition(timestep, text, text_mask), layout)  # (B, 1 or G, D)
        text_c = video_c.mean(1, keepdim=True)  # text tokens: one condition (the average over frame groups)
        ref_c = self._reference_condition(video_patches.device)
        video = self.patch_in(video_patches)
        text_tokens = self.text_in(text)
        video_pos, ref_pos = self.positions(layout, ref_offset)
        device = video.device
        use_refs = ref_patches is not None and layout.num_refs > 0 and ref_cache is None
        if use_refs:
            refs = self._ref_tokens(ref_patches, layout)
            image = torch.cat([video, refs], 1)
            rope = self._rope(torch.cat([video_pos, ref_pos]), device)
            key_mask = ref_key_mask if ref_key_mask is not None else refs.new_ones(b, refs.shape[1], dtype=torch.bool)
        else:
            image = video
            rope = self._rope(video_pos, device)
            key_mask = ref_cache.key_mask if ref_cache is not None else text_mask.new_zeros(b, 0)
        mask = self._attention_mask(text_mask, n_video, key_mask, self.config.one_way_refs)
        if ref_cache is not None:
            mask = mask[:, :, : text.shape[1] + n_video]  # queries: text + video only; keys keep the refs
        n_ref_tokens = image.shape[1] - n_video
        grids = layout.grids(with_refs=use_refs)
        mods = [block.image.modulation for block in self.blocks]
        for i, block in enumerate(self.blocks):
            image_mod = self._to_tokens(mods[i](video_c), layout)
            if n_ref_tokens:
                image_mod = torch.cat([image_mod, mods[i](ref_c)[:, None].expand(b, n_ref_tokens, -1)], 1)
            text_mod = block.text.modulation(text_c)
            extra = (ref_cache.keys[i], ref_cache.values[i]) if ref_cache is not None else None
            if i in self.checkpointed_blocks and torch.is_grad_enabled():
                image, text_tokens = checkpoint(
                    block, image, text_tokens, image_mod, text_mod, rope, mask, extra, grids, use_reentrant=False
                )
            else:
                image, text_tokens = block(image, text_tokens, image_mod, text_mod, rope, mask, extra, grids)
        shift, scale = self._to_tokens(self.out_modulation(video_c), layout).chunk(2, dim=-1)
        return self.patch_out(modulate(self.norm_out(image[:, :n_video]), shift, scale))

    def reference_cache(
        self,
        ref_patches: torch.Tensor,
        layout: TokenLayout,
        ref_key_mask: torch.Tensor | None = None,
        ref_offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> ReferenceCache:
        """Run the reference tokens alone through every block and keep their keys/values.

        Valid only with one-way reference attention (then references never see text or video, so
        the result is the same at every denoising step and for every guidance branch).
        """
        if not self.config.one_way_refs:
            raise ValueError("reference K/V caching needs one_way_refs=True (two-way refs depend on the video)")
        b = ref_patches.shape[0]
        refs = self._ref_tokens(ref_patches, layout)
        if ref_key_mask is None:
            ref_key_mask = torch.ones(b, refs.shape[1], dtype=torch.bool, device=refs.device)
        _, ref_pos = self.positions(layout, ref_offset)
        rope = self._rope(ref_pos, refs.device)
        n = refs.shape[1]
        mask = ref_key_mask[:, None, :].expand(b, n, n).clone()
        mask[:, torch.arange(n), torch.arange(n)] = True
        mask = mask[:, None]
        ref_c = self._reference_condition(refs.device)
        keys, values = [], []
        for block in self.blocks:
            mod = block.image.modulation(ref_c)[:, None].expand(b, n, -1)
            refs, k, v = block.reference_only(refs, mod, rope, mask, layout.grids(with_video=False))
            keys.append(k)
            values.append(v)
        return ReferenceCache(keys, values, ref_key_mask)
