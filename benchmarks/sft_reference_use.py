"""Does an S2V model use its reference images? (a forward-only check for issue #8, probe-free)

Held-out real clips (meta file of ``libragen eval world-meta``: each clip's references are crops of its subjects,
from other clips where there are any) are noised, and the model's velocity error is measured three ways from the
same noise and timestep: with the clip's own references, with another clip's references (shifted by one in the
meta file), and with none. A model that reads its references predicts the real clip better with the right ones:
``gain_vs_swapped`` = 1 − e(own) / e(swapped). Models are the base (with references it never trained on) and each
``--lora NAME=PATH`` fused at weight 1. ``--generic-tags TEXT`` replaces every Ref-tag description of the prompts by
TEXT ("Ref 1[a creature] hops …"), so the looks can only come from the references.

    python benchmarks/sft_reference_use.py --base libragen/models/weights/vgfm --meta meta/meta.jsonl \
        --world <held-out folder> --lora in=runs/sft_in/final --lora cross=runs/sft_cross/final --n 40
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from libragen.core.video import read_video
from libragen.models import load_backbone
from libragen.models.backbone import Backbone
from libragen.train.flow import velocity_errors
from libragen.train.merge import load_fused
from libragen.train.sft import encode_reference_files, stack_reference_latents
from libragen.world.caption import generic_ref_tags

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, report


@torch.no_grad()
def measure(backbone: Backbone, items: list[dict], world: Path, timesteps: list[float], seed: int) -> dict:
    frames, height, width = backbone.video_size
    clips = [read_video(world / item["video"], size=(width, height))[:frames] for item in items]
    video = torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0
    clean = backbone.encode_video(video.to(backbone.device))
    own = [encode_reference_files(backbone, item["refs"]) for item in items]
    swapped = own[1:] + own[:1]
    text = backbone.encode_text([item["prompt"] for item in items])
    generator = torch.Generator().manual_seed(seed)
    result = {}
    for t_value in timesteps:
        noise = torch.randn(clean.shape, generator=generator).to(clean.device)
        t = torch.full((len(items),), t_value, device=clean.device)
        errors = {
            name: velocity_errors(backbone, clean, text, t, noise, refs).cpu()
            for name, refs in (
                ("own", stack_reference_latents(backbone, own)),
                ("swapped", stack_reference_latents(backbone, swapped)),
                ("none", None),
            )
        }
        result[f"t={t_value:g}"] = {
            **{f"error_{k}": float(v.mean()) for k, v in errors.items()},
            "gain_vs_swapped": float(1 - errors["own"].mean() / errors["swapped"].mean()),
            "gain_vs_none": float(1 - errors["own"].mean() / errors["none"].mean()),
            "own_better_than_swapped": float((errors["own"] < errors["swapped"]).float().mean()),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True)
    parser.add_argument("--meta", type=Path, required=True, help="meta.jsonl of `libragen eval world-meta`")
    parser.add_argument("--world", type=Path, required=True, help="the LibraWorld folder the meta file describes")
    parser.add_argument("--lora", action="append", default=[], help="NAME=PATH; repeat")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--timesteps", type=float, nargs="+", default=[0.3, 0.6, 0.9])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generic-tags", help="replace the Ref-tag descriptions by this text, e.g. 'a creature'")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items = []
    for line in args.meta.read_text().splitlines()[: args.n]:
        item = json.loads(line)
        item["refs"] = [str(args.meta.parent / r) for r in item["refs"]]
        if args.generic_tags:
            item["prompt"] = generic_ref_tags(item["prompt"], args.generic_tags)
        items.append(item)
    models = {"base": None, **dict(spec.split("=", 1) for spec in args.lora)}
    results = {}
    for name, lora in models.items():
        backbone = (load_backbone(args.base) if lora is None else load_fused(args.base, lora)).eval()
        results[name] = measure(backbone, items, args.world, args.timesteps, args.seed)
        print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    report(
        {"machine": describe(), "command": " ".join(["python", *sys.argv]), "clips": len(items), "models": results},
        args.out,
    )


if __name__ == "__main__":
    main()
