"""Curation thresholds (YAML ``--config curate.yaml``, validated by pydantic) with documented defaults.

Defaults were set on a LibraWorld pool (``libragen world make --n 1000 --defects 0.3 --seed 5``) and are
stated in the units the probes report (see :mod:`libragen.curate.probes`); on real footage, start from
them and look at the report's histograms.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from libragen.core.config import StrictModel
from libragen.eval.scorers import ScorerPaths


class CurateConfig(StrictModel):
    # decoding: one decode per clip, shared by all probes
    analysis_size: int = Field(64, ge=16, description="short side of the analysis decode, px")
    analysis_fps: float = Field(8.0, gt=0, description="frames per second of the analysis decode")
    max_analysis_frames: int = Field(2400, ge=8, description="stop decoding a long video after this many frames")
    detail_frames: int = Field(
        8, ge=0, description="frames also kept as luma at up to detail_size for fine-grained probes (0: none)"
    )
    detail_size: int = Field(720, ge=16, description="short side of the detail luma frames (text overlays), px")
    max_file_bytes: int = Field(8 * 2**30, ge=1, description="larger files are rejected without decoding")

    # container limits
    min_frames: int = Field(8, ge=1, description="minimum frames (at analysis fps) of a clip or shot")
    min_side: int = Field(48, ge=1, description="minimum short side of the source, px")
    min_fps: float = Field(4.0, ge=0, description="minimum source frame rate")
    max_fps: float = Field(120.0, gt=0, description="maximum source frame rate")

    # shot cuts: a frame pair is a cut when its HSV change is both large and an outlier for the clip
    cut_threshold: float = Field(
        27.0, description="mean HSV change (0-255 scale, like PySceneDetect's ContentDetector)"
    )
    cut_outlier_ratio: float = Field(2.0, description="... and this many times the clip's median change")

    # motion (optical flow on the analysis frames)
    static_max_motion: float = Field(0.3, ge=0, description="mean top-5% flow (px/frame) below which a clip is static")
    flow_pair_step: int = Field(
        2, ge=1, description="optical flow on every k-th consecutive frame pair (1 = all; 2 halves the cost)"
    )
    min_flicker: float = Field(0.85, description="VBench temporal-flicker score below which a clip flickers")

    # picture quality
    min_edge_strength: tuple[float, float] = Field(
        (31.0, 15.0),
        description="99.5th percentile of |Laplacian| of the analysis luma below which a clip is blurred: at 64x64 "
        "and at 640x360 source pixels or more, log-interpolated between (a source shrunk to the analysis size "
        "has softer, anti-aliased edges than one drawn at it)",
    )
    min_intra_bits_per_pixel: tuple[float, float] = Field(
        (2.1, 0.35),
        description="keyframe (intra-coded) bits per pixel below which a clip is starved (low_bitrate): the floor "
        "at 64x64 and at 640x360 pixels or more, log-interpolated between (smaller frames carry more detail per "
        "pixel); codec-dependent",
    )
    min_bits_per_pixel: float = Field(
        0.32,
        description="of a clip both blurred and starved: encoded bits per analysis pixel per frame below which "
        "the starved encode explains the blur (see probes.blur_or_starved)",
    )
    starved_min_detail_blockiness: float = Field(
        3.0,
        description="of a clip both blurred and starved, larger than the analysis size: block-grid strength of "
        "its detail frames from which the starved encode explains the blur",
    )
    exposure_range: tuple[float, float] = Field((25.0, 235.0), description="allowed mean luma")
    letterbox_min_fraction: float = Field(0.05, description="black bar thickness (share of the side) that counts")
    letterbox_max_luma: float = Field(24.0, description="a bar row/column is darker than this in every frame")

    # text overlay: static, high-contrast, text-shaped strokes
    text_min_fraction: float = Field(0.0012, description="share of the frame covered by static text-like strokes")

    # near-duplicates across the pool (perceptual hash of three keyframes)
    duplicate_max_distance: int = Field(48, ge=0, le=192, description="Hamming distance (of 192) of candidates")
    duplicate_min_correlation: float = Field(0.95, description="keyframe correlation confirming a duplicate")
    duplicate_max_shift: int = Field(3, ge=0, description="re-crop shift (px) searched when confirming")

    # optional OCR text backend (pip install 'libragen[ocr]'): reads the detail frames of clips every other check
    # kept; text found at the same place in several frames (burned in, not carried by a moving subject) counts
    text_backend: Literal["weightfree", "rapidocr"] = Field(
        "weightfree", description="rapidocr: also judge text_overlay by OCR (skipped with a notice if not installed)"
    )
    ocr_frames: int = Field(3, ge=2, description="detail frames read by OCR")
    ocr_min_confidence: float = Field(0.8, ge=0, le=1, description="OCR text lines below this confidence are ignored")
    max_ocr_text_fraction: float = Field(
        0.0005, ge=0, description="share of the frame covered by steady OCR text above which a clip is text_overlay"
    )

    # subjects (LibraWorld ground-truth masks, or a detector for footage without them)
    subject_detector: str | None = Field(
        None,
        description="'package.module:Class' of a SubjectDetector, built with subject_detector_options (e.g. a local "
        "weights path) once per worker; used for inputs without ground-truth subjects",
    )
    subject_detector_options: dict[str, Any] = Field(default_factory=dict)
    min_subject_fraction: float = Field(0.02, description="largest subject's median box share of the frame")
    min_visible_fraction: float = Field(0.35, description="a subject hidden more than this on average is occluded")

    # learned scorers (weights from local folders only; a scorer without a path is skipped with a notice).
    # They score only clips every weight-free check kept, on a few frames decoded at ``scorer_frame_size``.
    scorers: ScorerPaths = Field(default_factory=ScorerPaths, description="clip / dino / aesthetic folders")
    scorer_frames: int = Field(4, ge=2, description="frames per clip shown to the learned scorers")
    scorer_frame_size: int = Field(224, ge=32, description="short side of those frames, px")
    min_aesthetic: float | None = Field(None, description="LAION aesthetic score below which a clip is rejected")
    min_clip_text_alignment: float | None = Field(
        None, description="CLIP image-caption cosine below which a clip is rejected (inputs with a caption)"
    )
    min_dino_consistency: float | None = Field(
        None, description="mean DINO cosine of consecutive scorer frames below which a clip is rejected"
    )

    model_scorers: list[str] = Field(
        default_factory=list,
        description="'package.module:Class' of further ClipScorer plug-ins (a face detector, …), each built once per "
        "worker with model_scorer_options[target] and shown the same frames and the caption",
    )
    model_scorer_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    min_model_scores: dict[str, float] = Field(
        default_factory=dict, description="score name -> lower bound; a plug-in score below it: low_model_score"
    )

    # near-miss report: a score within this relative margin of a threshold is listed in near_reasons
    near_margin: float = Field(0.1, ge=0, le=1)
