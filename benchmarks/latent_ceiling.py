"""What can a latent space show at best? Real held-out LibraWorld clips through encode + decode, read by the probes.

Issue #4's bars (subject colour and motion direction read as prompted in >= 85 % of videos) can only be met by a
model whose latent space keeps them: this reads the real clips of held-out prompts after a round trip through
pooled latents (``latent_downsample`` f: f x f average pooling, decoded by bilinear upsampling — no weights),
next to the clips themselves, with the same probes as ``vgfm_heldout.py``. A learned decoder can only do better
than bilinear at the same f (session 9: f = 4 learned reads colour 0.71, direction 0.81).

    libragen world make --n 600 --split heldout --seed 202 --out /tmp/probe_data/heldout
    python benchmarks/latent_ceiling.py --world /tmp/probe_data/heldout --n 100 --downsample 1 2 4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from libragen.core.video import read_video
from libragen.eval.generation import heldout_prompts, read_prompt, summarise
from libragen.eval.probes import load_probes
from libragen.models.libraworld import LibraWorldBackbone, LibraWorldBackboneConfig

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe
from vgfm_heldout import latent_round_trip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", required=True, help="held-out LibraWorld folder (world make --split heldout)")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--downsample", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()

    torch.set_num_threads(2)
    probe = load_probes().attribute
    items = heldout_prompts(args.world, args.n)
    prompts = [p for p, _ in items]
    real = [read_video(path) for _, path in items]
    frames, height, width, _ = real[0].shape
    results = {}
    for factor in args.downsample:
        config = LibraWorldBackboneConfig(
            frames=frames, height=height, width=width, latent_downsample=factor, patch=(1, 1, 1)
        )
        backbone = LibraWorldBackbone(config).eval()
        clips = real if factor == 1 else [latent_round_trip(backbone, clip) for clip in real]
        reads = [read_prompt(probe, clip, prompt, backbone.fps) for clip, prompt in zip(clips, prompts, strict=True)]
        results[f"pooled {factor}x, bilinear" if factor > 1 else "real clips"] = summarise(reads)
        single = [r for r in reads if len(r.colour_ok) == 1]
        results[f"pooled {factor}x, single-subject prompts" if factor > 1 else "real, single-subject prompts"] = (
            summarise(single) if single else {}
        )
    print(f"machine: {describe()}; {len(prompts)} held-out prompts from {args.world}\n")
    keys = sorted({k for summary in results.values() for k in summary if isinstance(summary[k], float)})
    print("| clips | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, summary in results.items():
        print(f"| {name} | " + " | ".join(f"{summary.get(k, float('nan')):.2f}" for k in keys) + " |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"command": "python " + " ".join(sys.argv), "machine": describe(), "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
