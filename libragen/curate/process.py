"""Curate one input: classify unreadable files, decode once, split at cuts, score every shot, judge it.

:func:`process_item` is what each Ray worker runs. Its result is committed as one marker file
``records/<key>.json`` (atomic), written only after every shot file it mentions is on disk, so a killed
run leaves either a complete result for an item or none — a rerun redoes exactly the missing items.
Beside it, ``records/<key>.keyframes.npz`` (written first) holds the luma keyframes of its kept clips, which
the pool-wide duplicate check compares, so that check never decodes a clip again.
"""

from __future__ import annotations

import bisect
import io
import itertools
import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from libragen.core.files import sha256_file, write_bytes_atomic
from libragen.core.video import VideoInfo, VideoReadError, VideoWriter, decode_for_analysis, iter_decoded
from libragen.curate.config import CurateConfig
from libragen.curate.detector import detected_subject_scores, load_detector
from libragen.curate.inputs import InputItem, looks_like_container
from libragen.curate.learned import any_scorer, learned_scores
from libragen.curate.ocr import ocr_available, steady_text_fraction
from libragen.curate.probes import (
    clip_scores,
    find_cuts,
    grid_blockiness,
    hsv_changes,
    judge,
    luma,
    order_reasons,
    phash,
    size_relative_scores,
    subject_scores,
)
from libragen.eval.quality import quality_scores

RECORDS_DIR = "records"
CLIPS_DIR = "clips"


def marker_path(out_dir: Path, key: str) -> Path:
    return out_dir / RECORDS_DIR / f"{key}.json"


def keyframes_path(out_dir: Path, key: str) -> Path:
    return out_dir / RECORDS_DIR / f"{key}.keyframes.npz"


def keyframes_of(frames: np.ndarray) -> np.ndarray:
    """(3, h, w) uint8 luma of a clip's first, middle and last analysis frames: what duplicate checks compare."""
    return np.rint(luma(frames[[0, len(frames) // 2, len(frames) - 1]])).clip(0, 255).astype(np.uint8)


def _unreadable_reason(path: str, error: VideoReadError | None) -> str:
    if os.path.getsize(path) == 0:
        return "empty_file"
    if error is not None and error.reason.startswith("no video stream"):
        return "no_video_stream"
    return "corrupt_video" if looks_like_container(path) else "not_video"


def _base_record(item: InputItem, context: dict[str, str]) -> dict[str, Any]:
    return {
        "clip_id": item.source_id,
        "path": None,
        "source_path": item.path,
        "start_frame": 0,
        "end_frame": 0,
        "content_hash": None,
        "keep": False,
        "reasons": [],
        "near_reasons": [],
        "scores": {},
        "quality_score": 0.0,
        "width": item.width,
        "height": item.height,
        "fps": None,
        "num_frames": 0,
        "caption": item.caption,
        "subjects": None,
        "phash": None,
        **context,
    }


def scaled_bits_per_pixel(size: int, width: int, height: int, frames: int) -> float:
    """Encoded bits per pixel per frame, scaled to a 64x64 frame: x sqrt(pixels / 64^2).

    At the same quality H.264 spends far fewer bits per pixel on large frames (neighbouring pixels are more
    alike): on LibraWorld at crf 18, 1280x720 clips take ~15x the bits of 64x64 ones for 225x the pixels,
    so raw bits per pixel judged every 720p clip starved. The square root puts both sizes on one scale.
    """
    pixels = width * height
    return size * 8.0 / (pixels * frames) * (pixels / 64.0**2) ** 0.5


def intra_bits(keyframe_bytes: tuple[int, ...], width: int, height: int) -> dict[str, float]:
    """Mean keyframe bits per pixel (none when no keyframe was read). An intra-coded frame's size depends on
    the picture and the quantiser, not on motion, so still and slow clips — whose other frames cost next to
    nothing — are not mistaken for starved encodes, as they were by the bits of all frames."""
    if not keyframe_bytes:
        return {}
    return {"intra_bits_per_pixel": float(np.mean(keyframe_bytes)) * 8.0 / (width * height)}


def quality_score(scores: dict[str, float]) -> float:
    """The ranking score of ``--keep N``: 0.5 x visual quality + 0.3 x motion + 0.2 x subject size, each in [0, 1].

    Motion saturates at 2 px/frame of top-5 % flow; subject size at 6 % of the frame (when known).
    """
    motion = min(1.0, scores.get("motion", 0.0) / 2.0)
    if "subject_fraction" in scores:
        subject = min(1.0, scores["subject_fraction"] / 0.06)
        return 0.5 * scores.get("visual_quality", 0.0) + 0.3 * motion + 0.2 * subject
    return (0.5 * scores.get("visual_quality", 0.0) + 0.3 * motion) / 0.8


def _slice_subjects(item: InputItem, info: VideoInfo, start_time: float, end_time: float):
    """The LibraWorld subject rows for the native frames inside [start_time, end_time)."""
    if item.subjects_json is None:
        return None, None
    subjects = json.loads(item.subjects_json)
    fps = info.fps or 1.0
    first, last = round(start_time * fps), max(round(start_time * fps) + 1, round(end_time * fps))
    sliced = []
    for subject in subjects:
        copy = dict(subject)
        copy["boxes"] = subject["boxes"][first:last]
        copy["visible_fraction"] = subject["visible_fraction"][first:last]
        if subject.get("angles_deg") is not None:
            copy["angles_deg"] = subject["angles_deg"][first:last]
        sliced.append(copy)
    return sliced, subjects


def _write_shots(
    item: InputItem, info: VideoInfo, shots: dict[int, tuple[float, float]], out: Path, threads: int | None
) -> dict[int, Path]:
    """Re-encode the shots {index: [start, end) seconds} of the source at its native size, in one decoding
    pass (decoded frames go to the encoder as they are, without a round trip through RGB).

    Frames stream from the decoder into one encoder per shot, so memory stays a few frames however long
    the source is; a failure leaves no shot file behind.
    """
    fps = info.fps or 8.0
    order = sorted(shots)
    firsts = [round(shots[k][0] * fps) for k in order]
    lasts = [max(first + 1, round(shots[k][1] * fps)) for first, k in zip(firsts, order, strict=True)]
    targets = {k: out / CLIPS_DIR / f"{item.key}_shot{k}.mp4" for k in order}
    with ExitStack() as open_writers:
        writers: dict[int, VideoWriter] = {}
        for index, frame in enumerate(iter_decoded(item.path, threads=threads)):
            if index >= lasts[-1]:
                break
            position = bisect.bisect_right(firsts, index) - 1
            if position < 0 or index >= lasts[position]:
                continue  # a frame of a shot that is not written
            shot = order[position]
            if shot not in writers:
                writers[shot] = open_writers.enter_context(VideoWriter(targets[shot], fps))
            writers[shot].write_frame(frame)
        missing = [k for k in order if k not in writers]
        if missing:
            raise VideoReadError(item.path, f"shots {missing} have no decodable frames")
    return targets


def process_item(
    item: InputItem,
    config: CurateConfig,
    out_dir: str | os.PathLike[str],
    context: dict[str, str],
    *,
    decode_threads: int | None = None,
) -> list[dict[str, Any]]:
    """Score one input into curated rows and commit them as its marker file.

    ``decode_threads`` caps the video decoder's threads (None: one per core); OpenCV always runs on one.
    """
    cv2.setNumThreads(1)
    out = Path(out_dir)
    keyframes: dict[str, np.ndarray] = {}
    records = _records(item, config, out, context, decode_threads, keyframes)
    if keyframes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **keyframes)
        write_bytes_atomic(keyframes_path(out, item.key), buffer.getvalue())
    write_bytes_atomic(marker_path(out, item.key), json.dumps(records).encode())
    return records


def _records(
    item: InputItem,
    config: CurateConfig,
    out: Path,
    context: dict[str, str],
    threads: int | None,
    keyframes: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    """The item's rows; the keyframes of the clips kept so far go into ``keyframes`` by clip id."""
    base = _base_record(item, context)
    size = os.path.getsize(item.path)
    if size > config.max_file_bytes:
        return [{**base, "reasons": ["too_large"], "scores": {"file_bytes": float(size)}}]
    try:
        decoded = decode_for_analysis(
            item.path,
            fps=config.analysis_fps,
            max_short_side=config.analysis_size,
            max_frames=config.max_analysis_frames,
            threads=threads,
            detail_frames=config.detail_frames,
            detail_short_side=config.detail_size,
        )
        info, frames = decoded.info, decoded.frames
        analysis_fps = min(config.analysis_fps, info.fps) if info.fps > 0 else config.analysis_fps
    except VideoReadError as error:
        return [{**base, "reasons": [_unreadable_reason(item.path, error)]}]

    native_frames = info.num_frames or max(1, round(len(frames) * (info.fps or analysis_fps) / analysis_fps))
    bits = size * 8.0 / native_frames
    container = {
        "fps": float(info.fps),
        "short_side": float(min(info.width, info.height)),
        "bits_per_pixel": bits / (info.width * info.height),
        "bits_per_pixel_at_64": scaled_bits_per_pixel(size, info.width, info.height, native_frames),
        "bits_per_analysis_pixel": bits / (frames.shape[1] * frames.shape[2]),
        **intra_bits(decoded.keyframe_bytes, info.width, info.height),
        "file_bytes": float(size),
    }
    cuts = find_cuts(hsv_changes(frames), config)
    bounds = [0, *cuts, len(frames)]
    detector = load_detector(config) if item.subjects_json is None else None
    records = []
    for shot, (first, last) in enumerate(itertools.pairwise(bounds)):
        shot_frames = frames[first:last]
        start_time, end_time = first / analysis_fps, last / analysis_fps
        scores = {**container, "num_frames": float(len(shot_frames)), "source_cuts": float(len(cuts))}
        detail = decoded.detail_luma[(decoded.detail_index >= first) & (decoded.detail_index < last)]
        if len(shot_frames) >= 2:
            scores.update(clip_scores(shot_frames, config, detail))
        scores.update(
            {
                f"{k}": v
                for k, v in quality_scores(shot_frames).as_dict().items()
                if k in ("visual_quality", "sharpness", "noise", "colourfulness", "exposure")
            }
        )
        sliced, _ = _slice_subjects(item, info, start_time, end_time)
        if sliced is not None:
            if sliced:
                boxes = np.array([s["boxes"] for s in sliced], dtype=np.float64)
                visible = np.array([s["visible_fraction"] for s in sliced], dtype=np.float64)
                scores.update(subject_scores(boxes, visible, float(info.width * info.height)))
            else:
                scores.update({"subject_fraction": 0.0, "visible_fraction": 0.0})
        elif detector is not None and len(shot_frames):
            scores.update(detected_subject_scores(detector, shot_frames))
        scores.update(size_relative_scores(scores, info.width * info.height, config))
        blurred_and_starved = scores.get("edge_strength_vs_floor", 1) < 1 and scores.get("intra_bits_vs_floor", 1) < 1
        if blurred_and_starved and len(detail) >= 3:  # the native block grid tells which explains the other
            scores["detail_blockiness"] = grid_blockiness(detail)
        reasons, near = judge(scores, config)
        if not reasons and config.text_backend == "rapidocr" and ocr_available():  # slow: kept clips only
            text_luma = detail if len(detail) >= 2 else luma(shot_frames)
            scores["ocr_text_fraction"] = steady_text_fraction(text_luma, config)
            reasons, near = judge(scores, config)
        if not reasons and any_scorer(config):  # learned scorers only see what every cheap check kept
            scores.update(learned_scores(item.path, start_time, end_time, item.caption, config))
            reasons, near = judge(scores, config)
        if (sliced is not None and not sliced) or scores.get("detected_subjects") == 0:
            reasons = order_reasons([*reasons, "no_subject"])
        clip_id = f"{item.source_id}#shot{shot}" if cuts else item.source_id
        if not reasons:
            keyframes[clip_id] = keyframes_of(shot_frames)
        records.append(
            {
                **base,
                "clip_id": clip_id,
                "start_frame": round(start_time * (info.fps or analysis_fps)),
                "end_frame": min(native_frames, round(end_time * (info.fps or analysis_fps))),
                "keep": not reasons,
                "reasons": reasons,
                "near_reasons": near,
                "scores": {k: float(v) for k, v in scores.items()},
                "quality_score": quality_score(scores),
                "width": info.width,
                "height": info.height,
                "fps": float(info.fps),
                "num_frames": round(len(shot_frames) * (info.fps or analysis_fps) / analysis_fps),
                "subjects": sliced,
                "phash": np.packbits(phash(shot_frames)).tobytes().hex(),
            }
        )
    if not cuts:
        paths = {0: Path(item.path)}
    else:
        # Only kept shots become files: a rejected shot is located by source_path and its frame range.
        kept = {k: (bounds[k] / analysis_fps, bounds[k + 1] / analysis_fps) for k, r in enumerate(records) if r["keep"]}
        try:
            paths = _write_shots(item, info, kept, out, threads) if kept else {}
        except VideoReadError as error:  # the analysis decode passed, the full-size one did not
            keyframes.clear()
            return [{**base, "reasons": [_unreadable_reason(item.path, error)]}]
    for shot, record in enumerate(records):
        if shot in paths:
            record["path"] = os.path.relpath(paths[shot], out)
            record["content_hash"] = sha256_file(paths[shot])
    return records
