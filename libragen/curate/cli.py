"""``libragen curate``: run automatic curation on Ray Data, and report on a run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from libragen.core.config import load_config
from libragen.core.progress import progress_bar
from libragen.curate.config import CurateConfig
from libragen.curate.ocr import skipped_notice as ocr_skipped_notice
from libragen.curate.pipeline import check_plug_ins, run_curation
from libragen.curate.report import write_report
from libragen.curate.schema import CURATED_NAME
from libragen.eval.scorers import skipped_notices

curate_app = typer.Typer(
    help="Automatic curation of a raw video pool (Ray Data, local by default).", no_args_is_help=True
)
console = Console(stderr=True)


@curate_app.command("run")
def run(
    input: Annotated[Path, typer.Option("--input", help="folder of videos, or a manifest .parquet with a path column")],
    out: Annotated[Path, typer.Option(help="output folder (curated.parquet, records/, clips/)")],
    config: Annotated[Optional[Path], typer.Option(help="curation YAML (see configs/curate.yaml)")] = None,
    keep: Annotated[Optional[int], typer.Option(min=1, help="keep only the top N by quality score")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray workers (CPUs) on this machine")] = max(
        1, os.cpu_count() or 1
    ),
) -> None:
    """Score every input, split shots, reject defects, dedup the pool; rerun to resume a killed run."""
    cfg = load_config(CurateConfig, config)
    check_plug_ins(cfg)
    for notice in [*skipped_notices(cfg.scorers), ocr_skipped_notice(cfg)]:
        if notice is None:
            continue
        console.print(f"[dim]{notice}[/dim]")
    with progress_bar("curate", console) as progress:
        task = progress.add_task("inputs", total=None)

        def started(total: int, pending: int) -> None:
            progress.update(task, total=total, completed=total - pending)
            if pending < total:
                console.print(f"resuming: {total - pending} of {total} inputs already done")

        summary = run_curation(
            input, out, cfg, keep=keep, workers=workers, on_start=started, on_item=lambda: progress.advance(task)
        )
    reasons = ", ".join(f"{k} {v}" for k, v in summary.reasons.items()) or "none"
    console.print(f"{summary.records} clips from {summary.inputs} inputs: {summary.kept} kept; rejected: {reasons}")
    typer.echo(summary.manifest)


@curate_app.command("report")
def report(
    curated: Annotated[Path, typer.Option(help=f"a curation output folder or its {CURATED_NAME}")],
    out: Annotated[Optional[Path], typer.Option(help="HTML file (default: report.html beside the manifest)")] = None,
    config: Annotated[Optional[Path], typer.Option(help="the curation YAML used (for threshold lines)")] = None,
) -> None:
    """HTML report: counts per reject reason, score histograms, contact sheets of kept/rejected clips."""
    manifest = curated / CURATED_NAME if curated.is_dir() else curated
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no curated manifest here")
    typer.echo(write_report(manifest, out or manifest.parent / "report.html", load_config(CurateConfig, config)))
