"""The pluggable subject detector of curation, for footage without LibraWorld ground truth.

``subject_detector: "package.module:Class"`` in the curation YAML names any class that follows
:class:`libragen.curate.probes.SubjectDetector` (GroundingDINO + SAM, a face detector, … loading its weights
from a local path given in ``subject_detector_options``). It is built once per worker process and sees each
shot's analysis frames; its boxes are in those frames' pixels.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from libragen.curate.config import CurateConfig
from libragen.curate.plugins import import_target
from libragen.curate.probes import SubjectDetector, subject_scores


@functools.lru_cache(maxsize=2)
def _built(target: str, options_json: str) -> SubjectDetector:
    detector = import_target(target)(**json.loads(options_json))
    if not callable(getattr(detector, "detect", None)):
        raise ValueError(f"subject_detector {target!r} has no detect(frames) method")
    return detector


def load_detector(config: CurateConfig) -> SubjectDetector | None:
    """The configured detector (built once per process), or None when none is configured."""
    if config.subject_detector is None:
        return None
    return _built(config.subject_detector, json.dumps(config.subject_detector_options, sort_keys=True))


def detected_subject_scores(detector: SubjectDetector, frames: np.ndarray) -> dict[str, float]:
    """``subject_fraction`` / ``visible_fraction`` of the detector's subjects in analysis frames (T, h, w, 3), and
    ``detected_subjects`` (their count)."""
    boxes, visible = detector.detect(frames)
    boxes, visible = np.asarray(boxes, dtype=np.float64), np.asarray(visible, dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[1:] != (len(frames), 4) or visible.shape != boxes.shape[:2]:
        raise ValueError(
            f"subject detector returned boxes {boxes.shape} and visible {visible.shape}; "
            f"expected (S, {len(frames)}, 4) and (S, {len(frames)})"
        )
    if len(boxes) == 0:  # judged as no_subject, not as a subject of size 0
        return {"detected_subjects": 0.0}
    scores = subject_scores(boxes, visible, float(frames.shape[1] * frames.shape[2]))
    return {**scores, "detected_subjects": float(len(boxes))}
