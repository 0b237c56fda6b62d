"""Text alignment on LibraWorld: parse a prompt's attributes, read them from the video with the probe.

The prompt parser understands the Ref-tag caption style ("Ref 1[a red round creature] hops quickly to the
left …") and free text ("a red round creature moving left on a brick wall"): each "<colour> <shape>"
phrase is a subject, the nearest following direction word is its motion, and a scene name anywhere
is the scene. The score is the mean, over the prompt's checkable attributes, of the probe's probability
for the stated value: per subject P(present) x P(direction), then P(scene) and P(subject count).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch

from libragen.eval.probe_data import sample_frames
from libragen.eval.probe_models import DIRECTION_NAMES, AttributeProbe
from libragen.world.identity import COLOUR_NAMES, SHAPES
from libragen.world.scene import SCENE_NAMES

_SHAPE_WORDS = {shape: shape for shape in SHAPES} | {"star": "star-shaped", "cross": "cross-shaped"}
_DIRECTION_WORDS = {
    "to the left": "left",
    "leftward": "left",
    "left": "left",
    "to the right": "right",
    "rightward": "right",
    "right": "right",
    "upward": "up",
    "upwards": "up",
    "up": "up",
    "downward": "down",
    "downwards": "down",
    "down": "down",
    "stays still": "none",
    "stands still": "none",
    "in place": "none",
    "still": "none",
}
_SUBJECT = re.compile(
    r"\b("
    + "|".join(COLOUR_NAMES)
    + r")\s+("
    + "|".join(sorted(map(re.escape, _SHAPE_WORDS), key=len, reverse=True))
    + r")\b"
)
_DIRECTION = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _DIRECTION_WORDS), key=len, reverse=True)) + r")\b")
_PAN = re.compile(r"camera pans\s+\w+")


@dataclass
class PromptSubject:
    colour: str
    shape: str
    direction: str | None  # None when the prompt does not say


@dataclass
class PromptAttributes:
    subjects: list[PromptSubject] = field(default_factory=list)
    scene: str | None = None

    @property
    def count(self) -> int:
        return len(self.subjects)


def parse_prompt(prompt: str) -> PromptAttributes:
    """Attributes a LibraWorld probe can check, read from a caption or a free prompt."""
    text = _PAN.sub(" ", prompt.lower())  # "the camera pans left" is not a subject's motion
    scene = next((name for name in SCENE_NAMES if name.split(" ", 1)[-1] in text), None)
    matches = list(_SUBJECT.finditer(text))
    subjects = []
    for k, match in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(text)
        direction = _DIRECTION.search(text, match.end(), end)
        subjects.append(
            PromptSubject(
                match.group(1),
                _SHAPE_WORDS[match.group(2)],
                _DIRECTION_WORDS[direction.group(1)] if direction else None,
            )
        )
    return PromptAttributes(subjects, scene)


@torch.no_grad()
def text_alignment(probe: AttributeProbe, frames: np.ndarray, prompt: str) -> dict[str, float]:
    """Probability-weighted agreement between ``prompt`` and what the probe reads from ``frames``.

    Returns ``ta`` (the score in [0, 1]) and its parts; NaN parts where the prompt says nothing.
    """
    attributes = parse_prompt(prompt)
    video = torch.from_numpy(sample_frames(np.asarray(frames), probe.frames))[None]
    maps = probe.features(video)
    pooled = probe.pooled(maps)
    parts: dict[str, float] = {"subjects": float("nan"), "scene": float("nan"), "count": float("nan")}
    checks: list[float] = []
    if attributes.subjects:
        colour = torch.tensor([[COLOUR_NAMES.index(s.colour) for s in attributes.subjects]])
        shape = torch.tensor([[SHAPES.index(s.shape) for s in attributes.subjects]])
        out = probe.query(maps, colour, shape, video)
        present = out["present"][0]
        direction = out["direction"][0].softmax(-1)
        subject_scores = []
        for k, subject in enumerate(attributes.subjects):
            score = float(present[k])
            if subject.direction is not None:
                score *= float(direction[k, DIRECTION_NAMES.index(subject.direction)])
            subject_scores.append(score)
        parts["subjects"] = float(np.mean(subject_scores))
        checks.extend(subject_scores)
        count_probs = probe.count_logits(maps).softmax(-1)[0]
        parts["count"] = float(count_probs[min(attributes.count, len(count_probs)) - 1])
        checks.append(parts["count"])
    if attributes.scene is not None:
        parts["scene"] = float(probe.scene(pooled).softmax(-1)[0, SCENE_NAMES.index(attributes.scene)])
        checks.append(parts["scene"])
    parts["ta"] = float(np.mean(checks)) if checks else float("nan")
    return parts
