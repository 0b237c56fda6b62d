"""Judge a text-to-video model on LibraWorld prompts: does it draw what the prompt says, and move like real clips?

For each prompt the attribute probe is queried with every stated subject (colour + shape) and reads
* colour: the probe says the stated body colour is present (sigmoid of its colour logit > 0.5);
* subject: the colour is present *and* the silhouette of that colour has the stated shape (a frame
  washed with the colour passes the colour check, not this one);
* direction: the probe's most likely motion of that subject equals the stated one ("none" for still);
and a video matches when all its subjects do. Dynamic degree (VBench) is compared with the real clips
the prompts came from, which are also run through the same probes as the ceiling of what they can read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from libragen.eval.alignment import parse_prompt
from libragen.eval.motion import motion_scores
from libragen.eval.probe_data import sample_frames
from libragen.eval.probe_models import DIRECTION_NAMES, AttributeProbe
from libragen.world.identity import COLOUR_NAMES, SHAPES


@dataclass
class PromptReading:
    """What the probe read from one video for one prompt."""

    colour_ok: list[bool]
    shape_ok: list[bool]  # the silhouette of the stated colour has the stated shape
    direction_ok: list[bool]  # only subjects whose direction the prompt states
    read_directions: list[str]
    dynamic: float

    @property
    def colour_match(self) -> bool:
        return all(self.colour_ok)

    @property
    def subject_match(self) -> bool:
        return all(c and s for c, s in zip(self.colour_ok, self.shape_ok, strict=True))

    @property
    def direction_match(self) -> bool:
        return all(self.direction_ok)


@torch.no_grad()
def read_prompt(probe: AttributeProbe, frames: np.ndarray, prompt: str, fps: float) -> PromptReading:
    """Probe ``frames`` (T, H, W, 3) uint8 for each subject ``prompt`` states."""
    attributes = parse_prompt(prompt)
    if not attributes.subjects:
        raise ValueError(f"prompt names no '<colour> <shape>' subject: {prompt!r}")
    video = torch.from_numpy(sample_frames(np.asarray(frames), probe.frames))[None]
    maps = probe.features(video)
    colour = torch.tensor([[COLOUR_NAMES.index(s.colour) for s in attributes.subjects]])
    shape = torch.tensor([[SHAPES.index(s.shape) for s in attributes.subjects]])
    out = probe.query(maps, colour, shape, video)
    colour_ok = (out["colour_logit"][0] > 0).tolist()
    shape_ok = (out["shape_logits"][0].argmax(-1) == shape[0]).tolist()
    read = [DIRECTION_NAMES[i] for i in out["direction"][0].argmax(-1).tolist()]
    direction_ok = [r == s.direction for r, s in zip(read, attributes.subjects, strict=True) if s.direction]
    return PromptReading(colour_ok, shape_ok, direction_ok, read, motion_scores(np.asarray(frames), fps).dynamic)


def summarise(readings: list[PromptReading]) -> dict[str, float]:
    """Shares of videos (and of subjects) whose colour / direction match, and the dynamic degree."""
    subjects_colour = [ok for r in readings for ok in r.colour_ok]
    subjects_direction = [ok for r in readings for ok in r.direction_ok]
    return {
        "videos": len(readings),
        "colour_match": float(np.mean([r.colour_match for r in readings])),
        "subject_match": float(np.mean([r.subject_match for r in readings])),
        "direction_match": float(np.mean([r.direction_match for r in readings])),
        "colour_match_per_subject": float(np.mean(subjects_colour)),
        "direction_match_per_subject": float(np.mean(subjects_direction)) if subjects_direction else float("nan"),
        "dynamic_degree": float(np.mean([r.dynamic for r in readings])),
    }


def heldout_prompts(world_dir: str | os.PathLike[str], n: int | None = None) -> list[tuple[str, Path]]:
    """(plain prompt, real clip path) for defect-free clips of a LibraWorld folder, in manifest order."""
    from libragen.world.caption import plain_caption
    from libragen.world.manifest import read_manifest

    root = Path(world_dir)
    rows = [r for r in read_manifest(root / "manifest.parquet") if not r.get("defect")]
    return [(plain_caption(r["caption"]), root / r["path"]) for r in rows[:n]]
