"""Learned scorers inside curation: aesthetic, CLIP text alignment and DINO consistency of a kept clip.

The scorers are :mod:`libragen.eval.scorers` (weights from local folders, never a hub), loaded once per
worker process. They run only on clips every weight-free check kept — a model is the expensive probe — on
``scorer_frames`` frames spread over the clip and decoded at ``scorer_frame_size`` (the analysis frames are
too small for a 224-px model). A scorer without a path is skipped: ``skipped_notices`` says which.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from libragen.core.video import read_video
from libragen.curate.config import CurateConfig
from libragen.eval.scorers import LearnedScorers, ScorerPaths, load_scorers


@functools.lru_cache(maxsize=2)
def _loaded(paths_json: str) -> LearnedScorers:
    return load_scorers(ScorerPaths.model_validate_json(paths_json))


def any_scorer(config: CurateConfig) -> bool:
    paths = config.scorers
    return (
        paths.clip is not None
        or paths.dino is not None
        or (paths.aesthetic_clip is not None and paths.aesthetic_head is not None)
    )


def learned_scores(
    path: str | os.PathLike[str], start: float, end: float, caption: str | None, config: CurateConfig
) -> dict[str, float]:
    """``aesthetic``, ``clip_text_alignment`` (when there is a caption) and ``dino_consistency`` (mean cosine
    of consecutive frames' embeddings) of the clip ``[start, end)`` seconds of ``path``, for the scorers given."""
    if not any_scorer(config):
        return {}
    scorers = _loaded(config.scorers.model_dump_json())
    duration = max(end - start, 1e-3)
    frames = read_video(
        path,
        fps=config.scorer_frames / duration,
        size=config.scorer_frame_size,
        max_frames=config.scorer_frames,
        start=start,
    )
    if len(frames) == 0:
        return {}
    scores: dict[str, float] = {}
    if scorers.aesthetic is not None:
        scores["aesthetic"] = scorers.aesthetic.score(frames)
    if scorers.clip is not None and caption:
        scores["clip_text_alignment"] = scorers.clip.text_alignment(frames, caption)
    if scorers.dino is not None and len(frames) >= 2:
        embeddings = scorers.dino.embed(frames)
        scores["dino_consistency"] = float(np.sum(embeddings[:-1] * embeddings[1:], axis=1).mean())
    return scores
