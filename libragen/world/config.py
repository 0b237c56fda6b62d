"""Configuration of the LibraWorld generator (YAML, validated by pydantic).

Default size — 16 frames of 64x64 at 8 fps (2 s):
* 64 px is the smallest size at which a subject's 4x4 identity glyph (cells of 3-4 px on a body of
  20-26 px) survives H.264's 4:2:0 chroma subsampling and quantisation, so identity stays
  recoverable from the video; 32 px frames lose it.
* 16 frames at 8 fps give every motion (hop period, zigzag, spin) at least one full cycle and a
  travel of 12-38 px, which optical flow resolves well above the dynamic-degree threshold.
* A 64x64x16 clip is 196k values: cheap enough to render at tens of clips per second per core and
  for CPU-trained backbones (stages may decode at 32 px / 8 frames through ``read_video``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from libragen.core.config import StrictModel

DefectKind = Literal[
    "cut",
    "static",
    "text_overlay",
    "blur",
    "low_bitrate",
    "letterbox",
    "low_resolution",
    "too_short",
    "near_duplicate",
    "subject_too_small",
    "occluded",
    "truncated",
    "zero_bytes",
    "not_video",
]
DEFECT_KINDS: tuple[str, ...] = DefectKind.__args__  # type: ignore[attr-defined]

#: Defects that make the file itself unreadable.
FILE_DEFECTS: frozenset[str] = frozenset({"truncated", "zero_bytes", "not_video"})


class WorldConfig(StrictModel):
    """Everything that shapes a LibraWorld set besides ``n``, ``seed`` and ``split``."""

    width: int = Field(64, ge=32, le=2048, description="frame width in pixels (even)")
    height: int = Field(64, ge=32, le=2048, description="frame height in pixels (even)")
    frames: int = Field(16, ge=8, le=256, description="frames per clip")
    fps: float = Field(8.0, gt=0, le=120, description="frames per second of the written mp4")
    subject_count_weights: tuple[float, float, float, float] = Field(
        (0.45, 0.30, 0.15, 0.10), description="relative frequency of clips with 1, 2, 3, 4 subjects"
    )
    appearances_per_identity: float = Field(
        4.0, ge=1.0, description="mean number of clips each identity appears in (cross-pair mining)"
    )
    pan_probability: float = Field(0.3, ge=0.0, le=1.0, description="share of clips with a camera pan")
    scale_change_probability: float = Field(0.2, ge=0.0, le=1.0, description="share of subjects that grow/shrink")
    crf: int = Field(18, ge=0, le=51, description="H.264 constant quality of clean clips")
    defect_rate: float = Field(0.0, ge=0.0, le=1.0, description="share of clips with one injected defect")
    defect_kinds: tuple[DefectKind, ...] = Field(
        DEFECT_KINDS, min_length=1, description="defect kinds to inject, spread evenly over defective clips"
    )

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even (H.264 yuv420p)")
        return value

    @field_validator("subject_count_weights")
    @classmethod
    def _weights(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(w < 0 for w in value) or sum(value) <= 0:
            raise ValueError("weights must be non-negative and not all zero")
        return value

    @model_validator(mode="after")
    def _unique_kinds(self) -> WorldConfig:
        if len(set(self.defect_kinds)) != len(self.defect_kinds):
            raise ValueError("defect_kinds has repeated entries")
        return self

    @property
    def scale(self) -> float:
        """Linear size relative to the 64 px reference all pixel quantities are tuned for."""
        return min(self.width, self.height) / 64.0
