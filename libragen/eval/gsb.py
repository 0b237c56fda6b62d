"""GSB (good / same / bad) side-by-side preference: export for people, score judgements, automatic judge.

* :func:`export_side_by_side` writes, for every video two methods share by name, one mp4 with the two
  videos next to each other (left/right drawn at random and recorded in ``key.jsonl``) so a judge cannot
  tell which method is which. The review app hosts these; any tool that records a choice works.
* :func:`gsb_from_choices` maps recorded choices (left / right / same) back to method A's view.
* :func:`gsb_ratio` is the paper's (G - B) / (G + S + B), positive when A is preferred.
* :func:`automatic_judge` stands in for people in quick runs: it compares per-video composite scores.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from libragen.core.files import write_bytes_atomic
from libragen.core.video import probe_video, read_video, write_video

CHOICES = ("good", "same", "bad")


@dataclass(frozen=True)
class GSB:
    good: int
    same: int
    bad: int

    @property
    def ratio(self) -> float:
        total = self.good + self.same + self.bad
        return (self.good - self.bad) / total if total else float("nan")


def gsb_ratio(judgements: Iterable[str]) -> GSB:
    """Count good/same/bad judgements (from method A's point of view)."""
    counts = Counter(judgements)
    unknown = set(counts) - set(CHOICES)
    if unknown:
        raise ValueError(f"judgements must be one of {CHOICES}, got {sorted(unknown)}")
    return GSB(counts["good"], counts["same"], counts["bad"])


def export_side_by_side(
    videos_a: str | os.PathLike[str],
    videos_b: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    gap: int = 4,
) -> Path:
    """Write ``out_dir/<name>.mp4`` side-by-sides and ``out_dir/key.jsonl`` (which side is method A)."""
    dir_a, dir_b, out = Path(videos_a), Path(videos_b), Path(out_dir)
    names = sorted({p.name for p in dir_a.glob("*.mp4")} & {p.name for p in dir_b.glob("*.mp4")})
    if not names:
        raise ValueError(f"no video names shared by {dir_a} and {dir_b}")
    rng = np.random.default_rng(seed)
    lines = []
    for name in names:
        a, b = read_video(dir_a / name), read_video(dir_b / name)
        frames = min(len(a), len(b))
        height = max(a.shape[1], b.shape[1])
        a_left = bool(rng.integers(2))
        left, right = (a, b) if a_left else (b, a)
        canvas = np.full((frames, height + height % 2, left.shape[2] + right.shape[2] + gap, 3), 255, np.uint8)
        canvas[:, : left.shape[1], : left.shape[2]] = left[:frames]
        canvas[:, : right.shape[1], left.shape[2] + gap :] = right[:frames]
        if canvas.shape[2] % 2:
            canvas = canvas[:, :, :-1]
        write_video(out / name, canvas, probe_video(dir_a / name).fps or 8.0)
        lines.append(json.dumps({"item": name, "left": "A" if a_left else "B"}))
    key = out / "key.jsonl"
    write_bytes_atomic(key, ("\n".join(lines) + "\n").encode())
    return key


def gsb_from_choices(key: Mapping[str, str], choices: Mapping[str, str]) -> GSB:
    """``key``: item -> "A"/"B" on the left; ``choices``: item -> "left"/"right"/"same" (the preferred side)."""
    judgements = []
    for item, choice in choices.items():
        if choice == "same":
            judgements.append("same")
        elif choice in ("left", "right"):
            a_chosen = (choice == "left") == (key[item] == "A")
            judgements.append("good" if a_chosen else "bad")
        else:
            raise ValueError(f"choice for {item!r} must be left, right or same, got {choice!r}")
    return gsb_ratio(judgements)


def automatic_judge(scores_a: Mapping[str, float], scores_b: Mapping[str, float], margin: float = 0.02) -> GSB:
    """Per shared item, A is good/bad when its composite score beats B's by more than ``margin``."""
    shared = sorted(set(scores_a) & set(scores_b))
    judgements = []
    for item in shared:
        delta = scores_a[item] - scores_b[item]
        judgements.append("good" if delta > margin else "bad" if delta < -margin else "same")
    return gsb_ratio(judgements)
