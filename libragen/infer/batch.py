"""Generation jobs: one per prompt or one per line of a JSONL file, resumable, spread over processes.

Every video ``NAME.mp4`` gets ``NAME.json`` beside it: the user's prompt, both rephrasing stages, the
prompt the model read, the references in the order the model got them, seed, steps and guidance.
A job whose mp4 and json both exist is skipped, so an interrupted batch is resumed by running the same
command again. Under ``accelerate launch`` each process takes every N-th job on its own device.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from libragen.core.files import atomic_path
from libragen.core.progress import progress_bar
from libragen.infer.rephrase import Rephraser
from libragen.models import SHIPPED_S2V_LORA

NAME = re.compile(r"^[\w.-]{1,120}$")
JOB_FIELDS = {"prompt", "refs", "ref_desc", "seed", "steps", "name"}


class JobError(ValueError):
    """A jobs file that cannot run as written, or jobs that failed; the message lists which."""


@dataclass
class GenerationJob:
    prompt: str
    refs: list[str]
    seed: int
    steps: int
    name: str
    ref_desc: list[str] | None = None


def _job_from(record: Any, line: int, folder: Path, steps: int, seed: int) -> GenerationJob:
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    unknown = set(record) - JOB_FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(JOB_FIELDS))}")
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("empty or missing prompt")
    refs = record.get("refs", [])
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise ValueError("refs must be a list of image paths")
    refs = [str(p if (p := Path(r)).is_absolute() else folder / p) for r in refs]
    missing = [r for r in refs if not Path(r).is_file()]
    if missing:
        raise ValueError(f"no such image: {missing[0]}")
    ref_desc = record.get("ref_desc")
    if ref_desc is not None and (not isinstance(ref_desc, list) or len(ref_desc) != len(refs)):
        raise ValueError("ref_desc must be a list with one description per reference")
    job_steps, job_seed = record.get("steps", steps), record.get("seed", seed + line - 1)
    if not isinstance(job_steps, int) or job_steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {job_steps!r}")
    if not isinstance(job_seed, int):
        raise ValueError(f"seed must be an integer, got {job_seed!r}")
    name = record.get("name", f"job{line:05d}")
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"name must be letters, digits, '.', '_' or '-' (it names the files), got {name!r}")
    return GenerationJob(prompt, refs, job_seed, job_steps, name, ref_desc)


def read_jobs(path: str | os.PathLike[str], steps: int = 30, seed: int = 0) -> list[GenerationJob]:
    """All jobs of a JSONL file, checked before any work starts; relative image paths are relative to the file."""
    p = Path(path)
    if not p.is_file():
        raise JobError(f"{p}: no such jobs file")
    jobs, problems, names = [], [], set()
    for line, text in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            job = _job_from(json.loads(text), line, p.parent, steps, seed)
            if job.name in names:
                raise ValueError(f"name {job.name!r} is used twice")
        except (json.JSONDecodeError, ValueError) as error:
            problems.append(f"line {line}: {error}")
            continue
        names.add(job.name)
        jobs.append(job)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise JobError(f"{p}: " + "; ".join(problems[:5]) + more)
    if not jobs:
        raise JobError(f"{p}: no jobs")
    return jobs


def run_jobs(
    jobs: list[GenerationJob],
    out: str | os.PathLike[str],
    model: str | os.PathLike[str] | None,
    device: str,
    rephraser: Rephraser | None,
    settings: dict[str, Any],
    console: Console | None = None,
    resume: bool = True,
    lora: str | os.PathLike[str] | None = None,
    offload: bool | None = None,
) -> list[Path]:
    """Run this process's share of ``jobs`` into ``out``; returns the mp4s written now.

    ``resume``: skip jobs whose mp4 and json are already there (otherwise they are made again).

    A job that fails on its input (a corrupt image …) does not stop the others; the failures are
    raised together as one :class:`JobError` at the end. With a single job its error is raised as is.
    """
    from accelerate import PartialState

    from libragen.core.video import write_video
    from libragen.infer.pipeline import InvalidInput, LibraGenPipeline

    console = console or Console(stderr=True)
    out = Path(out)
    state = PartialState()
    mine = jobs[state.process_index :: state.num_processes]
    todo = [
        j for j in mine if not (resume and (out / f"{j.name}.mp4").is_file() and (out / f"{j.name}.json").is_file())
    ]
    if len(todo) < len(mine):
        console.print(f"{len(mine) - len(todo)} of {len(mine)} job(s) already done in {out}; skipping them")
    if not todo:
        return []
    if device == "auto" and state.num_processes > 1:
        device = str(state.device)
    pipeline = LibraGenPipeline.from_pretrained(model, device=device, lora=lora, offload=offload)
    shipped_lora = (SHIPPED_S2V_LORA / "lora.safetensors").is_file()
    written, failures = [], []
    with progress_bar("generate", console) as progress:
        task = progress.add_task("", total=len(todo))
        for job in todo:
            try:
                result = pipeline(
                    job.prompt,
                    job.refs or None,
                    num_inference_steps=job.steps,
                    seed=job.seed,
                    rephraser=rephraser,
                    reference_descriptions=job.ref_desc,
                    **settings,
                )
            except InvalidInput as error:
                if len(todo) == 1:
                    raise
                failures.append(f"{job.name}: {error}")
                progress.advance(task)
                continue
            video = out / f"{job.name}.mp4"
            write_video(video, result.frames[0], result.fps)  # atomic
            record = (
                asdict(job)
                | {
                    "final_prompt": result.prompts[0],
                    "rephrased": result.rephrased[0].to_dict() if result.rephrased else None,
                    "model": str(model) if model else "shipped",
                    "lora": str(lora) if lora else ("shipped" if model is None and shipped_lora else None),
                    "video": video.name,
                    "guidance_used": result.guidance,
                }
                | settings
            )
            with atomic_path(out / f"{job.name}.json") as partial:  # written last: marks the job done
                Path(partial).write_text(json.dumps(record, indent=2))
            console.print(f"{video}  <- {result.prompts[0]}", markup=False, highlight=False)  # keep [ ] of Ref tags
            written.append(video)
            progress.advance(task)
    if failures:
        raise JobError(f"{len(failures)} of {len(todo)} job(s) failed: " + "; ".join(failures[:5]))
    return written
