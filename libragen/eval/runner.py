"""Evaluate a folder of videos described by a JSONL meta file (``libragen eval``).

Meta file, one JSON object per line::

    {"video": "clip_001.mp4", "prompt": "Ref 1[a red round creature] hops …", "refs": ["refs/a.png"]}

``video`` is relative to the videos folder, ``refs`` to the meta file's folder; ``id`` is optional.
Each video is decoded once; every metric reads the same frames.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from libragen.core.video import VideoReadError, probe_video, read_video
from libragen.eval.alignment import text_alignment
from libragen.eval.consistency import subject_consistency
from libragen.eval.copypaste import copy_paste_score
from libragen.eval.motion import motion_scores
from libragen.eval.probes import Probes
from libragen.eval.quality import quality_scores
from libragen.eval.realism import frechet_distance, video_features
from libragen.eval.scorers import LearnedScorers

#: Subject heights (px) searched for a pasted reference: 12-32 px covers LibraWorld subjects at 64 px.
PASTE_HEIGHT_FRACTIONS = np.linspace(12 / 64, 32 / 64, 6)


class MetaError(ValueError):
    """The meta file is missing, malformed or points at files that do not exist."""


@dataclass
class MetaItem:
    id: str
    video: Path
    prompt: str
    refs: list[Path]


def read_meta(meta: str | os.PathLike[str], videos_dir: str | os.PathLike[str]) -> list[MetaItem]:
    """Parse and check a meta JSONL file; every problem is reported with its line number."""
    meta_path, videos = Path(meta), Path(videos_dir)
    if not meta_path.is_file():
        raise MetaError(f"{meta_path}: meta file not found")
    items = []
    for number, line in enumerate(meta_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            video = videos / record["video"]
            refs = [meta_path.parent / r for r in record.get("refs", [])]
            prompt = str(record.get("prompt", ""))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise MetaError(f"{meta_path}:{number}: expected {{'video', 'prompt', 'refs'}} ({err})") from err
        missing = [str(p) for p in [video, *refs] if not p.is_file()]
        if missing:
            raise MetaError(f"{meta_path}:{number}: missing file(s): {', '.join(missing)}")
        items.append(MetaItem(str(record.get("id", record["video"])), video, prompt, refs))
    if not items:
        raise MetaError(f"{meta_path}: no entries")
    return items


def _load_image(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _copy_paste(references: list[np.ndarray], frames: np.ndarray) -> float:
    if not references:
        return float("nan")
    heights = PASTE_HEIGHT_FRACTIONS * frames.shape[1]
    scores = [
        max(copy_paste_score(ref, frames, reference_height=h, scales=(1.0,)) for h in heights) for ref in references
    ]
    return float(np.mean(scores))


def evaluate_video(
    frames: np.ndarray,
    fps: float,
    prompt: str,
    references: list[np.ndarray],
    probes: Probes,
    scorers: LearnedScorers | None = None,
) -> dict[str, float]:
    """Every per-video metric of one decoded video."""
    scores: dict[str, float] = {}
    scores.update(motion_scores(frames, fps).as_dict())
    scores.update(quality_scores(frames).as_dict())
    scores.update(text_alignment(probes.attribute, frames, prompt))
    scores.update(subject_consistency(probes.identity, frames, references))
    scores["copy_paste"] = _copy_paste(references, frames)
    if scorers is not None:
        if scorers.clip is not None:
            scores["clip_ta"] = scorers.clip.text_alignment(frames, prompt)
            if references:
                scores["clip_i"] = float(
                    np.mean(scorers.clip.embed(np.stack(references)) @ scorers.clip.embed(frames).T)
                )
        if scorers.dino is not None and references:
            refs = scorers.dino.embed(
                np.stack([np.asarray(Image.fromarray(r).resize(frames.shape[2:0:-1])) for r in references])
            )
            scores["dino_i"] = float(np.mean(refs @ scorers.dino.embed(frames).T))
        if scorers.aesthetic is not None:
            scores["aesthetic"] = scorers.aesthetic.score(frames)
    return scores


def _summarise(per_video: dict[str, dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for scores in per_video.values() for k in scores})
    summary = {}
    for key in keys:
        values = [s[key] for s in per_video.values() if key in s and not math.isnan(s[key])]
        if values:
            summary[key] = float(np.mean(values))
    summary["dynamic_degree"] = summary.pop("dynamic", float("nan"))
    return summary


def evaluate_folder(
    videos_dir: str | os.PathLike[str],
    meta: str | os.PathLike[str],
    probes: Probes,
    *,
    scorers: LearnedScorers | None = None,
    real_videos: list[Path] | None = None,
    on_video: Callable[[str], None] | None = None,
) -> dict:
    """Evaluate every video of the meta file; returns the report dict (per video, summary, notices)."""
    items = read_meta(meta, videos_dir)
    per_video: dict[str, dict[str, float]] = {}
    failures: dict[str, str] = {}
    decoded: list[np.ndarray] = []
    for item in items:
        try:
            frames = read_video(item.video)
            fps = probe_video(item.video).fps or 8.0
        except VideoReadError as err:
            failures[item.id] = err.reason
            continue
        per_video[item.id] = evaluate_video(
            frames, fps, item.prompt, [_load_image(r) for r in item.refs], probes, scorers
        )
        decoded.append(frames)
        if on_video:
            on_video(item.id)
    summary = _summarise(per_video) if per_video else {}
    notices = list(scorers.notices) if scorers else ["learned scorers not requested"]
    if real_videos and len(decoded) >= 2:
        real = [read_video(p) for p in real_videos]
        summary["realism_fd"] = frechet_distance(
            video_features(probes.attribute, real), video_features(probes.attribute, decoded)
        )
    else:
        notices.append("realism (Fréchet distance) skipped: give --real with at least 2 real videos")
    notices += [f"{item}: unreadable ({reason})" for item, reason in failures.items()]
    return {
        "command": " ".join(["libragen", *sys.argv[1:]]),
        "count": len(per_video),
        "summary": summary,
        "per_video": per_video,
        "failures": failures,
        "notices": notices,
    }
