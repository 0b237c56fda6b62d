"""``libragen eval``: score generated videos, and build/train what the scores rely on.

``libragen eval --videos DIR --meta meta.jsonl --out report/`` evaluates a folder; subcommands:
``world-meta`` (meta file for real LibraWorld clips), ``train-probes``, ``gsb-export``, ``gsb-score``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from libragen.core.config import load_config
from libragen.core.progress import progress_bar
from libragen.eval.gsb import export_side_by_side, gsb_from_choices
from libragen.eval.probes import WEIGHTS_DIR, load_probes, train_probes
from libragen.eval.report import write_report
from libragen.eval.runner import evaluate_folder, read_meta
from libragen.eval.scorers import ScorerPaths, load_scorers
from libragen.eval.world_meta import write_world_meta

eval_app = typer.Typer(help="Evaluation: motion, quality, text alignment, subject consistency, copy-paste, GSB.")
console = Console(stderr=True)


@eval_app.callback(invoke_without_command=True)
def evaluate(
    ctx: typer.Context,
    videos: Annotated[Optional[Path], typer.Option(help="folder of videos to evaluate")] = None,
    meta: Annotated[Optional[Path], typer.Option(help="JSONL: video, prompt, refs per line")] = None,
    out: Annotated[Optional[Path], typer.Option(help="report folder (JSON, markdown, PNG)")] = None,
    real: Annotated[Optional[Path], typer.Option(help="folder of real videos for the Fréchet distance")] = None,
    scorers: Annotated[Optional[Path], typer.Option(help="YAML with local paths of learned scorers")] = None,
    probes: Annotated[Optional[Path], typer.Option(help="probe weights folder")] = None,
    label: Annotated[str, typer.Option(help="name of this set in the report")] = "videos",
) -> None:
    """Evaluate a folder of videos (when no subcommand is given)."""
    if ctx.invoked_subcommand is not None:
        return
    if videos is None or meta is None or out is None:
        console.print(ctx.get_help())
        raise typer.Exit(2)
    items = read_meta(meta, videos)
    learned = load_scorers(load_config(ScorerPaths, scorers))
    real_videos = sorted(real.rglob("*.mp4")) if real else None
    with progress_bar("eval", console) as progress:
        task = progress.add_task("videos", total=len(items))
        report = evaluate_folder(
            videos,
            meta,
            load_probes(probes),
            scorers=learned,
            real_videos=real_videos,
            on_video=lambda _: progress.advance(task),
        )
    for notice in report["notices"]:
        console.print(f"[yellow]notice:[/] {notice}")
    paths = write_report(report, out, label)
    console.print(json.dumps({k: round(v, 4) for k, v in report["summary"].items()}))
    typer.echo(paths["markdown"])


@eval_app.command("world-meta")
def world_meta(
    world: Annotated[Path, typer.Option(help="LibraWorld folder (manifest.parquet)")],
    out: Annotated[Path, typer.Option(help="folder for meta.jsonl and refs/")],
    limit: Annotated[Optional[int], typer.Option(min=1, help="first N clean clips only")] = None,
) -> None:
    """Write meta.jsonl + reference crops so real LibraWorld clips can be evaluated like generated ones."""
    typer.echo(write_world_meta(world, out, limit))


@eval_app.command("train-probes")
def train_probes_command(
    train_world: Annotated[Path, typer.Option(help="LibraWorld train-split folder (real clips)")],
    test_world: Annotated[Path, typer.Option(help="LibraWorld held-out-split folder (real clips)")],
    out: Annotated[Path, typer.Option(help="where the safetensors and probes.json go")] = WEIGHTS_DIR,
    attribute_steps: Annotated[int, typer.Option(min=1)] = 1500,
    identity_steps: Annotated[int, typer.Option(min=1)] = 1500,
    reader_steps: Annotated[int, typer.Option(min=1)] = 2000,
    reader_init: Annotated[Path | None, typer.Option(help="probe folder whose identity reader to continue")] = None,
    reader_lr: Annotated[float, typer.Option(min=0.0)] = 2e-3,
    reader_angle_noise: Annotated[
        float, typer.Option(min=0.0, help="degrees of angle error the reader trains with")
    ] = 10.0,
    seed: Annotated[int, typer.Option()] = 0,
    only: Annotated[str, typer.Option(help="all, attribute, identity (the locator) or reader")] = "all",
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads (default: every core)")] = None,
) -> None:
    """Train the attribute probe, identity encoder and identity reader on real clips; report held-out accuracy."""
    record = train_probes(
        train_world,
        test_world,
        out,
        attribute_steps=attribute_steps,
        identity_steps=identity_steps,
        reader_steps=reader_steps,
        reader_init=reader_init,
        reader_lr=reader_lr,
        reader_angle_noise=reader_angle_noise,
        seed=seed,
        only=only,
        threads=threads,
        log=console.print,
    )
    for name, key in (
        ("attribute", "heldout_accuracy"),
        ("identity", "heldout_retrieval"),
        ("identity_reader", "heldout_retrieval"),
    ):
        if name in record:
            console.print(name, record[name][key])
    typer.echo(out)


@eval_app.command("gsb-export")
def gsb_export(
    a: Annotated[Path, typer.Option(help="videos of method A")],
    b: Annotated[Path, typer.Option(help="videos of method B (same file names)")],
    out: Annotated[Path, typer.Option(help="folder for side-by-side mp4s and key.jsonl")],
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Side-by-side videos for human GSB judgement, left/right randomised (key.jsonl records it)."""
    typer.echo(export_side_by_side(a, b, out, seed=seed))


@eval_app.command("gsb-score")
def gsb_score(
    key: Annotated[Path, typer.Option(help="key.jsonl written by gsb-export")],
    choices: Annotated[Path, typer.Option(help="JSONL lines {item, choice: left|right|same}")],
) -> None:
    """GSB ratio (G - B) / (G + S + B) of method A from recorded side-by-side choices."""
    sides = {r["item"]: r["left"] for r in map(json.loads, key.read_text().splitlines()) if r}
    picked = {r["item"]: r["choice"] for r in map(json.loads, choices.read_text().splitlines()) if r}
    result = gsb_from_choices(sides, picked)
    typer.echo(json.dumps({"good": result.good, "same": result.same, "bad": result.bad, "gsb": result.ratio}))
