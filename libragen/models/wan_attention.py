"""Reference injection inside diffusers' Wan transformer: RoPE slots and attention processors.

diffusers' ``WanTransformer3DModel`` derives RoPE positions from the latent shape and calls its
self-attention without a mask. LibraGen's references need their own RoPE slot (moved by an offset
at sampling time, for Consis-DPO) and one-way attention whose keys/values can be reused across
denoising steps. We swap the two pieces the model exposes for this — its ``rope`` module and its
attention processors — and keep diffusers' weights, blocks and forward untouched.

A :class:`ReferenceState` shared by the swapped pieces says what the current forward pass holds:

* ``off``      — no references: the stock processors and RoPE run, bit-identical to diffusers.
* ``refs``     — the input is only the reference frames (one per reference, timestep 0). They attend
  to each other (padding masked out) and never to text; every block records its reference K/V.
* ``video``    — the input is only the video; every block's self-attention appends the recorded
  reference K/V as extra keys. Together with ``refs`` this is exactly one-way joint attention,
  without an (L × L) mask, and the ``refs`` pass can be cached across steps and CFG branches.
* ``joint``    — video frames then reference frames in one sequence (two-way references, Phantom
  style) with per-token timesteps; only padded references are masked out as keys.

References sit after the video on the time axis: reference k takes temporal slot
``video_frames + k + offset_t`` and spatial positions shifted by ``(offset_h, offset_w)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.transformers.transformer_wan import (
    WanAttnProcessor,
    WanRotaryPosEmbed,
    WanTransformer3DModel,
    _get_qkv_projections,
)
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from libragen.models.wan_recompute import CheapRecompute

Mode = Literal["off", "refs", "video", "joint"]


@dataclass
class ReferenceState:
    """What the current forward pass of one Wan transformer holds (see the module docstring)."""

    mode: Mode = "off"
    video_frames: int = 0  # latent frames of the video the references belong to (sets their RoPE slot)
    ref_frames: int = 0  # reference frames in the current input (refs / joint modes)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ref_key_mask: torch.Tensor | None = None  # (B, N_ref_tokens) True for real references; None = all real
    keys: dict[int, torch.Tensor] = field(default_factory=dict)  # block index -> (B, N_ref, heads, head_dim)
    values: dict[int, torch.Tensor] = field(default_factory=dict)

    @contextlib.contextmanager
    def use(self, **changes: object) -> Iterator[ReferenceState]:
        """Set fields for one forward pass, restoring them afterwards (also on error)."""
        saved = {name: getattr(self, name) for name in changes}
        for name, value in changes.items():
            setattr(self, name, value)
        try:
            yield self
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def fields(self) -> dict[str, object]:
        """The current settings (the K/V dicts by reference: each ``refs`` pass gets fresh ones)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class ReferenceRotaryEmbed(nn.Module):
    """Wan's 3D RoPE with reference frames moved to their own (offset) slot."""

    def __init__(self, stock: WanRotaryPosEmbed, state: ReferenceState, theta: float = 10000.0) -> None:
        super().__init__()
        self.stock = stock
        self.state = state
        self.theta = theta

    def _axis(self, dim: int, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return get_1d_rotary_pos_embed(
            dim, positions, self.theta, use_real=True, repeat_interleave_real=True, freqs_dtype=torch.float64
        )

    def _grid(self, t_pos: torch.Tensor, h_pos: torch.Tensor, w_pos: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """cos, sin (L, head_dim) of a (t, h, w) grid of float positions, in Wan's (t, h, w) token order."""
        dims = (self.stock.t_dim, self.stock.h_dim, self.stock.w_dim)
        parts = [self._axis(dim, pos) for dim, pos in zip(dims, (t_pos, h_pos, w_pos), strict=True)]
        nt, nh, nw = len(t_pos), len(h_pos), len(w_pos)
        out = []
        for which in (0, 1):  # cos, sin
            t_part, h_part, w_part = (p[which] for p in parts)
            grid = torch.cat(
                [
                    t_part.view(nt, 1, 1, -1).expand(nt, nh, nw, -1),
                    h_part.view(1, nh, 1, -1).expand(nt, nh, nw, -1),
                    w_part.view(1, 1, nw, -1).expand(nt, nh, nw, -1),
                ],
                dim=-1,
            )
            out.append(grid.reshape(nt * nh * nw, -1))
        return tuple(out)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.state
        if state.mode in ("off", "video"):
            return self.stock(hidden_states)
        _, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.stock.patch_size
        if p_t != 1:
            raise ValueError("reference frames need a temporal patch size of 1 (all Wan2.1/2.2 models)")
        n_refs = state.ref_frames
        n_video = frames - n_refs
        device = self.stock.freqs_cos.device
        off_t, off_h, off_w = state.offset
        rows = torch.arange(height // p_h, dtype=torch.float64, device=device)
        cols = torch.arange(width // p_w, dtype=torch.float64, device=device)
        slots = state.video_frames + torch.arange(n_refs, dtype=torch.float64, device=device) + off_t
        ref_cos, ref_sin = self._grid(slots, rows + off_h, cols + off_w)
        if n_video:
            video_cos, video_sin = (x[0, :, 0] for x in self.stock(hidden_states[:, :, :n_video]))
            ref_cos, ref_sin = torch.cat([video_cos, ref_cos]), torch.cat([video_sin, ref_sin])
        return ref_cos[None, :, None], ref_sin[None, :, None]


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's interleaved rotary embedding (same arithmetic as diffusers' Wan processor)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class ReferenceSelfAttention:
    """Self-attention processor of one block: records or appends reference K/V by the shared state."""

    def __init__(self, block_index: int, state: ReferenceState, recompute: CheapRecompute | None = None) -> None:
        self.block_index = block_index
        self.state = state
        self.recompute = recompute
        self.stock = WanAttnProcessor()

    def _rotated(self, attn: nn.Module, projected: torch.Tensor, norm: nn.Module, rotary_emb, extra=None):
        """Normalise, split heads and rotate (then append ``extra`` keys); registered for recomputation."""

        def make(source: torch.Tensor) -> torch.Tensor:
            out = norm(source).unflatten(2, (attn.heads, -1))
            if rotary_emb is not None:
                out = _apply_rope(out, *rotary_emb)
            return out if extra is None else torch.cat([out, extra.to(out.dtype)], 1)

        out = make(projected)
        if self.recompute is not None:
            self.recompute.register(out, make, projected)
        return out

    def _attend(self, attn: nn.Module, query, key, value, mask) -> torch.Tensor:
        out = dispatch_attention_fn(query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False)
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        state = self.state
        if state.mode == "off":
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        if state.mode == "joint":
            mask = None
            if state.ref_key_mask is not None:
                n_video = hidden_states.shape[1] - state.ref_key_mask.shape[1]
                keys = torch.cat([state.ref_key_mask.new_ones(len(state.ref_key_mask), n_video), state.ref_key_mask], 1)
                mask = keys[:, None, None, :]
            return self.stock(attn, hidden_states, None, mask, rotary_emb)
        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        value = value.unflatten(2, (attn.heads, -1))
        query = self._rotated(attn, query, attn.norm_q, rotary_emb)
        if state.mode == "refs":
            key = self._rotated(attn, key, attn.norm_k, rotary_emb)
            state.keys[self.block_index], state.values[self.block_index] = key, value
            mask = None
            if state.ref_key_mask is not None:  # padded references: masked as keys, each still sees itself
                n = key.shape[1]
                eye = torch.eye(n, dtype=torch.bool, device=key.device)
                mask = (state.ref_key_mask[:, None, :] | eye)[:, None]
            return self._attend(attn, query, key, value, mask)
        ref_key, ref_value = state.keys[self.block_index], state.values[self.block_index]
        mask = None
        if state.ref_key_mask is not None:
            own = state.ref_key_mask.new_ones(len(state.ref_key_mask), key.shape[1])
            mask = torch.cat([own, state.ref_key_mask], 1)[:, None, None, :]
        key = self._rotated(attn, key, attn.norm_k, rotary_emb, extra=ref_key)
        value = torch.cat([value, ref_value.to(value.dtype)], 1)
        return self._attend(attn, query, key, value, mask)


class ReferenceCrossAttention:
    """Text cross-attention processor: one-way references (the ``refs`` pass) do not read the text."""

    def __init__(self, state: ReferenceState) -> None:
        self.state = state
        self.stock = WanAttnProcessor()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if self.state.mode == "refs":
            return torch.zeros_like(hidden_states)
        return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)


def install_reference_injection(
    transformer: WanTransformer3DModel, recompute: CheapRecompute | None = None
) -> ReferenceState:
    """Swap ``transformer``'s RoPE and attention processors for reference-aware ones; returns their state.

    With ``recompute``, self-attention registers its rotated queries and keys for recomputation in backward.
    """
    state = ReferenceState()
    if not isinstance(transformer.rope, ReferenceRotaryEmbed):
        transformer.rope = ReferenceRotaryEmbed(transformer.rope, state)
    else:
        transformer.rope.state = state
    for index, block in enumerate(transformer.blocks):
        block.attn1.set_processor(ReferenceSelfAttention(index, state, recompute))
        block.attn2.set_processor(ReferenceCrossAttention(state))
    return state


#: Low-rank matmuls (a LoRA's B projection) are cheap enough to recompute however wide their output.
RECOMPUTE_MAX_INNER = 64
_ATTENTION_OPS = {
    name
    for name in (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
    )
    if hasattr(torch.ops.aten, name)
}


def _keep_matmuls(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    """Selective recomputation: keep the outputs of full-rank matmuls and attention, recompute the rest."""
    name = getattr(op, "__name__", "").split(".")[0]
    if name in _ATTENTION_OPS:
        return CheckpointPolicy.MUST_SAVE
    if name in ("mm", "addmm", "bmm"):
        left = args[1] if name == "addmm" else args[0]
        return CheckpointPolicy.MUST_SAVE if left.shape[-1] > RECOMPUTE_MAX_INNER else CheckpointPolicy.PREFER_RECOMPUTE
    return CheckpointPolicy.PREFER_RECOMPUTE


def state_aware_checkpointing(
    state: ReferenceState,
    blocks: list[nn.Module] | None = None,
    selective: bool = False,
    recompute: CheapRecompute | None = None,
) -> Callable[..., torch.Tensor]:
    """A gradient-checkpointing function that recomputes each block under the state it first ran with.

    diffusers recomputes blocks during backward, when the shared state already describes a later
    pass; snapshotting it per call keeps the recomputation identical to the original forward.
    Only ``blocks`` (default: all) are checkpointed; the others keep their activations. ``recompute``
    registers nothing in checkpointed blocks (it would hold sources autograd no longer keeps).
    """
    chosen = None if blocks is None else {id(block) for block in blocks}
    selective_contexts = functools.partial(create_selective_checkpoint_contexts, _keep_matmuls)

    def run_checkpointed(block: nn.Module, *args: torch.Tensor) -> torch.Tensor:
        if chosen is not None and id(block) not in chosen:
            return block(*args)
        fields = state.fields()

        def replay(*inputs: torch.Tensor) -> torch.Tensor:
            with state.use(**fields):
                return block(*inputs)

        with recompute.paused() if recompute is not None else contextlib.nullcontext():
            if selective:
                return checkpoint(replay, *args, use_reentrant=False, context_fn=selective_contexts)
            return checkpoint(replay, *args, use_reentrant=False)

    return run_checkpointed
