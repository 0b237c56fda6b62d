"""Motion metrics from dense optical flow (OpenCV Farneback): dynamic degree, amplitude, smoothness, flicker.

* Dynamic degree (VBench rule): per frame pair, the mean of the top 5 % flow magnitudes; a pair moves
  when that exceeds 6.0 x (min side / 256) x max(1, 8 / fps); a video is dynamic when at least
  round(4 x N / 16) of its N pairs move. ``dynamic_fraction`` (share of moving pairs) is the
  continuous version used for comparisons between methods.
* Motion amplitude (OpenS2V-style): mean absolute flow after resizing each flow map to width 16.
* Motion smoothness: 1 - mean absolute error (in [0, 1] units) of predicting each middle frame from its
  two neighbours warped half-way along the flow between them. Smooth motion is predictable.
* Temporal flicker (VBench): (255 - mean absolute difference between consecutive frames) / 255.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise

import cv2
import numpy as np

_FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=9, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def optical_flow(frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
    """(H, W, 2) Farneback flow from ``frame_a`` to ``frame_b`` (RGB uint8)."""
    return cv2.calcOpticalFlowFarneback(_grey(frame_a), _grey(frame_b), None, **_FARNEBACK)


def moving_flow(frames: np.ndarray) -> tuple[float, float]:
    """Mean (x, y) flow in px/frame over the pixels whose flow magnitude is in the top 10 % of the clip: which way
    the things that move go (the direction-word checks read it)."""
    flow = np.stack([optical_flow(a, b) for a, b in pairwise(frames)])
    magnitude = np.linalg.norm(flow, axis=-1)
    moving = magnitude > np.percentile(magnitude, 90)
    return float(flow[..., 0][moving].mean()), float(flow[..., 1][moving].mean())


def _check(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    if len(frames) < 2:
        raise ValueError("motion metrics need at least 2 frames")
    return frames


def dynamic_threshold(height: int, width: int, fps: float) -> float:
    """VBench's resolution- and fps-scaled threshold on the top-5 % flow magnitude."""
    return 6.0 * (min(height, width) / 256.0) * max(1.0, 8.0 / fps)


@dataclass(frozen=True)
class MotionScores:
    dynamic: float  # 1.0 if the video counts as dynamic, else 0.0
    dynamic_fraction: float  # share of frame pairs whose top-5 % flow exceeds the threshold
    amplitude: float
    smoothness: float
    flicker: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _warp(frame: np.ndarray, flow: np.ndarray, fraction: float) -> np.ndarray:
    """Sample ``frame`` at x - fraction * flow(x) (backward warp along a flow field)."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x = grid_x - fraction * flow[..., 0]
    map_y = grid_y - fraction * flow[..., 1]
    return cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def motion_smoothness(frames: np.ndarray) -> float:
    """1 - mean abs error of flow-based interpolation of each middle frame, in [0, 1]."""
    frames = _check(frames)
    if len(frames) < 3:
        return 1.0
    errors = []
    for t in range(1, len(frames) - 1):
        before, after = frames[t - 1], frames[t + 1]
        forward, backward = optical_flow(before, after), optical_flow(after, before)
        predicted = 0.5 * (_warp(before, forward, 0.5).astype(np.float32) + _warp(after, backward, 0.5))
        errors.append(np.abs(predicted - frames[t]).mean() / 255.0)
    return float(1.0 - np.mean(errors))


def top_flow(frames: np.ndarray, pair_step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per frame pair: mean of the top 5 % flow magnitudes, and the OpenS2V amplitude (width-16 maps).

    ``pair_step`` k > 1 measures only the consecutive pairs (0, 1), (k, k + 1), … — still frame-to-frame
    motion, k times cheaper, for callers that only need its mean.
    """
    frames = _check(frames)
    if pair_step < 1:
        raise ValueError(f"pair_step must be >= 1, got {pair_step}")
    height, width = frames.shape[1:3]
    small_h = max(1, round(16 * height / width))
    top_means, amplitudes = [], []
    for a, b in list(pairwise(frames))[::pair_step]:
        flow = optical_flow(a, b)
        magnitude = np.linalg.norm(flow, axis=-1).ravel()
        top = np.sort(magnitude)[-max(1, int(0.05 * magnitude.size)) :]
        top_means.append(float(top.mean()))
        amplitudes.append(float(np.abs(cv2.resize(flow, (16, small_h), interpolation=cv2.INTER_AREA)).mean()))
    return np.array(top_means), np.array(amplitudes)


def temporal_flicker(frames: np.ndarray) -> float:
    """VBench temporal flicker: (255 - mean absolute difference of consecutive frames) / 255."""
    frames = _check(frames)
    return float(1.0 - np.abs(np.diff(frames.astype(np.float32), axis=0)).mean() / 255.0)


def motion_scores(frames: np.ndarray, fps: float) -> MotionScores:
    """All motion metrics of one video."""
    frames = _check(frames)
    top_means, amplitudes = top_flow(frames)
    moving = top_means > dynamic_threshold(frames.shape[1], frames.shape[2], fps)
    needed = round(4 * len(moving) / 16)
    return MotionScores(
        dynamic=float(moving.sum() >= max(1, needed)),
        dynamic_fraction=float(moving.mean()),
        amplitude=float(amplitudes.mean()),
        smoothness=motion_smoothness(frames),
        flicker=temporal_flicker(frames),
    )
