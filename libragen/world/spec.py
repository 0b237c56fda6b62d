"""Clip specifications: everything needed to render one LibraWorld clip, as plain frozen data.

A :class:`ClipSpec` is drawn once (see :mod:`libragen.world.plan`) and then rendered; rendering
is a pure function of the spec, so a clip can be re-rendered (for a near-duplicate, a clean twin
in a test, a second shot after a cut) without any hidden state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "none": (0.0, 0.0),
}
STYLES: tuple[str, ...] = ("glides", "hops", "zigzags", "spins")
SCALE_CHANGES: tuple[str, ...] = ("none", "grows", "shrinks")


@dataclass(frozen=True)
class SubjectSpec:
    """One subject's identity, starting pose and motion within a clip (pixels, per frame)."""

    identity_id: int
    start_x: float
    start_y: float
    radius: float
    angle_deg: float
    direction: str  # key of DIRECTIONS
    speed: str  # "slowly" | "quickly" | "still"
    speed_px: float
    style: str  # one of STYLES
    rotation_deg: float  # per frame
    scale_change: str  # one of SCALE_CHANGES
    scale_rate: float  # radius multiplier per frame
    wave_amplitude: float  # hop height or zigzag amplitude, pixels
    wave_period: float  # frames per hop / zigzag cycle

    def trajectory(self, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-frame (cx, cy, radius, angle_rad) arrays of length ``frames``."""
        t = np.arange(frames, dtype=np.float64)
        dx, dy = DIRECTIONS[self.direction]
        cx = self.start_x + dx * self.speed_px * t
        cy = self.start_y + dy * self.speed_px * t
        phase = 2 * np.pi * t / self.wave_period
        if self.style == "hops":
            cy = cy - self.wave_amplitude * np.abs(np.sin(phase / 2))
        elif self.style == "zigzags":
            px, py = (0.0, 1.0) if dy == 0 else (1.0, 0.0)
            cx = cx + px * self.wave_amplitude * np.sin(phase)
            cy = cy + py * self.wave_amplitude * np.sin(phase)
        radius = self.radius * self.scale_rate**t
        angle = np.deg2rad(self.angle_deg + self.rotation_deg * t)
        return cx, cy, radius, angle


@dataclass(frozen=True)
class Lighting:
    """Global light of a clip: gain, a linear gradient across the frame, and a colour tint."""

    gain: float = 1.0
    gradient_angle: float = 0.0
    gradient_strength: float = 0.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Pan:
    """Camera pan: the view moves ``direction`` at ``speed_px`` per frame over the scene texture."""

    direction: str
    speed_px: float


@dataclass(frozen=True)
class DefectSpec:
    """An injected defect: its kind and kind-specific parameters (JSON-able except ``source``)."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    second_shot: ClipSpec | None = None  # "cut": the shot after the cut
    source: ClipSpec | None = None  # "near_duplicate": the clip being duplicated


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip."""

    clip_id: str
    index: int
    split: str
    seed: int
    width: int
    height: int
    frames: int
    fps: float
    scene: str
    texture_seed: int
    lighting: Lighting
    pan: Pan | None
    subjects: tuple[SubjectSpec, ...]
    occluder: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in pixels
    defect: DefectSpec | None = None

    def clean(self) -> ClipSpec:
        """This clip without its defect (the 'clean twin' a test compares against)."""
        return replace(self, defect=None, occluder=None)
