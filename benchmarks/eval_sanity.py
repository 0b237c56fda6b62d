"""Sanity of the evaluation metrics: real held-out clips against corrupted versions of themselves.

    libragen world make --n 120 --split heldout --seed 4242 --out /tmp/heldout
    libragen eval world-meta --world /tmp/heldout --out /tmp/heldout-meta
    python benchmarks/eval_sanity.py --world /tmp/heldout --meta /tmp/heldout-meta/meta.jsonl --n 40

For each clip: smoothness vs the clip shuffled in time, dynamic degree vs the clip frozen on its first frame,
visual quality vs the clip blurred (Gaussian sigma 2), subject consistency vs the next clip's references
(subject swap), text alignment vs the next clip's prompt (prompt swap). Prints mean scores and how often the
real clip wins.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from libragen.core.video import read_video
from libragen.eval.alignment import text_alignment
from libragen.eval.consistency import subject_consistency
from libragen.eval.motion import motion_scores
from libragen.eval.probes import load_probes
from libragen.eval.quality import quality_scores
from libragen.eval.runner import read_meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--meta", type=Path, required=True)
    parser.add_argument("--n", type=int, default=40)
    args = parser.parse_args()

    probes = load_probes()
    items = [item for item in read_meta(args.meta, args.world) if item.refs][: args.n]
    rng = np.random.default_rng(0)
    rows: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("smoothness", "dynamic_degree", "visual_quality", "consistency", "text_alignment")
    }
    for item, other in zip(items, items[1:] + items[:1], strict=True):
        frames = read_video(item.video)
        refs = [np.asarray(Image.open(r).convert("RGB")) for r in item.refs]
        foreign = [np.asarray(Image.open(r).convert("RGB")) for r in other.refs]
        real_motion = motion_scores(frames, 8.0)
        rows["smoothness"].append(
            (real_motion.smoothness, motion_scores(frames[rng.permutation(len(frames))], 8.0).smoothness)
        )
        frozen = np.repeat(frames[:1], len(frames), axis=0)
        rows["dynamic_degree"].append((real_motion.dynamic, motion_scores(frozen, 8.0).dynamic))
        blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames])
        rows["visual_quality"].append((quality_scores(frames).visual_quality, quality_scores(blurred).visual_quality))
        rows["consistency"].append(
            (
                subject_consistency(probes.identity, frames, refs)["consistency"],
                subject_consistency(probes.identity, frames, foreign)["consistency"],
            )
        )
        rows["text_alignment"].append(
            (
                text_alignment(probes.attribute, frames, item.prompt)["ta"],
                text_alignment(probes.attribute, frames, other.prompt)["ta"],
            )
        )
    corruption = {
        "smoothness": "shuffled in time",
        "dynamic_degree": "frozen",
        "visual_quality": "blurred",
        "consistency": "subject-swapped refs",
        "text_alignment": "prompt-swapped",
    }
    print(f"{len(items)} real held-out clips from {args.world}\n")
    print("| metric | real (mean) | corrupted (mean) | corruption | real higher |")
    print("|---|---|---|---|---|")
    for name, pairs in rows.items():
        real, bad = np.array(pairs).T
        wins = float(np.mean(real > bad))
        print(f"| {name} | {real.mean():.3f} | {bad.mean():.3f} | {corruption[name]} | {wins:.0%} |")


if __name__ == "__main__":
    main()
