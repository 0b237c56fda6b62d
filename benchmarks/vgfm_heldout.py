"""How well does a text-to-video model follow held-out LibraWorld prompts? (issue #4's acceptance numbers)

Prompts are the plain captions of a held-out-split LibraWorld folder (identities never seen in training,
including the reserved shape-colour combinations). For each prompt the model samples one video (seed =
prompt index); the evaluation probes read subject colour and motion direction, and VBench's dynamic
degree is compared with the real clips of the same prompts, which are read the same way (probe ceiling), and
with those clips after a round trip through the model's latents (what its latent space can show at best).

    python benchmarks/vgfm_heldout.py --model libragen/models/weights/vgfm --world <heldout folder> --n 200

Writes ``<out>/vgfm_heldout.json`` and a montage PNG (generated rows above their real clips).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from libragen.core.video import read_video
from libragen.eval.generation import heldout_prompts, read_prompt, summarise
from libragen.eval.probes import load_probes
from libragen.infer.sampler import TextCFG, sample, to_uint8_frames
from libragen.models import load_backbone
from libragen.world.identity import RESERVED_COMBOS

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe


def montage(generated: list[np.ndarray], real: list[np.ndarray], path: Path, frames: int = 6) -> None:
    rows = []
    for gen, ref in zip(generated, real, strict=True):
        pick = np.linspace(0, len(gen) - 1, frames).round().astype(int)
        rows.append(np.concatenate([gen[i] for i in pick], 1))
        rows.append(np.concatenate([ref[i] for i in pick], 1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    Image.fromarray(np.concatenate(rows, 0)).resize(
        (rows[0].shape[1] * 2, sum(r.shape[0] for r in rows) * 2), Image.NEAREST
    ).save(path)


@torch.no_grad()
def latent_round_trip(backbone, frames: np.ndarray) -> np.ndarray:
    """A real clip encoded to the backbone's latents and decoded again: the best its latents can show."""
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float()[None] / 127.5 - 1
    return to_uint8_frames(backbone.decode_video(backbone.encode_video(video.to(backbone.device))))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--world", required=True, help="held-out LibraWorld folder (libragen world make --split heldout)"
    )
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument(
        "--stagger", type=float, default=0.0, help="pyramid schedule: frame group g trails g-1 by this (0: off)"
    )
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--out", default="docs/examples/vgfm")
    parser.add_argument("--videos", default=None, help="also write the generated mp4s here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = load_backbone(args.model).eval()
    probe = load_probes().attribute
    items = heldout_prompts(args.world, args.n)
    prompts = [p for p, _ in items]
    started = time.time()
    generated: list[np.ndarray] = []
    for start in range(0, len(prompts), args.batch):
        chunk = prompts[start : start + args.batch]
        videos = sample(
            backbone,
            chunk,
            steps=args.steps,
            guidance=TextCFG(args.guidance),
            seed=list(range(start, start + len(chunk))),
            stagger=args.stagger,
        )
        generated += to_uint8_frames(videos)
        print(f"{len(generated)}/{len(prompts)} videos, {time.time() - started:.0f} s", flush=True)
    seconds = time.time() - started
    if args.videos:
        from libragen.core.video import write_video

        for i, frames in enumerate(generated):
            write_video(Path(args.videos) / f"{i:04d}.mp4", frames, backbone.fps)
    real = [read_video(path) for _, path in items]
    through_latents = [latent_round_trip(backbone, v) for v in real]
    gen_read = [read_prompt(probe, v, p, backbone.fps) for v, p in zip(generated, prompts, strict=True)]
    real_read = [read_prompt(probe, v, p, backbone.fps) for v, p in zip(real, prompts, strict=True)]
    latent_read = [read_prompt(probe, v, p, backbone.fps) for v, p in zip(through_latents, prompts, strict=True)]
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": describe(),
        "model": args.model,
        "world": args.world,
        "sampling": {
            "steps": args.steps,
            "guidance": args.guidance,
            "sampler": "Euler (FlowMatchEulerDiscreteScheduler)" if not args.stagger else "Euler, staggered groups",
            "stagger": args.stagger,
        },
        "seconds_per_video": seconds / len(prompts),
        "generated": summarise(gen_read),
        "real": summarise(real_read),
        "real_through_latents": summarise(latent_read),
    }
    groups = {
        "1 subject": [i for i, r in enumerate(real_read) if len(r.colour_ok) == 1],
        "2 subjects": [i for i, r in enumerate(real_read) if len(r.colour_ok) == 2],
        "3-4 subjects": [i for i, r in enumerate(real_read) if len(r.colour_ok) >= 3],
        "with a reserved shape-colour combo": [
            i for i, p in enumerate(prompts) if any(f"{c} {s}" in p for s, c in RESERVED_COMBOS)
        ],
    }
    result["groups"] = {
        name: {"generated": summarise([gen_read[i] for i in idx]), "real": summarise([real_read[i] for i in idx])}
        for name, idx in groups.items()
        if idx
    }
    result["dynamic_degree_ratio"] = result["generated"]["dynamic_degree"] / max(result["real"]["dynamic_degree"], 1e-9)
    (out / "vgfm_heldout.json").write_text(json.dumps(result, indent=2))
    montage(generated[:8], real[:8], out / "vgfm_heldout_montage.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
