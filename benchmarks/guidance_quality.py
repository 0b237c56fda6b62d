"""Guidance schedules on a LibraWorld S2V model: subject consistency, text alignment and forwards per step (issue #10).

Every variant generates one video per held-out prompt of a meta file written by ``libragen eval world-meta`` (unseen
identities; references cropped from the same subjects' *other* clips where there are any) from the same noise (seed =
prompt index), and the evaluation suite reads them, as in ``sft_balance.py``. A variant is ``NAME=REF/TEXT``:

* ``REF`` and ``TEXT`` are schedules as ``libragen generate --ref-scale/--text-scale`` read them ("3",
  "interval:3:0.8:1", "linear:4:2", "0:7.5,0.6:5,1:3"): the three-branch guidance
  v = v(∅,∅) + s_ref(t)·[v(∅,R) − v(∅,∅)] + s_txt(t)·[v(T,R) − v(∅,R)], branches with weight 0 skipped;
* ``REF`` = ``cfg``: ordinary two-pass text CFG with the references in both branches (scale ``TEXT``, a number).

"rows per step" is the number of branch rows the sampler evaluates per step on average (each row costs about one
forward on a compute-bound machine): 3 for static three-branch guidance, 2 for text CFG.

    python benchmarks/guidance_quality.py --model runs/vgfm/final --lora runs/sft/merged --meta meta/meta.jsonl \
        --variant cfg=cfg/4 --variant static=3/4 --variant dynamic=interval:3:0.8:1/4 --n 60 --out docs/examples/g

Writes ``<out>/<variant>/report.json``, ``<out>/guidance_quality.json``, ``guidance_quality.md`` (with each variant's
paired difference to the first one, ± standard error over prompts) and ``guidance_quality.png`` (subject consistency
against text alignment); a variant whose report exists is not run again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

sys.path.insert(0, str(Path(__file__).parent))
from machine import provenance
from sft_balance import table

from libragen.eval.heldout import generate_videos, paired_difference, read_jobs, write_and_evaluate
from libragen.eval.probes import load_probes
from libragen.infer.guidance import DynamicCFG, parse_schedule
from libragen.infer.sampler import Guidance, TextCFG
from libragen.models.backbone import Backbone
from libragen.train.merge import load_fused


def parse_variant(spec: str) -> tuple[str, Guidance]:
    """``NAME=REF/TEXT`` -> (name, guidance); see the module docstring."""
    name, sep, schedules = spec.partition("=")
    ref, slash, text = schedules.rpartition("/")
    if not sep or not slash or not name:
        raise ValueError(f"{spec!r}: a variant is NAME=REF/TEXT, e.g. dynamic=interval:3:0.8:1/4 or cfg=cfg/4")
    if ref == "cfg":
        return name, TextCFG(float(text))
    return name, DynamicCFG(parse_schedule(ref), parse_schedule(text))


def rows_per_step(guidance: Guidance, backbone: Backbone, steps: int) -> float:
    """Mean number of branches the sampler evaluates per step (the sampler's own timesteps)."""
    scheduler = FlowMatchEulerDiscreteScheduler(shift=backbone.sampling_shift)
    scheduler.set_timesteps(steps)
    sigmas = scheduler.sigmas[:steps].tolist()
    return sum(len(guidance.branches_at(t)) for t in sigmas) / steps


PAIRED = [("consistency", "Δ consistency"), ("ta", "Δ text alignment")]


def rows_table(rows: dict[str, dict]) -> str:
    schedules = {name: row["spec"] for name, row in rows.items()}
    per_step = {name: f"{row['rows_per_step']:.2f}" for name, row in rows.items()}
    extra = {"schedules": schedules, "rows per step": per_step}
    for key, label in PAIRED:
        extra[label] = {name: "{:+.3f} ± {:.3f}".format(*row["vs_first"][key]) for name, row in rows.items()}
    return table({name: row["summary"] for name, row in rows.items()}, extra)


def plot(rows: dict[str, dict], path: Path) -> None:
    """Subject consistency against text alignment, one point per variant (± standard error of each mean), marker
    area by rows per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, row in rows.items():
        x, y = row["summary"]["ta"], row["summary"]["consistency"]
        ax.errorbar(x, y, xerr=row["std_error"]["ta"], yerr=row["std_error"]["consistency"], fmt="none", c="0.7")
        ax.scatter(x, y, s=40 * row["rows_per_step"], zorder=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("text alignment")
    ax.set_ylabel("subject consistency")
    ax.set_title("Guidance schedules (marker area: rows per step; bars: ± s.e.)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def std_errors(report: dict) -> dict[str, float]:
    """Standard error of the mean of each paired metric over the videos."""
    errors = {}
    for key, _ in PAIRED:
        values = [video[key] for video in report["per_video"].values() if video[key] == video[key]]
        errors[key] = statistics.stdev(values) / len(values) ** 0.5
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="saved backbone folder")
    parser.add_argument("--lora", help="LoRA folder fused at weight 1 (e.g. the merged SFT LoRA)")
    parser.add_argument("--meta", type=Path, required=True, help="meta.jsonl of `libragen eval world-meta`")
    parser.add_argument("--variant", action="append", required=True, help="NAME=REF/TEXT; repeat")
    parser.add_argument("--n", type=int, default=60, help="first N meta prompts")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generic-tags", help="models read Ref tags with this description, e.g. 'a creature'")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    try:
        variants = dict(parse_variant(spec) for spec in args.variant)
    except ValueError as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    jobs = read_jobs(args.meta, args.n, args.generic_tags)
    probes = load_probes()
    backbone = load_fused(args.model, args.lora).eval()
    rows, reports = {}, {}
    for spec, (name, guidance) in zip(args.variant, variants.items(), strict=True):
        folder = args.out / name
        print(f"{name}:", file=sys.stderr, flush=True)
        if (folder / "report.json").is_file():
            report = json.loads((folder / "report.json").read_text())
        else:
            torch.manual_seed(0)
            started = time.perf_counter()
            videos = generate_videos(backbone, jobs, True, args.steps, guidance, args.batch)
            report = write_and_evaluate(folder, jobs, videos, backbone.fps, probes, time.perf_counter() - started)
        reports[name] = report
        first = reports[next(iter(reports))]
        rows[name] = {
            "spec": spec.partition("=")[2],
            "rows_per_step": rows_per_step(guidance, backbone, args.steps),
            "summary": report["summary"],
            "std_error": std_errors(report),
            "vs_first": {key: paired_difference(report, first, key) for key, _ in PAIRED},
            "generation_seconds": report.get("generation_seconds"),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        **provenance(),
        "prompts": len(jobs),
        "steps": args.steps,
        "generic_tags": args.generic_tags,
        "rows": rows,
    }
    (args.out / "guidance_quality.json").write_text(json.dumps(result, indent=2))
    (args.out / "guidance_quality.md").write_text(rows_table(rows) + "\n")
    plot(rows, args.out / "guidance_quality.png")
    print(rows_table(rows))


if __name__ == "__main__":
    main()
