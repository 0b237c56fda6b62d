"""Raw vs rephrased user prompts: text alignment of the videos a model generates from them (issue #10).

Held-out LibraWorld clip plans (unseen identities) are described the way a user might, by the paraphraser of
``rephrase_accuracy.py`` (other verbs, adverbs, direction words, shape nouns and scene phrases, many outside the
rephraser's keyword rules). For each plan the model samples one video from the raw paraphrase and one from the
offline rephraser's final prompt (what ``libragen generate`` does by default), from the same noise; the evaluation
suite's text alignment (attribute probe: colour, shape, motion, scene … against the plan's true caption) reads both.
Text-to-video, no references: the paraphrases describe subjects in words only.

    python benchmarks/rephrase_alignment.py --model libragen/models/weights/vgfm --n 100 --out docs/examples/g
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import provenance
from rephrase_accuracy import paraphrase

from libragen.eval.heldout import write_and_evaluate
from libragen.eval.probes import load_probes
from libragen.infer.rephrase import OfflineRephraser
from libragen.infer.sampler import TextCFG, sample, to_uint8_frames
from libragen.models import SHIPPED_VGFM, load_backbone
from libragen.world.caption import caption
from libragen.world.config import WorldConfig
from libragen.world.plan import plan_world


@torch.no_grad()
def videos_for(backbone, prompts: list[str], steps: int, guidance: float, batch: int) -> list:
    """One uint8 video per prompt; prompt k uses seed k whatever the batch."""
    videos = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        seeds = list(range(start, start + len(chunk)))
        out = sample(backbone, chunk, steps=steps, guidance=TextCFG(guidance), seed=seeds)
        videos += list(to_uint8_frames(out))
    return videos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHIPPED_VGFM))
    parser.add_argument("--n", type=int, default=100, help="held-out clip plans")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    specs = [s for s in plan_world(WorldConfig(), args.n, seed=args.seed, split="heldout") if s.subjects]
    rephraser = OfflineRephraser()
    raw = [paraphrase(spec, rng)[0] for spec in specs]
    rephrased = [rephraser(prompt, []).final for prompt in raw]
    truth = [caption(spec) for spec in specs]
    backbone = load_backbone(args.model).eval()
    probes = load_probes()
    summaries, per_prompt = {}, {}
    for name, prompts in (("raw", raw), ("rephrased", rephrased)):
        print(f"{name}:", file=sys.stderr, flush=True)
        started = time.perf_counter()
        videos = videos_for(backbone, prompts, args.steps, args.guidance, args.batch)
        jobs = [{"id": f"{k:04d}", "prompt": truth[k], "refs": []} for k in range(len(specs))]
        report = write_and_evaluate(args.out / name, jobs, videos, backbone.fps, probes, time.perf_counter() - started)
        summaries[name] = report["summary"]
        per_prompt[name] = [report["per_video"][job["id"]]["ta"] for job in jobs]
    differences = [r - w for r, w in zip(per_prompt["rephrased"], per_prompt["raw"], strict=True)]
    result = {
        **provenance(),
        "prompts": len(specs),
        "steps": args.steps,
        "guidance": args.guidance,
        "text_alignment": {name: summaries[name]["ta"] for name in summaries},
        "rephrased_higher_share": sum(d > 0 for d in differences) / len(differences),
        "tie_share": sum(d == 0 for d in differences) / len(differences),
        "ta_difference_mean": statistics.mean(differences),
        "ta_difference_std_error": statistics.stdev(differences) / len(differences) ** 0.5,
        "summaries": summaries,
        "examples": [
            {"raw": r, "rephrased": f, "truth": t} for r, f, t in zip(raw[:8], rephrased[:8], truth[:8], strict=True)
        ],
    }
    (args.out / "rephrase_alignment.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("summaries", "examples")}, indent=2))


if __name__ == "__main__":
    main()
