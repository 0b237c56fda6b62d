"""Configuration of ``libragen pairs build`` (YAML, validated by pydantic; see configs/pairs.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from libragen.core.config import StrictModel

PairMode = Literal["in", "cross", "both"]
MAX_REFS_LIMIT = 4


class PairsConfig(StrictModel):
    """Everything that shapes a pairs build besides the input manifest and output folder."""

    mode: PairMode = Field("both", description="which samples to build: in-pair, cross-pair or both")
    max_refs: int = Field(
        4, ge=1, le=MAX_REFS_LIMIT, description="references per sample (subjects beyond are untagged)"
    )
    ref_size: int = Field(64, ge=16, le=1024, description="side of the prepared reference images (pixels)")
    margin: float = Field(0.1, ge=0.0, le=1.0, description="crop margin around the subject box, share of its size")
    seed: int = Field(0, description="seed of frame choice and augmentation (per clip, order independent)")

    # Which frames count as a usable view of a subject (from its mask, never from ground truth).
    min_area_px: int = Field(24, ge=1, description="smallest visible subject area (pixels) that is a view")
    min_visible_ratio: float = Field(
        0.9, gt=0.0, le=1.0, description="a view shows at least this share of the area the subject's size trend expects"
    )

    # In-pair: frame choice and augmentation.
    min_frame_gap: float = Field(
        0.25, ge=0.0, le=1.0, description="in-pair reference frame at least this share of the clip after frame 0"
    )
    inpair_top_k: int = Field(3, ge=1, description="pick the in-pair frame at random among the k most changed views")
    rotate_deg: float = Field(15.0, ge=0.0, le=180.0, description="in-pair augmentation: random rotation +-deg")
    brightness: float = Field(0.06, ge=0.0, le=0.5, description="in-pair augmentation: random gain 1 +- this")
    margin_jitter: float = Field(0.05, ge=0.0, le=0.5, description="in-pair augmentation: crop margin +- this")
    hflip: float = Field(
        0.0, ge=0.0, le=1.0, description="in-pair augmentation: flip probability (0: LibraWorld glyphs are chiral)"
    )

    # Cross-pair: identity retrieval and verification.
    embedder: str = Field("libraworld-glyph", description="identity embedder name (see libragen.pairs.embedders)")
    threshold: float = Field(0.8, ge=-1.0, le=1.0, description="verification: least cosine similarity of a match")
    embed_views: int = Field(4, ge=1, le=32, description="views per subject averaged into its identity embedding")
    embed_size: int = Field(64, ge=16, le=1024, description="side of the images the embedder sees")
    candidates: int = Field(5, ge=1, description="matches above the threshold tried, best first")
    max_cross_risk: float = Field(
        0.9, ge=0.0, le=1.0, description="reject a cross match whose view reappears in the target (near-duplicate)"
    )

    # Copy-paste risk and decoding.
    prepared_risk: bool = Field(
        False, description="also score the prepared (augmented, white) reference against the target (slower)"
    )
    max_frames: int | None = Field(None, ge=1, description="decode at most this many frames per clip (None: all)")
    workers: int = Field(1, ge=1, le=256, description="parallel processes for decoding and cropping")
