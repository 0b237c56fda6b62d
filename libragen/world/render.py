"""Render a :class:`ClipSpec` into frames, per-subject visible masks and boxes (no defects applied).

Compositing order: scene texture (panned) -> subjects in reference order (later ones in front)
-> optional occluder panel -> global lighting. Masks are the *visible* pixels of each subject
(coverage > 0.5 and not hidden by anything drawn in front); boxes are the full extent of the
subject in each frame whether or not it is hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from libragen.world.identity import identity
from libragen.world.scene import make_texture
from libragen.world.spec import DIRECTIONS, ClipSpec, Lighting, Pan
from libragen.world.sprite import render_subject

OCCLUDER_RGB = (0.30, 0.30, 0.33)


@dataclass
class RenderedClip:
    """Pixels and ground truth of one clip."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    masks: np.ndarray  # (S, T, H, W) bool, visible pixels of each subject
    boxes: np.ndarray  # (S, T, 4) float32, x0, y0, x1, y1 of the full subject; NaN when absent
    full_area: np.ndarray  # (S, T) float32, pixels each subject covers, hidden or not

    @property
    def visible_fraction(self) -> np.ndarray:
        """(S, T) share of each subject's pixels that are visible (0 when the subject is absent)."""
        visible = self.masks.sum(axis=(2, 3)).astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(self.full_area > 0, visible / self.full_area, 0.0)
        return np.clip(fraction, 0.0, 1.0).astype(np.float32)


def _panned_background(spec: ClipSpec) -> np.ndarray:
    """(T, H, W, 3) float32 scene frames, moving across a larger texture when the camera pans."""
    rng = np.random.default_rng(spec.texture_seed)
    pan: Pan | None = spec.pan
    travel = 0.0 if pan is None else pan.speed_px * (spec.frames - 1)
    pad = math.ceil(travel) + 2
    dx, dy = DIRECTIONS[pan.direction] if pan else (0.0, 0.0)
    texture = make_texture(spec.scene, rng, spec.height + (pad if dy else 0) + 1, spec.width + (pad if dx else 0) + 1)
    if pan is None:
        return np.broadcast_to(texture[: spec.height, : spec.width], (spec.frames, spec.height, spec.width, 3))
    out = np.empty((spec.frames, spec.height, spec.width, 3), np.float32)
    for t in range(spec.frames):
        offset = pan.speed_px * t
        # The view starts at the side it moves away from, so it always stays on the texture.
        ox = offset if dx > 0 else (pad - 1 - offset if dx < 0 else 0.0)
        oy = offset if dy > 0 else (pad - 1 - offset if dy < 0 else 0.0)
        x0, y0 = math.floor(ox), math.floor(oy)
        fx, fy = ox - x0, oy - y0
        window = texture[y0 : y0 + spec.height + 1, x0 : x0 + spec.width + 1]
        top = window[:-1, :-1] * (1 - fx) + window[:-1, 1:] * fx
        bottom = window[1:, :-1] * (1 - fx) + window[1:, 1:] * fx
        out[t] = top * (1 - fy) + bottom * fy
    return out


def _lighting_field(light: Lighting, height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (
        (xs / max(width - 1, 1) - 0.5) * math.cos(light.gradient_angle)
        + (ys / max(height - 1, 1) - 0.5) * math.sin(light.gradient_angle)
    ) * 2.0
    field = light.gain * (1.0 + light.gradient_strength * ramp)
    return field[..., None] * np.asarray(light.tint, np.float32)[None, None, :]


def _occluder_layer(spec: ClipSpec) -> tuple[np.ndarray, np.ndarray]:
    assert spec.occluder is not None
    x0, y0, x1, y1 = spec.occluder
    ys = np.arange(spec.height, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(spec.width, dtype=np.float32)[None, :] + 0.5
    alpha = ((xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)).astype(np.float32)
    stripes = 0.9 + 0.1 * np.sin(xs * 1.3)
    rgb = np.asarray(OCCLUDER_RGB, np.float32)[None, None, :] * stripes[..., None]
    return alpha, np.broadcast_to(rgb, (spec.height, spec.width, 3))


def render_spec(spec: ClipSpec, *, include_subjects: bool = True) -> RenderedClip:
    """Render ``spec`` (ignoring ``spec.defect``; see :mod:`libragen.world.defects`)."""
    frames = _panned_background(spec)
    subjects = spec.subjects if include_subjects else ()
    count, shape = len(subjects), (spec.frames, spec.height, spec.width)
    masks = np.zeros((count, *shape), bool)
    boxes = np.full((count, spec.frames, 4), np.nan, np.float32)
    full_area = np.zeros((count, spec.frames), np.float32)
    for k, subject in enumerate(subjects):
        cx, cy, radius, angle = subject.trajectory(spec.frames)
        alpha, rgb = render_subject(identity(subject.identity_id), cx, cy, radius, angle, spec.height, spec.width)
        frames = frames * (1 - alpha[..., None]) + rgb * alpha[..., None]
        covered = alpha > 0.5
        masks[:k] &= ~covered[None]
        masks[k] = covered
        full_area[k] = covered.sum(axis=(1, 2))
        boxes[k] = _mask_boxes(covered)
    if spec.occluder is not None:
        alpha, rgb = _occluder_layer(spec)
        frames = frames * (1 - alpha[None, ..., None]) + rgb[None] * alpha[None, ..., None]
        masks &= ~(alpha > 0.5)[None, None]
    frames = frames * _lighting_field(spec.lighting, spec.height, spec.width)[None]
    pixels = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return RenderedClip(frames=pixels, masks=masks, boxes=boxes, full_area=full_area)


def _mask_boxes(mask: np.ndarray) -> np.ndarray:
    """(T, 4) tight boxes x0, y0, x1, y1 (exclusive ends) of a (T, H, W) mask; NaN where empty."""
    boxes = np.full((mask.shape[0], 4), np.nan, np.float32)
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    for t in range(mask.shape[0]):
        ys, xs = np.flatnonzero(rows[t]), np.flatnonzero(cols[t])
        if len(ys) and len(xs):
            boxes[t] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes
