"""Tune-to-Balance on LibraWorld: the VGFM, the in-pair, cross-pair and mixed SFT LoRAs, and merges (issue #8's table).

Every variant generates one video per held-out prompt of a meta file written by ``libragen eval world-meta``
(unseen identities; each prompt's references are crops of the same subjects from *other* clips where there are
any), from the same noise (seed = prompt index), and the evaluation suite reads them: subject consistency,
copy-paste, dynamic degree, motion smoothness, text alignment (attribute probe), visual quality.

Variants: ``vgfm`` (the base model, text only: no references, the plain caption), one per ``--lora NAME=PATH``
(fused at weight 1; ``PATH+PATH2+…`` fuses several in order, e.g. an SFT LoRA and the DPO LoRA trained on it), and
``merge@W`` for each ``--merge-weights`` W: ``libragen merge``'s peft combination of the ``in`` LoRA at W and the
``cross`` LoRA at 1 - W (default ``cat``: exactly W·ΔW_in + (1 - W)·ΔW_cross).
A variant whose report exists is not run again (rerun to resume).

    python benchmarks/sft_balance.py --base runs/vgfm/final --meta meta/meta.jsonl \
        --lora in=runs/sft_in/final --lora cross=runs/sft_cross/final --lora mixed=runs/sft_mixed/final \
        --merge-weights 0.2 0.35 0.5 0.65 0.8 --n 60 --out docs/examples/sft_balance

With ``--world`` (the LibraWorld folder the meta file describes) two more rows read the real clips and the real clips
after a round trip through the base model's latents: the evaluation's ceiling and the latent space's.

``--generic-tags TEXT`` gives the models prompts whose Ref-tag descriptions are TEXT ("Ref 1[a creature] hops …"; the
VGFM reads "a creature hops …"), so a subject's look can only come from its references; the evaluation still reads
each video against the full caption. ``--without-refs NAME`` adds a row "NAME, no refs": that model, the same prompts,
no references — what the references add.

Writes ``<out>/<variant>/report.json`` (per video and summary), ``<out>/sft_balance.json``, ``sft_balance.md`` (the
table) and ``sft_balance.png`` (each metric against the merge weight, single LoRAs as reference lines).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from libragen.core.video import read_video
from libragen.eval.heldout import generate_videos, read_jobs, write_and_evaluate
from libragen.eval.probes import load_probes
from libragen.infer.sampler import TextCFG
from libragen.models import load_backbone
from libragen.models.backbone import Backbone
from libragen.train.merge import MERGED, fuse_lora, merge_loras

sys.path.insert(0, str(Path(__file__).parent))
from machine import provenance
from vgfm_heldout import latent_round_trip

#: Report columns: summary key, label, whether higher is better.
COLUMNS = [
    ("consistency", "subject consistency", True),
    ("copy_paste", "copy-paste", False),
    ("dynamic_degree", "dynamic degree", True),
    ("smoothness", "motion smoothness", True),
    ("ta", "text alignment", True),
    ("visual_quality", "visual quality", True),
]
#: With ``--world``: Fréchet distance of the attribute probe's video features to the prompts' real clips.
REALISM = ("realism_fd", "realism FD", False)


NO_REFS = ", no refs"


def variant_backbone(name: str, base: str, loras: dict[str, str], method: str) -> Backbone:
    """The base model, a LoRA fused at weight 1, or ``merge@W`` (in at W, cross at 1 - W) fused."""
    name = name.removesuffix(NO_REFS)
    if name == "vgfm":
        return load_backbone(base)
    if name.startswith("merge@"):
        weight = float(name.split("@", 1)[1])
        backbone = load_backbone(base)
        merged = merge_loras(backbone, [(loras["in"], weight), (loras["cross"], 1.0 - weight)], method)
        merged.merge_and_unload(adapter_names=[MERGED])
        return backbone
    backbone = load_backbone(base)
    for path in loras[name].split("+"):
        fuse_lora(backbone, path)
    return backbone


def real_clips(jobs: list[dict], world: Path, backbone: Backbone | None) -> list[np.ndarray]:
    """The held-out clips themselves, or (given the base ``backbone``) after a round trip through its latents: what
    the evaluation reads at best, and what the model's latent space can show at best."""
    clips = (read_video(world / job["real"]) for job in jobs)
    return [frames if backbone is None else latent_round_trip(backbone, frames) for frames in clips]


def run_variant(name: str, args: argparse.Namespace, jobs: list[dict], loras: dict[str, str], probes) -> dict:
    folder = args.out / name
    report_path = folder / "report.json"
    if report_path.is_file():
        return json.loads(report_path.read_text())
    torch.manual_seed(0)
    started = time.perf_counter()
    if name in ("real", "real through latents"):
        backbone = load_backbone(args.base).eval()
        videos = real_clips(jobs, args.world, backbone if name != "real" else None)
    else:
        backbone = variant_backbone(name, args.base, loras, args.method).eval()
        with_refs = name != "vgfm" and not name.endswith(NO_REFS)
        videos = generate_videos(backbone, jobs, with_refs, args.steps, TextCFG(args.guidance), args.batch)
    real = [args.world / job["real"] for job in jobs] if args.world else None
    return write_and_evaluate(folder, jobs, videos, backbone.fps, probes, time.perf_counter() - started, real)


def table(summaries: dict[str, dict], extra: dict[str, dict[str, str]] | None = None) -> str:
    """Markdown table: a row per variant, the ``COLUMNS`` metrics, after optional ``extra`` columns {header: {variant:
    cell}}."""
    extra = extra or {}
    columns = COLUMNS + ([REALISM] if any(REALISM[0] in summary for summary in summaries.values()) else [])
    lines = ["| variant | " + " | ".join([*extra, *(label for _, label, _ in columns)]) + " |"]
    lines.append("|---" * (len(columns) + len(extra) + 1) + "|")
    for name, summary in summaries.items():
        cells = [column[name] for column in extra.values()]
        cells += [f"{summary.get(key, float('nan')):.3f}" for key, _, _ in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summaries: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    merges = sorted((float(n.split("@")[1]), n) for n in summaries if n.startswith("merge@") and NO_REFS not in n)
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, (key, label, higher) in zip(axes.flat, COLUMNS, strict=True):
        ax.set_title(f"{label} ({'higher' if higher else 'lower'} is better)", fontsize=10)
        if not merges:  # no weight axis: one bar per variant
            ax.bar(range(len(summaries)), [summary.get(key, np.nan) for summary in summaries.values()])
            ax.set_xticks(range(len(summaries)), list(summaries), rotation=35, ha="right", fontsize=8)
            continue
        ax.plot([w for w, _ in merges], [summaries[n].get(key, np.nan) for _, n in merges], "o-", label="merge")
        for name, colour, style in [
            ("in", "C1", "--"),
            ("cross", "C2", "--"),
            ("mixed", "C3", ":"),
            ("vgfm", "k", ":"),
            ("real through latents", "C7", "-."),
            ("real", "C5", "-"),
            *((name, "C9", (0, (1, 3))) for name in summaries if name.endswith(NO_REFS)),
        ]:
            if name in summaries:
                ax.axhline(summaries[name].get(key, np.nan), color=colour, ls=style, label=name, lw=1.2)
        ax.set_xlabel("in-pair weight of the merge (cross-pair = 1 - w)")
    if merges:
        axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the VGFM the LoRAs were trained on")
    parser.add_argument("--meta", type=Path, required=True, help="meta.jsonl of `libragen eval world-meta`")
    parser.add_argument("--lora", action="append", default=[], help="NAME=PATH (in, cross, mixed …); repeat")
    parser.add_argument("--merge-weights", type=float, nargs="*", default=[], help="in-pair weights of the merges")
    parser.add_argument("--method", default="cat", help="peft combination of the merges (cat: exact Σ wᵢ·ΔWᵢ)")
    parser.add_argument("--world", type=Path, help="the meta file's LibraWorld folder: adds rows for its real clips")
    parser.add_argument("--n", type=int, default=60, help="first N meta prompts")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.0, help="text CFG (references in both branches)")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generic-tags", help="models read Ref tags with this description, e.g. 'a creature'")
    parser.add_argument("--without-refs", nargs="*", default=[], help="also run these variants without references")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loras = dict(spec.split("=", 1) for spec in args.lora)
    if args.merge_weights and not {"in", "cross"} <= loras.keys():
        parser.error("--merge-weights needs --lora in=… and --lora cross=…")
    jobs = read_jobs(args.meta, args.n, args.generic_tags)
    probes = load_probes()
    names = ["vgfm", *loras, *(f"merge@{w:g}" for w in args.merge_weights)]
    names += [name + NO_REFS for name in args.without_refs]
    if args.world:
        names += ["real", "real through latents"]
    summaries, seconds = {}, {}
    for name in names:
        print(f"{name}:", file=sys.stderr, flush=True)
        report = run_variant(name, args, jobs, loras, probes)
        summaries[name], seconds[name] = report["summary"], report.get("generation_seconds")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        **provenance(),
        "prompts": len(jobs),
        "steps": args.steps,
        "guidance": args.guidance,
        "method": args.method,
        "generic_tags": args.generic_tags,
        "summaries": summaries,
        "generation_seconds": seconds,
    }
    (args.out / "sft_balance.json").write_text(json.dumps(result, indent=2))
    (args.out / "sft_balance.md").write_text(table(summaries) + "\n")
    plot(summaries, args.out / "sft_balance.png")
    print(table(summaries))


if __name__ == "__main__":
    main()
