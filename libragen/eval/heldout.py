"""Generate one video per held-out prompt and evaluate them: the loop behind every model-comparison table.

A *job* is one line of a meta file written by ``libragen eval world-meta`` (unseen identities; references are crops
of the same subjects from other clips where there are any): id, prompt, reference files, real clip. Every variant
being compared generates from the same noise (seed = job index), so per-video differences between two variants are
paired (:func:`paired_difference`). Used by ``libragen reproduce`` and the benchmarks (sft_balance, guidance_quality).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from libragen.core.video import write_video
from libragen.eval.runner import evaluate_folder
from libragen.infer.sampler import Guidance, sample, to_uint8_frames
from libragen.models.backbone import Backbone
from libragen.train.sft import encode_reference_files, stack_reference_latents
from libragen.world.caption import generic_ref_tags, plain_caption


def read_jobs(meta: Path, n: int | None = None, generic_tags: str | None = None) -> list[dict]:
    """The first ``n`` meta lines: id, prompt, refs (absolute, resolved against the meta file's folder) and the real
    clip (relative to the LibraWorld folder the meta file describes). With ``generic_tags`` the models read Ref tags
    with that description ("Ref 1[a creature] hops …", ``model_prompt``); the judges still read the full prompt."""
    jobs = []
    for line in Path(meta).read_text().splitlines()[:n]:
        item = json.loads(line)
        refs = [str(Path(meta).resolve().parent / r) for r in item["refs"]]  # absolute: reports live elsewhere
        job = {"id": item["id"], "prompt": item["prompt"], "refs": refs, "real": item["video"]}
        if generic_tags:
            job["model_prompt"] = generic_ref_tags(item["prompt"], generic_tags)
        jobs.append(job)
    return jobs


@torch.no_grad()
def generate_videos(
    backbone: Backbone,
    jobs: list[dict],
    with_refs: bool,
    steps: int,
    guidance: Guidance,
    batch: int,
    on_videos: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """One uint8 video per job (seed = job index). With references the model reads the Ref-tagged caption (the SFT
    caption style), without them the plain caption it was pre-trained on. ``on_videos(k)``: k more are done."""
    videos: list[np.ndarray] = []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        refs = None
        if with_refs:
            refs = stack_reference_latents(backbone, [encode_reference_files(backbone, job["refs"]) for job in chunk])
        prompts = [job.get("model_prompt", job["prompt"]) for job in chunk]
        prompts = [prompt if with_refs else plain_caption(prompt) for prompt in prompts]
        out = sample(
            backbone, prompts, refs=refs, steps=steps, guidance=guidance, seed=list(range(start, start + len(chunk)))
        )
        videos += list(to_uint8_frames(out))
        if on_videos is None:
            print(f"  {start + len(chunk)}/{len(jobs)} videos", file=sys.stderr, flush=True)
        else:
            on_videos(len(chunk))
    return videos


def write_and_evaluate(
    folder: Path,
    jobs: list[dict],
    videos: list[np.ndarray],
    fps: float,
    probes,
    seconds: float,
    real_videos: list[Path] | None = None,
) -> dict:
    """Write one mp4 per job and a meta file into ``folder``, run the evaluation suite, save ``report.json``; with
    ``real_videos`` the summary has the realism Fréchet distance to them (``realism_fd``)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta_lines = []
    for job, video in zip(jobs, videos, strict=True):
        write_video(folder / f"{job['id']}.mp4", video, fps)
        meta_lines.append(
            json.dumps({"id": job["id"], "video": f"{job['id']}.mp4", "prompt": job["prompt"], "refs": job["refs"]})
        )
    (folder / "meta.jsonl").write_text("\n".join(meta_lines) + "\n")
    report = evaluate_folder(folder, folder / "meta.jsonl", probes, real_videos=real_videos)
    report["generation_seconds"] = seconds
    (folder / "report.json").write_text(json.dumps(report, indent=2))
    return report


def paired_differences(report: dict, baseline: dict, key: str) -> list[float]:
    """Per-video ``key`` of ``report`` minus ``baseline`` over the videos both have and the judge could read."""
    shared = [v for v in report["per_video"] if v in baseline["per_video"]]
    differences = [report["per_video"][v][key] - baseline["per_video"][v][key] for v in shared]
    return [d for d in differences if d == d]  # a video the judge could not read is nan


def mean_and_error(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of ``values`` (nan, nan with fewer than 2)."""
    if len(values) < 2:
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.stdev(values) / len(values) ** 0.5


def paired_difference(report: dict, baseline: dict, key: str) -> tuple[float, float]:
    """Mean and standard error of ``key`` in ``report`` minus ``baseline`` over the videos both have (same prompts and
    noise, so the difference is paired)."""
    return mean_and_error(paired_differences(report, baseline, key))
