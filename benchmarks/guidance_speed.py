"""Sampling wall time: time-dependent three-branch CFG (batched, skipping) vs static three-pass and two-pass CFG.

One process, one backbone (``--model``, default the shipped VGFM; speed does not depend on the weights), the same
prompts, references, noise and steps for every variant; variants run in turns, repeated, and
the median wall time of each is compared (issue #10's speed targets: ≤ 0.8× the static three-pass loop, ≤ 1.1×
ordinary two-pass CFG).

* ``static-3pass``: v(∅,∅), v(∅,R), v(T,R) every step, one forward each (Phantom's loop and scales, 5 / 7.5).
* ``cfg-2pass``: text CFG, v(∅,R) and v(T,R), one forward each (the usual loop).
* ``dynamic``: LibraGen — the schedules (default: ``libragen generate``'s defaults with references), branches with
  weight 0 skipped, the rest in one forward.

Also checks that the batched sampler equals the naive loop when nothing is skipped.

    python benchmarks/guidance_speed.py --steps 20 --repeats 5 [--model DIR] [--ref-scale S] [--text-scale S]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe

from libragen.infer.guidance import DEFAULT_REF_SCALE, DEFAULT_TEXT_SCALE, DynamicCFG, parse_schedule
from libragen.infer.sampler import TextCFG, sample
from libragen.models import SHIPPED_VGFM, load_backbone

PROMPTS = [
    "Ref 1[a red round creature] hops quickly to the left on a brick wall.",
    "Ref 1[a blue star-shaped creature] glides slowly upward on wooden planks.",
    "Ref 1[a green square creature] zigzags to the right and Ref 2[a yellow oval creature] stays still on snow.",
    "Ref 1[a purple cross-shaped creature] glides slowly downward on a grass field.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ref-scale", default=DEFAULT_REF_SCALE, help="dynamic: reference schedule")
    parser.add_argument("--text-scale", default=DEFAULT_TEXT_SCALE, help="dynamic: text schedule")
    parser.add_argument("--model", default=str(SHIPPED_VGFM), help="saved backbone folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/guidance_speed"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = load_backbone(args.model).eval()
    size = backbone.video_size[-1]
    refs_images = torch.rand(len(PROMPTS), 2, 3, size, size) * 2 - 1
    mask = torch.tensor([[True, False], [True, False], [True, True], [True, False]])
    refs = backbone.encode_references(refs_images, mask)
    noise = torch.randn(len(PROMPTS), *backbone.latent_shape, generator=torch.Generator().manual_seed(1))
    s_txt = parse_schedule(args.text_scale)
    variants = {  # a forward costs the same at any scale: the baselines use Phantom's scales (three distinct rows)
        "static-3pass": (DynamicCFG(parse_schedule("5"), parse_schedule("7.5")), False),
        "cfg-2pass": (TextCFG(7.5), False),
        "dynamic": (DynamicCFG(parse_schedule(args.ref_scale), s_txt), True),
    }
    common = {"refs": refs, "steps": args.steps, "noise": noise}

    # correctness: batched == naive when nothing is skipped
    everything = DynamicCFG(parse_schedule("linear:4:2"), parse_schedule("cosine:6:3"))
    naive = sample(backbone, PROMPTS, guidance=everything, batch_branches=False, **common)
    batched = sample(backbone, PROMPTS, guidance=everything, **common)
    max_diff = float((naive - batched).abs().max())

    times: dict[str, list[float]] = {name: [] for name in variants}
    sample(backbone, PROMPTS, guidance=variants["dynamic"][0], **common)  # warm-up
    for _ in range(args.repeats):
        for name, (guidance, batched_branches) in variants.items():
            start = time.perf_counter()
            sample(backbone, PROMPTS, guidance=guidance, batch_branches=batched_branches, **common)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "machine": describe(),
        "threads": args.threads,
        "model": args.model,
        "command": " ".join(["python", *sys.argv]),
        "steps": args.steps,
        "videos": len(PROMPTS),
        "dynamic_schedules": {"ref": args.ref_scale, "text": args.text_scale},
        "median_seconds": medians,
        "dynamic_vs_static_3pass": medians["dynamic"] / medians["static-3pass"],
        "dynamic_vs_cfg_2pass": medians["dynamic"] / medians["cfg-2pass"],
        "batched_vs_naive_max_abs_diff": max_diff,
        "runs": times,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "guidance_speed.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
