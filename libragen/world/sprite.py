"""Rasterise LibraWorld subjects: shape outline, shading and the identity glyph, for many frames at once.

Every shape family is star-convex around its centre, so a shape is a radius function r(phi) in the
subject's own rotated frame; a pixel is inside when its normalised radius is below r(phi). This
gives anti-aliased edges (coverage from the radial distance in pixels) and a shared code path for
all families, vectorised over (frames, height, width).
"""

from __future__ import annotations

import numpy as np

from libragen.world.identity import Identity

_GLYPH_HALF = 0.40  # half-width of the 4x4 glyph square, in units of the subject radius
_REACH = 1.45  # every outline lies within this many radii of the centre (square corners: 0.88 x sqrt 2)


def _polygon_radius(phi: np.ndarray, sides: int, rotation: float) -> np.ndarray:
    sector = 2 * np.pi / sides
    local = np.mod(phi - rotation, sector) - sector / 2
    return np.cos(np.pi / sides) / np.cos(local)


def shape_radius(shape: str, phi: np.ndarray) -> np.ndarray:
    """Boundary radius (in units of the subject radius) of ``shape`` at polar angle ``phi``."""
    cos, sin = np.abs(np.cos(phi)), np.abs(np.sin(phi))
    if shape == "round":
        return np.ones_like(phi)
    if shape == "square":
        return 0.88 / np.maximum(cos, sin)
    if shape == "triangular":
        return _polygon_radius(phi, 3, -np.pi / 2) * 1.12
    if shape == "diamond":
        return 1.0 / (cos + sin) * 1.05
    if shape == "hexagonal":
        return _polygon_radius(phi, 6, 0.0)
    if shape == "star-shaped":
        spikes = np.cos(5 * (phi + np.pi / 2))
        return 0.72 + 0.30 * spikes
    if shape == "cross-shaped":
        arm = 0.46
        return np.minimum(0.98 / np.maximum(cos, sin), arm / np.maximum(np.minimum(cos, sin), 1e-6))
    if shape == "oval":
        a, b = 1.0, 0.68
        return a * b / np.sqrt((b * np.cos(phi)) ** 2 + (a * np.sin(phi)) ** 2)
    raise ValueError(f"unknown shape family {shape!r}")


def render_subject(
    ident: Identity,
    cx: np.ndarray,
    cy: np.ndarray,
    radius: np.ndarray,
    angle: np.ndarray,
    height: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one subject over T frames.

    ``cx, cy, radius, angle`` have shape (T,): centre in pixels, radius in pixels, rotation in
    radians. Returns ``(alpha, rgb)`` with shapes (T, H, W) and (T, H, W, 3), floats in [0, 1];
    both are 0 outside the subject's outline. Only a window around the subject is rasterised
    (the same per-pixel arithmetic as a full-frame pass, so the result is identical, only faster
    on large frames).
    """
    count = len(cx)
    reach = _REACH * np.asarray(radius, np.float64) + 2.0  # no shape's outline or rim extends further
    win_w = min(width, int(np.ceil(2 * reach.max())) + 1)
    win_h = min(height, int(np.ceil(2 * reach.max())) + 1)
    left = np.clip(np.floor(np.asarray(cx, np.float64) - reach), 0, width - win_w).astype(np.int64)
    top = np.clip(np.floor(np.asarray(cy, np.float64) - reach), 0, height - win_h).astype(np.int64)
    xs = (left[:, None] + np.arange(win_w)[None, :]).astype(np.float32) + 0.5  # (T, win_w) pixel centres
    ys = (top[:, None] + np.arange(win_h)[None, :]).astype(np.float32) + 0.5
    dx = xs[:, None, :] - cx[:, None, None].astype(np.float32)
    dy = ys[:, :, None] - cy[:, None, None].astype(np.float32)
    cos_a = np.cos(angle)[:, None, None].astype(np.float32)
    sin_a = np.sin(angle)[:, None, None].astype(np.float32)
    rad = radius[:, None, None].astype(np.float32)
    u = (dx * cos_a + dy * sin_a) / rad  # subject-local coordinates, unit = radius
    v = (-dx * sin_a + dy * cos_a) / rad
    r = np.sqrt(u * u + v * v)
    boundary = shape_radius(ident.shape, np.arctan2(v, u))
    edge_px = (boundary - r) * rad  # signed distance to the outline, in pixels (approx.)
    alpha = np.clip(edge_px + 0.5, 0.0, 1.0)

    body = np.asarray(ident.body_rgb, np.float32) / 255.0
    accent = np.asarray(ident.accent_rgb, np.float32) / 255.0
    shade = 1.08 - 0.30 * np.clip(r, 0, 1.2) ** 2 - 0.10 * v  # soft light from above
    rgb = body[None, None, None, :] * shade[..., None]
    outline = np.clip(1.6 - edge_px, 0.0, 1.0)  # darker rim about one pixel wide
    rgb = rgb * (1.0 - 0.45 * outline[..., None])

    cell_u = np.floor((u + _GLYPH_HALF) / (2 * _GLYPH_HALF) * 4).astype(np.int32)
    cell_v = np.floor((v + _GLYPH_HALF) / (2 * _GLYPH_HALF) * 4).astype(np.int32)
    inside_glyph = (cell_u >= 0) & (cell_u < 4) & (cell_v >= 0) & (cell_v < 4)
    glyph = ident.glyph
    lit = np.zeros_like(inside_glyph)
    lit[inside_glyph] = glyph[cell_v[inside_glyph], cell_u[inside_glyph]]
    rgb = np.where(lit[..., None], accent[None, None, None, :], rgb)
    rgb = np.clip(rgb, 0.0, 1.0) * (alpha > 0)[..., None]

    full_alpha = np.zeros((count, height, width), np.float32)
    full_rgb = np.zeros((count, height, width, 3), np.float32)
    for t in range(count):
        rows, cols = slice(top[t], top[t] + win_h), slice(left[t], left[t] + win_w)
        full_alpha[t, rows, cols] = alpha[t]
        full_rgb[t, rows, cols] = rgb[t]
    return full_alpha, full_rgb


def render_portrait(ident: Identity, size: int = 64, background: float = 1.0) -> np.ndarray:
    """A canonical upright view of ``ident`` centred on a plain background, uint8 (size, size, 3)."""
    one = np.ones(1, np.float32)
    alpha, rgb = render_subject(ident, one * size / 2, one * size / 2, one * size * 0.42, one * 0.0, size, size)
    frame = background * (1 - alpha[0, ..., None]) + rgb[0] * alpha[0, ..., None]
    return (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
