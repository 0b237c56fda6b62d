"""Learned scorers inside curation: aesthetic, CLIP text alignment and DINO consistency of a kept clip, and
any plug-in that follows :class:`ClipScorer` (a face detector, an in-house quality model, …).

The built-in scorers are :mod:`libragen.eval.scorers` (weights from local folders, never a hub); they and
the plug-ins (``model_scorers: ["package.module:Class"]``, built with ``model_scorer_options[target]``) are
loaded once per worker process. They run only on clips every weight-free check kept — a model is the
expensive probe — on ``scorer_frames`` frames spread over the clip and decoded at ``scorer_frame_size`` (the
analysis frames are too small for a 224-px model). A scorer without a path is skipped: ``skipped_notices``
says which.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Protocol

import numpy as np

from libragen.core.video import read_video
from libragen.curate.config import CurateConfig
from libragen.curate.plugins import import_target
from libragen.eval.scorers import LearnedScorers, ScorerPaths, load_scorers


@functools.lru_cache(maxsize=2)
def _loaded(paths_json: str) -> LearnedScorers:
    return load_scorers(ScorerPaths.model_validate_json(paths_json))


class ClipScorer(Protocol):
    """A plug-in model scorer: named scores of a clip's frames (T, H, W, 3) uint8 and its caption (or None)."""

    name: str

    def score(self, frames: np.ndarray, caption: str | None) -> dict[str, float]: ...


@functools.lru_cache(maxsize=8)
def _plugin(target: str, options_json: str) -> ClipScorer:
    scorer = import_target(target, "model scorer")(**json.loads(options_json))
    if not callable(getattr(scorer, "score", None)):
        raise ValueError(f"model scorer {target!r} has no score(frames, caption) method")
    return scorer


def plugins(config: CurateConfig) -> list[ClipScorer]:
    """The configured plug-in scorers, built once per process (an import error names the target)."""
    return [
        _plugin(target, json.dumps(config.model_scorer_options.get(target, {}), sort_keys=True))
        for target in config.model_scorers
    ]


def any_scorer(config: CurateConfig) -> bool:
    paths = config.scorers
    return (
        bool(config.model_scorers)
        or paths.clip is not None
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
    for plugin in plugins(config):
        scores.update({name: float(value) for name, value in plugin.score(frames, caption).items()})
    return scores
