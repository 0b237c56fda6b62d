"""Draw the specs of a LibraWorld set: identity pool, clip contents and defect assignment.

Determinism: every random choice comes from a numpy Generator seeded by
``SeedSequence(seed, spawn_key=(split, purpose, index))``, so a clip's spec depends only on
(seed, split, index, config) — not on how many workers render it or in which order.

Cross-pair mining needs identities that recur: a set of ``n`` clips draws its subjects from a
pool of about ``n * mean_subjects / appearances_per_identity`` identities of its split, so each
identity appears in several clips with different scenes, poses and motions.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from libragen.world.config import WorldConfig
from libragen.world.identity import sample_identities
from libragen.world.scene import SCENE_NAMES
from libragen.world.spec import (
    DIRECTIONS,
    STYLES,
    ClipSpec,
    DefectSpec,
    Lighting,
    Pan,
    SubjectSpec,
)

SPLIT_CODES = {"train": 0, "heldout": 1}
_POOL, _DEFECTS, _CLIP, _DEFECT_PARAMS, _SECOND_SHOT = 0, 1, 2, 3, 4

TEXT_SNIPPETS = (
    "SUBSCRIBE",
    "LIVE NOW",
    "(c) studio",
    "HD 1080p",
    "breaking",
    "like+share",
    "ep. 12",
    "sample",
    "REPLAY",
    "news 24",
)


def _rng(seed: int, split: str, purpose: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SPLIT_CODES[split], purpose, index)))


def clip_id(seed: int, split: str, index: int) -> str:
    return f"lw-{split}-s{seed}-{index:06d}"


def _radius_range(count: int, scale: float) -> tuple[float, float]:
    low, high = {1: (10.0, 13.0), 2: (9.0, 11.5), 3: (8.0, 10.0), 4: (7.5, 9.0)}[count]
    return low * scale, high * scale


def _draw_subject(
    rng: np.random.Generator, identity_id: int, count: int, config: WorldConfig, still: bool = False
) -> SubjectSpec:
    scale, width, height, frames = config.scale, config.width, config.height, config.frames
    r_low, r_high = _radius_range(count, scale)
    radius = float(rng.uniform(r_low, r_high))
    scale_change = "none"
    scale_rate = 1.0
    if not still and rng.random() < config.scale_change_probability:
        scale_change = str(rng.choice(["grows", "shrinks"]))
        total = float(rng.uniform(1.25, 1.45))  # overall size ratio over the clip
        scale_rate = total ** (1 / (frames - 1)) if scale_change == "grows" else total ** (-1 / (frames - 1))
        if scale_change == "grows":
            radius /= math.sqrt(total)  # start smaller so the peak size stays in range
    max_radius = radius * max(1.0, scale_rate ** (frames - 1))
    if still:
        direction, speed, speed_px, style = "none", "still", 0.0, "glides"
    else:
        direction = str(rng.choice(["left", "right", "up", "down"]))
        speed = str(rng.choice(["slowly", "quickly"]))
        speed_px = float(rng.uniform(0.8, 1.3) if speed == "slowly" else rng.uniform(1.8, 2.5)) * scale
        style = str(rng.choice(STYLES))
    rotation = 0.0
    if style == "spins":
        rotation = float(rng.choice([-1, 1]) * rng.uniform(14.0, 24.0))
    wave_amplitude = float(rng.uniform(2.5, 4.5) * scale) if style in ("hops", "zigzags") else 0.0
    wave_period = float(rng.uniform(6.0, 9.0))

    # Place the start so the whole path keeps the subject inside the frame.
    dx, dy = DIRECTIONS[direction]
    margin = max_radius + 1.0
    along_x = (width - 2 * margin) if dx else None
    along_y = (height - 2 * margin - (wave_amplitude if style == "hops" else 0.0)) if dy else None
    travel = speed_px * (frames - 1)
    room = along_x if along_x is not None else along_y
    if room is not None and travel > room:
        speed_px = max(room, 0.0) / (frames - 1)
        travel = speed_px * (frames - 1)
    lateral_x = wave_amplitude if style == "zigzags" and dy else 0.0
    lateral_y = wave_amplitude if style == "zigzags" and dx else 0.0
    hop = wave_amplitude if style == "hops" else 0.0
    x_low, x_high = margin + lateral_x, width - margin - lateral_x
    y_low, y_high = margin + lateral_y + hop, height - margin - lateral_y
    if dx < 0:
        x_low += travel
    elif dx > 0:
        x_high -= travel
    if dy < 0:
        y_low += travel
    elif dy > 0:
        y_high -= travel
    start_x = float(rng.uniform(x_low, max(x_low, x_high)))
    start_y = float(rng.uniform(y_low, max(y_low, y_high)))
    return SubjectSpec(
        identity_id=int(identity_id),
        start_x=start_x,
        start_y=start_y,
        radius=radius,
        angle_deg=float(rng.uniform(-25.0, 25.0)),
        direction=direction,
        speed=speed,
        speed_px=speed_px,
        style=style,
        rotation_deg=rotation,
        scale_change=scale_change,
        scale_rate=scale_rate,
        wave_amplitude=wave_amplitude,
        wave_period=wave_period,
    )


def _too_close(a: SubjectSpec, b: SubjectSpec, frames: int) -> bool:
    ax, ay, ar, _ = a.trajectory(frames)
    bx, by, br, _ = b.trajectory(frames)
    distance = np.hypot(ax - bx, ay - by)
    return bool(np.any(distance < 0.75 * (ar + br)))


def _draw_subjects(
    rng: np.random.Generator, identity_ids: list[int], config: WorldConfig, still: bool = False
) -> tuple[SubjectSpec, ...]:
    """Subjects that never overlap much (heavy occlusion is a defect, not a clean clip)."""
    count = len(identity_ids)
    placed: list[SubjectSpec] = []
    for identity_id in identity_ids:
        candidate = _draw_subject(rng, identity_id, count, config, still)
        for _ in range(30):
            if not any(_too_close(candidate, other, config.frames) for other in placed):
                break
            candidate = _draw_subject(rng, identity_id, count, config, still)
        placed.append(candidate)
    return tuple(placed)


def _draw_lighting(rng: np.random.Generator) -> Lighting:
    return Lighting(
        gain=float(rng.uniform(0.82, 1.1)),
        gradient_angle=float(rng.uniform(0, 2 * np.pi)),
        gradient_strength=float(rng.uniform(0.0, 0.16)),
        tint=tuple(float(x) for x in rng.uniform(0.94, 1.06, size=3)),  # type: ignore[arg-type]
    )


def _draw_clip(
    rng: np.random.Generator,
    *,
    index: int,
    seed: int,
    split: str,
    identity_ids: list[int],
    config: WorldConfig,
    still: bool = False,
    exclude_scene: str | None = None,
) -> ClipSpec:
    scenes = [s for s in SCENE_NAMES if s != exclude_scene]
    scene = str(rng.choice(scenes))
    pan = None
    if not still and rng.random() < config.pan_probability:
        pan = Pan(
            direction=str(rng.choice(["left", "right", "up", "down"])),
            speed_px=float(rng.uniform(0.6, 1.4) * config.scale),
        )
    return ClipSpec(
        clip_id=clip_id(seed, split, index),
        index=index,
        split=split,
        seed=seed,
        width=config.width,
        height=config.height,
        frames=config.frames,
        fps=config.fps,
        scene=scene,
        texture_seed=int(rng.integers(0, 2**31 - 1)),
        lighting=_draw_lighting(rng),
        pan=pan,
        subjects=_draw_subjects(rng, identity_ids, config, still),
    )


def _assign_defects(rng: np.random.Generator, n: int, config: WorldConfig) -> dict[int, str]:
    """Spread the defect kinds evenly (round robin over a shuffled order) over random clips."""
    count = round(config.defect_rate * n)
    if count == 0:
        return {}
    indices = rng.choice(n, size=count, replace=False)
    kinds = list(config.defect_kinds)
    rng.shuffle(kinds)
    return {int(i): kinds[k % len(kinds)] for k, i in enumerate(sorted(indices.tolist()))}


def _occluder_for(subject: SubjectSpec, config: WorldConfig) -> tuple[float, float, float, float]:
    cx, cy, radius, _ = subject.trajectory(config.frames)
    reach = float(radius.max()) * 0.85
    return (
        float(max(0.0, cx.min() - reach)),
        float(max(0.0, cy.min() - reach)),
        float(min(config.width, cx.max() + reach)),
        float(min(config.height, cy.max() + reach)),
    )


def _apply_defect(
    spec: ClipSpec, kind: str, config: WorldConfig, source: ClipSpec | None, identity_ids: list[int]
) -> ClipSpec:
    rng = _rng(spec.seed, spec.split, _DEFECT_PARAMS, spec.index)
    params: dict[str, object] = {}
    second_shot = None
    if kind == "cut":
        params["cut_frame"] = int(rng.integers(config.frames // 4, 3 * config.frames // 4 + 1))
        second_shot = _draw_clip(
            _rng(spec.seed, spec.split, _SECOND_SHOT, spec.index),
            index=spec.index,
            seed=spec.seed,
            split=spec.split,
            identity_ids=identity_ids,
            config=config,
            exclude_scene=spec.scene,
        )
        params["second_scene"] = second_shot.scene
    elif kind == "static":
        spec = _draw_clip(
            rng,
            index=spec.index,
            seed=spec.seed,
            split=spec.split,
            identity_ids=identity_ids,
            config=config,
            still=True,
        )
    elif kind == "text_overlay":
        params["text"] = str(rng.choice(TEXT_SNIPPETS))
        params["placement"] = str(rng.choice(["subtitle", "watermark", "title"]))
    elif kind == "blur":
        params["sigma"] = float(rng.uniform(1.8, 2.8) * config.scale)
    elif kind == "low_bitrate":
        params["qp"] = int(rng.integers(46, 52))
    elif kind == "letterbox":
        params["orientation"] = str(rng.choice(["letterbox", "pillarbox"]))
        params["bar_px"] = round(rng.uniform(0.1, 0.17) * config.height)
    elif kind == "low_resolution":
        short = int(rng.choice([16, 20, 24]))
        params["width"], params["height"] = short, short
    elif kind == "too_short":
        params["frames"] = int(rng.integers(2, 5))
    elif kind == "near_duplicate":
        assert source is not None
        params["duplicate_of"] = source.clip_id
        params["brightness"] = float(rng.choice([-1, 1]) * rng.uniform(0.02, 0.05))
        params["shift_px"] = int(rng.integers(1, 3))
        params["crf"] = int(config.crf + rng.integers(3, 8))
    elif kind == "subject_too_small":
        tiny = tuple(
            replace(s, radius=float(rng.uniform(1.6, 2.6) * config.scale), scale_rate=1.0, scale_change="none")
            for s in spec.subjects
        )
        spec = replace(spec, subjects=tiny)
        params["radius_px"] = [round(s.radius, 2) for s in tiny]
    elif kind == "occluded":
        slow = replace(
            spec.subjects[0],
            speed="slowly",
            speed_px=min(spec.subjects[0].speed_px, 0.6 * config.scale),
            style="glides",
            rotation_deg=0.0,
        )
        spec = replace(spec, subjects=(slow, *spec.subjects[1:]))
        spec = replace(spec, occluder=_occluder_for(slow, config))
        params["occluder_box"] = [round(v, 2) for v in spec.occluder]  # type: ignore[union-attr]
        params["occluded_ref"] = 1
    elif kind == "truncated":
        params["keep_fraction"] = float(rng.uniform(0.3, 0.6))
    return replace(spec, defect=DefectSpec(kind=kind, params=params, second_shot=second_shot, source=source))


def plan_world(config: WorldConfig, n: int, seed: int = 0, split: str = "train") -> list[ClipSpec]:
    """Draw the specs of ``n`` clips (cheap; rendering is separate)."""
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    weights = np.asarray(config.subject_count_weights, dtype=np.float64)
    weights = weights / weights.sum()
    mean_subjects = float(np.dot(weights, np.arange(1, 5)))
    pool_size = max(4, math.ceil(n * mean_subjects / config.appearances_per_identity))
    pool = sample_identities(_rng(seed, split, _POOL), pool_size, split)
    defects = _assign_defects(_rng(seed, split, _DEFECTS), n, config)

    specs: list[ClipSpec] = []
    identities: list[list[int]] = []
    for index in range(n):
        rng = _rng(seed, split, _CLIP, index)
        count = int(rng.choice(4, p=weights)) + 1
        chosen = [int(i) for i in rng.choice(pool, size=min(count, len(pool)), replace=False)]
        identities.append(chosen)
        specs.append(_draw_clip(rng, index=index, seed=seed, split=split, identity_ids=chosen, config=config))

    clean = [i for i in range(n) if i not in defects] or list(range(n))
    source_rng = _rng(seed, split, _DEFECTS, 1)
    for index, kind in defects.items():
        source = None
        if kind == "near_duplicate":
            candidates = [i for i in clean if i != index] or [i for i in range(n) if i != index]
            if not candidates:  # a one-clip set cannot duplicate anything
                kind = "static"
            else:
                source = specs[int(source_rng.choice(candidates))].clean()
        specs[index] = _apply_defect(specs[index], kind, config, source, identities[index])
    return specs
