"""Procedural textured scenes (backgrounds) for LibraWorld clips.

Each scene kind has a caption phrase and a generator that draws a float RGB texture in [0, 1]
from a numpy Generator. Textures are muted (low saturation) so that the saturated subjects stay
the salient objects, and are drawn larger than the frame so the camera can pan across them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Texture = np.ndarray  # (H, W, 3) float32 in [0, 1]


def _value_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a coarse random grid upsampled bilinearly to (height, width)."""
    gh, gw = height // cell + 2, width // cell + 2
    grid = rng.random((gh, gw), dtype=np.float32)
    ys = np.arange(height, dtype=np.float32) / cell
    xs = np.arange(width, dtype=np.float32) / cell
    y0, x0 = ys.astype(np.int32), xs.astype(np.int32)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _tint(base: tuple[float, float, float], shade: np.ndarray) -> Texture:
    return np.asarray(base, np.float32)[None, None, :] * shade[..., None]


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: float = 0.08) -> tuple[float, ...]:
    return tuple(float(np.clip(c / 255 + rng.uniform(-amount, amount), 0, 1)) for c in rgb)


def _brick_wall(rng: np.random.Generator, h: int, w: int) -> Texture:
    brick_h, brick_w = int(rng.integers(6, 9)), int(rng.integers(12, 17))
    ys, xs = np.mgrid[0:h, 0:w]
    row = ys // brick_h
    offset = (row % 2) * (brick_w // 2)
    mortar = ((ys % brick_h) == 0) | (((xs + offset) % brick_w) == 0)
    brick_id = row * 1000 + (xs + offset) // brick_w
    brick_shade = 0.82 + 0.18 * np.sin(brick_id * 12.9898) ** 2
    shade = brick_shade * (0.9 + 0.1 * _value_noise(rng, h, w, 3))
    tex = _tint(_jitter(rng, (150, 82, 64)), shade)
    tex[mortar] = np.asarray(_jitter(rng, (190, 186, 176), 0.04), np.float32)
    return tex


def _grass_field(rng: np.random.Generator, h: int, w: int) -> Texture:
    blades = _value_noise(rng, h, w, 2) * 0.5 + _value_noise(rng, h, w, 7) * 0.5
    streaks = 0.85 + 0.15 * np.sin(np.arange(w, dtype=np.float32)[None, :] * rng.uniform(1.5, 2.5))
    return _tint(_jitter(rng, (96, 138, 80)), (0.7 + 0.45 * blades) * streaks)


def _checkered_floor(rng: np.random.Generator, h: int, w: int) -> Texture:
    period = int(rng.integers(6, 11))
    ys, xs = np.mgrid[0:h, 0:w]
    checker = ((ys // period + xs // period) % 2).astype(np.float32)
    light, dark = _jitter(rng, (200, 196, 186)), _jitter(rng, (96, 92, 100))
    tex = np.where(checker[..., None] > 0, np.asarray(light, np.float32), np.asarray(dark, np.float32))
    return tex * (0.92 + 0.08 * _value_noise(rng, h, w, 8))[..., None]


def _wooden_planks(rng: np.random.Generator, h: int, w: int) -> Texture:
    plank = int(rng.integers(7, 11))
    ys, xs = np.mgrid[0:h, 0:w]
    grain = 0.5 + 0.5 * np.sin(xs * 0.35 + 3.0 * _value_noise(rng, h, w, 5) + (ys // plank) * 1.7)
    gaps = (ys % plank) == 0
    shade = 0.75 + 0.2 * grain
    shade = np.where(gaps, 0.45, shade)
    return _tint(_jitter(rng, (164, 118, 76)), shade)


def _cloudy_sky(rng: np.random.Generator, h: int, w: int) -> Texture:
    gradient = np.linspace(0.85, 1.05, h, dtype=np.float32)[:, None]
    sky = _tint(_jitter(rng, (120, 160, 205)), np.broadcast_to(gradient, (h, w)))
    clouds = np.clip(_value_noise(rng, h, w, 12) * 1.6 - 0.7, 0, 1)[..., None]
    return sky * (1 - clouds) + np.float32(0.93) * clouds


def _sandy_beach(rng: np.random.Generator, h: int, w: int) -> Texture:
    ys, _xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ripples = 0.5 + 0.5 * np.sin(ys * rng.uniform(0.6, 0.9) + 2.0 * _value_noise(rng, h, w, 10))
    grains = rng.random((h, w), dtype=np.float32)
    return _tint(_jitter(rng, (206, 184, 136)), 0.82 + 0.1 * ripples + 0.08 * grains)


def _stone_pavement(rng: np.random.Generator, h: int, w: int) -> Texture:
    tile = int(rng.integers(9, 14))
    ys, xs = np.mgrid[0:h, 0:w]
    jitter_rows = rng.integers(0, tile, size=h // tile + 2)
    xs_shift = xs + jitter_rows[ys // tile]
    tile_id = (ys // tile) * 997 + xs_shift // tile
    tone = 0.7 + 0.25 * (np.sin(tile_id * 78.233) ** 2)
    joints = ((ys % tile) == 0) | ((xs_shift % tile) == 0)
    shade = np.where(joints, 0.42, tone * (0.9 + 0.1 * _value_noise(rng, h, w, 4)))
    return _tint(_jitter(rng, (150, 150, 146)), shade)


def _snowy_ground(rng: np.random.Generator, h: int, w: int) -> Texture:
    drifts = _value_noise(rng, h, w, 9)
    sparkle = (rng.random((h, w)) > 0.985).astype(np.float32)
    return _tint(_jitter(rng, (222, 228, 236), 0.03), 0.86 + 0.1 * drifts + 0.06 * sparkle)


SCENES: dict[str, Callable[[np.random.Generator, int, int], Texture]] = {
    "a brick wall": _brick_wall,
    "a grass field": _grass_field,
    "a checkered floor": _checkered_floor,
    "wooden planks": _wooden_planks,
    "a cloudy sky": _cloudy_sky,
    "a sandy beach": _sandy_beach,
    "a stone pavement": _stone_pavement,
    "snowy ground": _snowy_ground,
}
SCENE_NAMES: tuple[str, ...] = tuple(SCENES)


def make_texture(scene: str, rng: np.random.Generator, height: int, width: int) -> Texture:
    """Draw a (height, width, 3) float32 texture of ``scene`` (one of :data:`SCENE_NAMES`)."""
    try:
        generator = SCENES[scene]
    except KeyError:
        raise ValueError(f"unknown scene {scene!r}; known: {', '.join(SCENE_NAMES)}") from None
    return np.clip(generator(rng, height, width), 0.0, 1.0).astype(np.float32)
