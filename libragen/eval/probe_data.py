"""Training and test data for the LibraWorld probes, read from real clips and their manifest.

Only clean clips are used (a defect would make the labels lie). Videos are resampled to the probe's
frame count by :func:`sample_frames`, the same rule evaluation applies to generated videos.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from libragen.core.refs import crop_box, prepare_reference
from libragen.core.video import read_video
from libragen.eval.probe_models import DIRECTION_NAMES, IdentityEncoder
from libragen.world.identity import COLOUR_NAMES, SHAPES
from libragen.world.manifest import decode_masks, read_manifest
from libragen.world.scene import SCENE_NAMES


def sample_frames(video: np.ndarray, count: int) -> np.ndarray:
    """``count`` frames spread evenly over the clip (first and last included)."""
    if len(video) == 0:
        raise ValueError("empty video")
    return video[np.linspace(0, len(video) - 1, count).round().astype(int)]


@dataclass
class SubjectLabel:
    colour: int
    shape: int
    direction: int
    identity_id: int


@dataclass
class ClipLabels:
    clip_id: str
    scene: int
    count: int
    subjects: list[SubjectLabel]


@dataclass
class ProbeSet:
    """Decoded clips (N, T, H, W, 3) uint8 at probe resolution, with their labels."""

    videos: np.ndarray
    labels: list[ClipLabels]


def load_probe_set(world_dir: str | os.PathLike[str], frames: int, limit: int | None = None) -> ProbeSet:
    """Clean clips of a LibraWorld folder, resampled to ``frames`` frames."""
    root = Path(world_dir)
    rows = [row for row in read_manifest(root) if row["defect"] is None][:limit]
    videos, labels = [], []
    for row in rows:
        videos.append(sample_frames(read_video(root / row["path"]), frames))
        subjects = [
            SubjectLabel(
                colour=COLOUR_NAMES.index(s["colour"]),
                shape=SHAPES.index(s["shape"]),
                direction=DIRECTION_NAMES.index(s["direction"]),
                identity_id=int(s["identity_id"]),
            )
            for s in row["subjects"]
        ]
        labels.append(ClipLabels(row["clip_id"], SCENE_NAMES.index(row["scene"]), len(subjects), subjects))
    return ProbeSet(np.stack(videos), labels)


@dataclass
class IdentityCrops:
    """Per subject appearance: a reference-style crop (masked, white) and frames where it is visible."""

    identity_ids: np.ndarray  # (N,)
    clip_index: np.ndarray  # (N,) which clip the appearance comes from
    references: np.ndarray  # (N, S, S, 3) uint8, S = window + 2 * context
    frames: np.ndarray  # (N, K, H, W, 3) uint8, other frames of the same clip
    boxes: np.ndarray  # (N, K, 4) the subject's box in those frames
    reference_angles: np.ndarray  # (N,) the subject's in-plane angle (degrees) in the reference; NaN if unknown
    angles: np.ndarray  # (N, K) its angle in the window frames; NaN when the world did not record angles

    def windows(self, index: np.ndarray, frame_pick: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Encoder windows (len(index), S, S, 3) of the chosen frames, jittered when ``rng`` is given."""
        out = []
        for i, k in zip(index, frame_pick, strict=True):
            jitter = None
            if rng is not None:
                jitter = np.array(
                    [rng.uniform(-0.12, 0.12), rng.uniform(-0.12, 0.12), rng.uniform(0.85, 1.2), rng.uniform(-30, 30)]
                )
            out.append(window_crop(self.frames[i, k], self.boxes[i, k], jitter=jitter))
        return np.stack(out)


def window_crop(frame: np.ndarray, box: np.ndarray, *, jitter: np.ndarray | None = None) -> np.ndarray:
    """The subject window of a frame as the encoder sees it: box (+10 %) scaled to ``window`` px, with context.

    ``jitter`` = (dx, dy, scale[, degrees]), shifts in units of the box side, perturbs the window as a loose
    detector would, and turns it (subjects meet their references at other angles).
    """
    cx, cy, side = box_square(box, frame.shape)
    degrees = 0.0
    if jitter is not None:
        cx, cy, side = cx + jitter[0] * side, cy + jitter[1] * side, side * jitter[2]
        degrees = float(jitter[3]) if len(jitter) > 3 else 0.0
    return square_crop(frame, cx, cy, side, degrees=degrees)


def box_square(box: np.ndarray, frame_shape: tuple[int, ...]) -> tuple[float, float, float]:
    """(centre x, centre y, side) of the square window around a subject box (+10 %, clipped to the frame)."""
    x0, y0, x1, y1 = crop_box(box, frame_shape, margin=0.1)
    return (x0 + x1) / 2, (y0 + y1) / 2, float(max(x1 - x0, y1 - y0))


def square_crop(frame: np.ndarray, cx: float, cy: float, side: float, *, degrees: float = 0.0) -> np.ndarray:
    """The square of ``side`` px centred on (cx, cy), turned by ``degrees``, scaled to ``window`` px + context.

    Turning by a subject's own in-plane angle shows it upright.
    """
    window, context = IdentityEncoder.window, IdentityEncoder.context
    size = window + 2 * context
    matrix = cv2.getRotationMatrix2D((float(cx), float(cy)), float(degrees), window / side)
    matrix[:, 2] += (size / 2 - cx, size / 2 - cy)
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def rotate_reference(reference: np.ndarray, degrees: float) -> np.ndarray:
    """A padded reference crop turned about its centre, the uncovered corners white."""
    size = reference.shape[0]
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), degrees, 1.0)
    return cv2.warpAffine(reference, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))


def reference_crop(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A reference image as users give it (masked, white), padded with white context for the encoder."""
    return pad_reference(prepare_reference(frame, mask=mask, size=IdentityEncoder.window))


def pad_reference(reference: np.ndarray) -> np.ndarray:
    """Resize any reference image to the encoder window and add white context around it."""
    window, context = IdentityEncoder.window, IdentityEncoder.context
    if reference.shape[:2] != (window, window):
        reference = prepare_reference(reference, size=window)
    return np.pad(reference, ((context, context), (context, context), (0, 0)), constant_values=255)


def load_identity_crops(
    world_dir: str | os.PathLike[str], frames_per_clip: int = 4, min_visible: float = 0.7
) -> IdentityCrops:
    """Every well-visible subject appearance in the clean clips of a LibraWorld folder."""
    root = Path(world_dir)
    rows = [row for row in read_manifest(root) if row["defect"] is None]
    ids, clips, refs, frames, boxes, angles = [], [], [], [], [], []
    for clip_index, row in enumerate(rows):
        video = read_video(root / row["path"])
        masks = decode_masks(row)
        for k, subject in enumerate(row["subjects"]):
            good = np.flatnonzero(np.array(subject["visible_fraction"]) >= min_visible)
            if len(good) < frames_per_clip + 1:
                continue
            picks = good[np.linspace(0, len(good) - 1, frames_per_clip + 1).round().astype(int)]
            ref_t, window_ts = picks[0], picks[1:]
            ids.append(int(subject["identity_id"]))
            clips.append(clip_index)
            refs.append(reference_crop(video[ref_t], masks[k, ref_t]))
            frames.append(video[window_ts])
            boxes.append(np.array(subject["boxes"])[window_ts])
            recorded = subject.get("angles_deg")  # absent in worlds made before angles were recorded
            angles.append(np.array(recorded)[picks] if recorded else np.full(len(picks), np.nan))
    angle_table = np.array(angles, dtype=np.float64).reshape(len(angles), frames_per_clip + 1)
    return IdentityCrops(
        np.array(ids),
        np.array(clips),
        np.stack(refs),
        np.stack(frames),
        np.stack(boxes),
        angle_table[:, 0],
        angle_table[:, 1:],
    )
