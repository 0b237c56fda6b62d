"""3D rotary position embedding (time, height, width) with real-valued, shiftable positions.

Positions are floats so a reference's slot can be moved by any offset at sampling time (Consis-DPO
shifts reference positions to make identity drift). Text tokens take position (0, 0, 0), which is
the identity rotation: text carries no position, as in SD3's MM-DiT.
"""

from __future__ import annotations

import torch


def axis_split(head_dim: int) -> tuple[int, int, int]:
    """Rotary channels per axis (time, height, width): each even, height == width, summing to ``head_dim``."""
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for rotary embedding, got {head_dim}")
    spatial = 2 * ((head_dim // 3) // 2)
    time = head_dim - 2 * spatial
    return time, spatial, spatial


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (..., N, head_dim // 2) for positions (..., N, 3)."""
    parts = []
    for axis, width in enumerate(axis_split(head_dim)):
        if width == 0:
            continue
        freqs = theta ** (-torch.arange(0, width, 2, dtype=torch.float32, device=positions.device) / width)
        parts.append(positions[..., axis : axis + 1].float() * freqs)
    angles = torch.cat(parts, dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of x (B, heads, N, head_dim) by angles (B or 1, N, head_dim//2)."""
    cos, sin = cos.unsqueeze(1).to(x.dtype), sin.unsqueeze(1).to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return rotated.flatten(-2)


def grid_positions(t: int, h: int, w: int, offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """(t*h*w, 3) positions of a token grid in (time, row, column) order, plus ``offset``."""
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    grid = torch.stack([tt, hh, ww], dim=-1).reshape(-1, 3).float()
    return grid + torch.tensor(offset, dtype=torch.float32)
