"""Weight-free curation probes over one shared analysis decode, and the thresholds that turn them into verdicts.

Every probe reads the same frames (decoded once at ``analysis_size``/``analysis_fps``):

* ``hsv_changes`` — per frame pair, mean absolute change of H, S and V (PySceneDetect's ContentDetector
  measure, 0-255 scale); :func:`find_cuts` marks pairs that are large *and* outliers for the clip.
* ``motion`` — mean over frame pairs (every ``flow_pair_step``-th) of the top-5 % optical-flow magnitude
  (px/frame); ``flicker`` — VBench's score.
* ``edge_strength`` — how crisp the crispest edges are (judges blur, against a floor that depends on the source
  size: ``edge_strength_vs_floor``); Laplacian ``sharpness`` comes with the quality scores; ``blockiness`` —
  luma gradient across 8-px block edges over the gradient inside blocks; from the container, bits per pixel of
  all frames (``bits_per_pixel``, ``bits_per_pixel_at_64``: informational) and of keyframes
  (``intra_bits_per_pixel``, judged against a size-dependent floor: ``intra_bits_vs_floor``).
* ``mean_luma``; ``letterbox`` — thickness (share of the side) of black bars present in every frame.
* ``text_fraction`` — share of the frame covered by static, very bright pixels next to static, very dark
  ones (burned-in subtitles/watermarks are white with a dark rim and do not move with the scene). Read on
  a few *detail* frames (luma at up to ``detail_size``) when the source is larger than the analysis size:
  a subtitle's thin outline averages away in a 64-px frame.
* ``phash`` — DCT perceptual hash of three keyframes (192 bits) for pool-wide near-duplicate search.
* subject scores from masks (LibraWorld ground truth, or any :class:`SubjectDetector`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import cv2
import numpy as np

from libragen.curate.config import CurateConfig
from libragen.curate.schema import REJECT_REASONS
from libragen.eval.motion import temporal_flicker, top_flow


def luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def hsv_changes(frames: np.ndarray) -> np.ndarray:
    """(T - 1,) mean absolute HSV change between consecutive frames (H rescaled to 0-255)."""
    hsv = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2HSV_FULL) for f in frames]).astype(np.float32)
    if len(hsv) < 2:
        return np.zeros(0, np.float32)
    delta = np.abs(np.diff(hsv, axis=0))
    delta[..., 0] = np.minimum(delta[..., 0], 256 - delta[..., 0])  # hue is circular
    return delta.mean(axis=(1, 2, 3))


def find_cuts(changes: np.ndarray, config: CurateConfig) -> list[int]:
    """Frame indices where a new shot starts (a cut between frame i - 1 and i)."""
    if len(changes) == 0:
        return []
    typical = float(np.median(changes)) + 1e-3
    return [i + 1 for i, c in enumerate(changes) if c > config.cut_threshold and c > config.cut_outlier_ratio * typical]


def edge_strength(frames: np.ndarray) -> float:
    """Mean over frames of the 99.5th percentile of |Laplacian| of luma: how crisp the crispest edges are.

    Blur softens every edge; a smooth scene (sky, snow) still has crisp subject outlines, even tiny ones,
    so unlike the Laplacian variance this does not mistake a smooth scene for a blurred one.
    """
    return float(np.mean([np.percentile(np.abs(cv2.Laplacian(f, cv2.CV_32F)), 99.5) for f in luma(frames)]))


def blockiness(frames: np.ndarray, block: int = 8) -> float:
    """Mean |horizontal + vertical luma step| on block edges over the same inside blocks (1 = no grid)."""
    return grid_blockiness(luma(frames), block)


def grid_blockiness(y: np.ndarray, block: int = 8) -> float:
    """:func:`blockiness` of luma ``y`` (T, H, W)."""
    y = y.astype(np.float32)
    dx, dy = np.abs(np.diff(y, axis=2)), np.abs(np.diff(y, axis=1))
    edge_x = (np.arange(dx.shape[2]) % block) == block - 1
    edge_y = (np.arange(dy.shape[1]) % block) == block - 1
    on_edges = dx[:, :, edge_x].mean() + dy[:, edge_y, :].mean()
    inside = dx[:, :, ~edge_x].mean() + dy[:, ~edge_y, :].mean()
    return float(on_edges / max(inside, 1e-3))


def letterbox(frames: np.ndarray, max_luma: float) -> float:
    """Thickness (share of the side) of the thickest pair of black bars (top+bottom or left+right)."""
    brightest = luma(frames).max(axis=0)  # a bar is dark in every frame

    def run(lines: np.ndarray) -> int:
        dark = lines.max(axis=1) < max_luma
        return int(np.argmin(dark)) if not dark.all() else len(dark)

    rows = min(run(brightest), run(brightest[::-1]))
    cols = min(run(brightest.T), run(brightest.T[::-1]))
    return max(rows / brightest.shape[0], cols / brightest.shape[1])


def _steady_where(y: np.ndarray, candidates: np.ndarray, level: float, above: bool) -> np.ndarray:
    """Of the ``candidates`` (H, W) pixels of ``y`` (T, H, W), those steady over time (std < 6) with mean
    above/below ``level``."""
    index = np.flatnonzero(candidates)
    values = y.reshape(len(y), -1)[:, index].astype(np.float32)
    mean = values.mean(axis=0)
    chosen = (values.std(axis=0) < 6.0) & ((mean > level) if above else (mean < level))
    out = np.zeros(candidates.size, bool)
    out[index[chosen]] = True
    return out.reshape(candidates.shape)


def text_fraction(y: np.ndarray, bars: float = 0.0, reach: int = 1) -> float:
    """Share of pixels that are static and very bright with a static very dark pixel within ``reach`` px.

    ``y`` is luma (T, H, W). ``reach`` is one analysis pixel in ``y``'s pixels, so the score means the same
    on analysis and on detail frames. ``bars`` (the letterbox thickness) is cropped off first: a black bar
    beside bright content is not text. In a still clip everything is static, so burned-in text cannot be
    told from the scene: 0 is returned (such a clip is rejected as static anyway) — the share of static
    pixels is read on a grid of one pixel per ``reach``.

    Exact but cheap on large frames: a pixel whose mean is above 215 with std below 6 has no value below
    215 - 6 sqrt(T - 1) and spans at most 12 sqrt(T - 1) levels, so the per-pixel minimum and maximum over
    frames pick the few candidates whose mean and std are then computed.
    """
    height, width = y.shape[1:]
    crop_y, crop_x = int(np.ceil(bars * height)) + reach, int(np.ceil(bars * width)) + reach
    if bars > 0:
        y = y[:, crop_y : height - crop_y, crop_x : width - crop_x] if crop_y * 2 < height else y
    grid = y[:, ::reach, ::reach].astype(np.float32)
    if (grid.std(axis=0) < 6.0).mean() > 0.95:
        return 0.0
    slack = 6.0 * np.sqrt(max(len(y) - 1, 0))  # the farthest one value can be from the mean when std < 6
    low, high = y.min(axis=0), y.max(axis=0)
    steady = (high.astype(np.int16) - low) <= 2 * slack
    bright = _steady_where(y, steady & (low > 215 - slack), 215, above=True)
    dark = _steady_where(y, steady & (high < 50 + slack), 50, above=False).astype(np.uint8)
    rim = cv2.dilate(dark, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0
    return float((bright & rim).mean())


def phash(frames: np.ndarray) -> np.ndarray:
    """(192,) bool: 64-bit DCT hashes of the first, middle and last frame."""
    y = luma(frames)
    bits = []
    for index in (0, len(y) // 2, len(y) - 1):
        small = cv2.resize(y[index], (32, 32), interpolation=cv2.INTER_AREA)
        low = cv2.dct(small)[:8, :8].ravel()[1:]  # drop DC: brightness changes do not count
        bits.append(np.concatenate([[low.mean() > 0], low > np.median(low)]))
    return np.concatenate(bits)


class SubjectDetector(Protocol):
    """Finds subjects in analysis frames (pluggable for real footage, e.g. GroundingDINO + SAM by local path).

    Returns ``(boxes (S, T, 4) full extents, visible_fraction (S, T))``.
    """

    name: str

    def detect(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def subject_scores(boxes: np.ndarray, visible_fraction: np.ndarray, frame_area: float) -> dict[str, float]:
    """Largest subject's median box share of the frame, and the worst subject's mean visible fraction.

    ``boxes`` (S, T, 4) are full subject extents (NaN when absent); size is judged on the full extent so
    a hidden subject counts as occluded, not as small.
    """
    if boxes.shape[0] == 0:
        return {"subject_fraction": 0.0, "visible_fraction": 0.0}
    areas = np.nan_to_num((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]), nan=0.0)
    return {
        "subject_fraction": float(np.median(areas, axis=1).max() / frame_area),
        "visible_fraction": float(visible_fraction.mean(axis=1).min()),
    }


def clip_scores(frames: np.ndarray, config: CurateConfig, detail_luma: np.ndarray | None = None) -> dict[str, float]:
    """Every pixel probe of one clip or shot (container and subject scores are added by the caller).

    ``detail_luma`` (K, H, W): some of the shot's frames at a larger size; text is read on them when K >= 3.
    """
    pairs = top_flow(frames, config.flow_pair_step) if len(frames) >= 2 else (np.zeros(1), np.zeros(1))
    top_means, amplitudes = pairs
    bars = letterbox(frames, config.letterbox_max_luma)
    if detail_luma is not None and len(detail_luma) >= 3:
        text_luma, reach = detail_luma, max(1, round(min(detail_luma.shape[1:]) / min(frames.shape[1:3])))
    else:
        text_luma, reach = luma(frames), 1
    return {
        "letterbox": bars,
        "motion": float(top_means.mean()),
        "amplitude": float(amplitudes.mean()),
        "flicker": temporal_flicker(frames) if len(frames) >= 2 else 1.0,
        "edge_strength": edge_strength(frames),
        "blockiness": blockiness(frames),
        "mean_luma": float(luma(frames).mean()),
        "text_fraction": text_fraction(text_luma, bars, reach) if len(frames) >= 2 else 0.0,
    }


Check = tuple[str, str, Callable[[CurateConfig], float], bool]  # reason, score, threshold, reject when below


def _optional(threshold: float | None) -> float:
    """A lower bound that may be unset (then nothing fails it)."""
    return -np.inf if threshold is None else threshold


CHECKS: tuple[Check, ...] = (
    ("too_short", "num_frames", lambda c: c.min_frames, True),
    ("low_resolution", "short_side", lambda c: c.min_side, True),
    ("bad_fps", "fps", lambda c: c.min_fps, True),
    ("bad_fps", "fps", lambda c: c.max_fps, False),
    ("static", "motion", lambda c: c.static_max_motion, True),
    ("flicker", "flicker", lambda c: c.min_flicker, True),
    ("blur", "edge_strength_vs_floor", lambda c: 1.0, True),
    ("low_bitrate", "intra_bits_vs_floor", lambda c: 1.0, True),
    ("dark_or_bright", "mean_luma", lambda c: c.exposure_range[0], True),
    ("dark_or_bright", "mean_luma", lambda c: c.exposure_range[1], False),
    ("letterbox", "letterbox", lambda c: c.letterbox_min_fraction, False),
    ("text_overlay", "text_fraction", lambda c: c.text_min_fraction, False),
    ("text_overlay", "ocr_text_fraction", lambda c: c.max_ocr_text_fraction, False),
    ("subject_too_small", "subject_fraction", lambda c: c.min_subject_fraction, True),
    ("occluded", "visible_fraction", lambda c: c.min_visible_fraction, True),
    ("inconsistent", "dino_consistency", lambda c: _optional(c.min_dino_consistency), True),
    ("low_text_alignment", "clip_text_alignment", lambda c: _optional(c.min_clip_text_alignment), True),
    ("low_aesthetic", "aesthetic", lambda c: _optional(c.min_aesthetic), True),
)


#: Reasons in order of how much they explain: ``reasons[0]`` of a record is its primary reason.
PRIORITY: tuple[str, ...] = REJECT_REASONS


def order_reasons(reasons: list[str]) -> list[str]:
    """Unique reasons sorted by :data:`PRIORITY`."""
    return sorted(set(reasons), key=PRIORITY.index)


#: Source frame sizes (pixels) at which the two values of a size-dependent threshold apply.
FLOOR_PIXELS = (64 * 64, 640 * 360)


def size_floor(pixels: int, floors: tuple[float, float]) -> float:
    """A threshold given at 64x64 and at >= 640x360 source pixels, log-interpolated between, for ``pixels``.

    Two curation scores depend on the source size on LibraWorld (docs/results.md, issue #5), and not by one
    power law: keyframe bits per pixel (clean >= 2.4 at 64x64, >= 0.56 at 640x360 and 1280x720; starved QP
    46-51 encodes <= 1.8, 0.13, 0.23) and the edge strength of the analysis frames (blurred <= 26, 10, 13;
    clean >= 93, 28, 41 — a source shrunk to the analysis size has anti-aliased edges).
    """
    small, large = (np.log(p) for p in FLOOR_PIXELS)
    position = float(np.clip((np.log(max(pixels, 1)) - small) / (large - small), 0.0, 1.0))
    return float(np.exp(np.log(floors[0]) + position * (np.log(floors[1]) - np.log(floors[0]))))


def size_relative_scores(scores: dict[str, float], pixels: int, config: CurateConfig) -> dict[str, float]:
    """Scores whose threshold depends on the source size, divided by it (below 1: reject)."""
    out = {}
    if "edge_strength" in scores:
        out["edge_strength_vs_floor"] = scores["edge_strength"] / size_floor(pixels, config.min_edge_strength)
    if "intra_bits_per_pixel" in scores:
        floor = size_floor(pixels, config.min_intra_bits_per_pixel)
        out["intra_bits_vs_floor"] = scores["intra_bits_per_pixel"] / floor
    return out


def blur_or_starved(scores: dict[str, float], config: CurateConfig) -> str:
    """Which of ``blur`` and ``low_bitrate`` explains the other when a clip fails both.

    A starved encode looks blurred, and a blurred picture needs few bits, so each can cause the other. The
    bits per *analysis* pixel decide: if they are too few, the encode cannot carry even the detail the blur
    probe looks at (starved, the blur follows); if they are plenty — a 720p source holds hundreds of bits
    per 64-px analysis pixel — the softness was in the picture and the few bits follow from it. For a
    source at the analysis size both measures are the same number, so there a starved verdict wins.

    When the source is larger than the analysis size, its native block grid decides instead
    (``detail_blockiness``, on the detail frames): a starved encode shows it (3.96-11.2 on LibraWorld at
    640x360), a blurred picture at a normal quantiser does not (1.5-2.2) — bits alone called a heavily
    blurred 640x360 clip, which compresses to almost nothing, starved.
    """
    if "detail_blockiness" in scores:
        return "low_bitrate" if scores["detail_blockiness"] >= config.starved_min_detail_blockiness else "blur"
    bits = scores.get("bits_per_analysis_pixel", 0.0)
    return "low_bitrate" if bits < config.min_bits_per_pixel else "blur"


def judge(scores: dict[str, float], config: CurateConfig) -> tuple[list[str], list[str]]:
    """Reject reasons (primary first), and near-miss reasons (passed by less than ``near_margin``)."""
    reasons: list[str] = []
    near: list[str] = []
    for reason, name, threshold_of, below in CHECKS:
        if name not in scores or not np.isfinite(scores[name]):
            continue
        value, threshold = scores[name], float(threshold_of(config))
        if not np.isfinite(threshold):  # an optional check that is switched off
            continue
        failed = value < threshold if below else value > threshold
        if failed:
            if reason not in reasons:
                reasons.append(reason)
            continue
        margin = config.near_margin * max(abs(threshold), 1e-9)
        if abs(value - threshold) <= margin and reason not in near:
            near.append(reason)
    for name, bound in config.min_model_scores.items():  # plug-in scores: their names come from the config
        if name not in scores or not np.isfinite(scores[name]):
            continue
        if scores[name] < bound:
            reasons.append("low_model_score")
        elif abs(scores[name] - bound) <= config.near_margin * max(abs(bound), 1e-9):
            near.append("low_model_score")
    if "blur" in reasons and "low_bitrate" in reasons:
        explained = "blur" if blur_or_starved(scores, config) == "low_bitrate" else "low_bitrate"
        reasons.remove(explained)
    reasons = order_reasons(reasons)
    return reasons, [r for r in dict.fromkeys(near) if r not in reasons]
