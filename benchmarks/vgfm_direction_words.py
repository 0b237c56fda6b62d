"""Does a text-to-video model move things the way the direction word says? (a probe-free check for issue #4)

For N random subjects and scenes, four prompts differ only in the direction word ("to the left", "to the
right", "upward", "downward") and are sampled from the same noise. The mean optical flow of the moving pixels
(top 10 % flow magnitude) of each video is compared: a model that follows the word moves the "left" video more
to the left than the "right" one from the same seed, and the "upward" video more upward than the "downward" one
(chance: 0.5 each).

    python benchmarks/vgfm_direction_words.py --model runs/vgfm/final --n 24
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from libragen.eval.motion import moving_flow
from libragen.infer.sampler import TextCFG, sample, to_uint8_frames
from libragen.models import load_backbone
from libragen.world.identity import COLOUR_NAMES, SHAPES
from libragen.world.scene import SCENE_NAMES

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, report

DIRECTIONS = {"left": "to the left", "right": "to the right", "up": "upward", "down": "downward"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, default=24, help="subjects (each sampled with the four directions)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument(
        "--stagger", type=float, default=0.0, help="pyramid schedule: frame group g trails g-1 by this (0: off)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the result to this JSON file")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.model).eval()
    rng = np.random.default_rng(0)
    flows: dict[str, list[tuple[float, float]]] = {d: [] for d in DIRECTIONS}
    for index in range(args.n):
        colour, shape, scene = (rng.choice(names) for names in (COLOUR_NAMES, SHAPES, SCENE_NAMES))
        prompts = [f"a {colour} {shape} creature glides quickly {words} on {scene}." for words in DIRECTIONS.values()]
        videos = to_uint8_frames(
            sample(
                backbone,
                prompts,
                steps=args.steps,
                guidance=TextCFG(args.guidance),
                seed=[index] * 4,
                stagger=args.stagger,
            )
        )
        for direction, video in zip(DIRECTIONS, videos, strict=True):
            flows[direction].append(moving_flow(video))
    mean = {d: np.mean(v, axis=0).round(3).tolist() for d, v in flows.items()}
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": describe(),
        "model": args.model,
        "subjects": args.n,
        "mean_moving_flow_xy_px_per_frame": mean,
        "left_more_leftward_than_right": float(
            np.mean([a[0] < b[0] for a, b in zip(flows["left"], flows["right"], strict=True)])
        ),
        "up_more_upward_than_down": float(
            np.mean([a[1] < b[1] for a, b in zip(flows["up"], flows["down"], strict=True)])
        ),
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
