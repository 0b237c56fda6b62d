"""``libragen pairs build``: in-pair and cross-pair training samples from an approved manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from libragen.core.config import ConfigError, load_config
from libragen.core.progress import progress_bar
from libragen.pairs.build import build_pairs
from libragen.pairs.config import PairsConfig
from libragen.pairs.errors import MissingWeightsError, PairsInputError
from libragen.pairs.samples import SAMPLES_NAME, SUMMARY_NAME
from libragen.pairs.subjects import GroundedSamLocator, ManifestMasks, SubjectLocator, WorldMasks

pairs_app = typer.Typer(help="Pairs: in-pair and cross-pair training samples (issue #7).", no_args_is_help=True)
console = Console(stderr=True)
USER_ERROR_EXIT = 2


@pairs_app.callback()
def _group() -> None:
    """Pairs: in-pair and cross-pair training samples (issue #7)."""


def _locator(
    name: str | None, masks: Path | None, detector: Path | None, segmenter: Path | None
) -> SubjectLocator | None:
    if masks is not None and name not in (None, "auto", "world"):
        raise typer.BadParameter("--masks goes with --locator world (or auto)", param_hint="--masks")
    if masks is not None or name == "world":
        if masks is None:
            raise PairsInputError("--locator world needs --masks WORLD_MANIFEST")
        return WorldMasks(masks)
    if name is None or name == "auto":
        return None
    if name == "manifest":
        return ManifestMasks()
    if name == "grounded-sam":
        if detector is None or segmenter is None:
            raise PairsInputError("--locator grounded-sam needs --detector-weights PATH and --segmenter-weights PATH")
        return GroundedSamLocator(detector, segmenter)
    raise typer.BadParameter("must be auto, manifest, world or grounded-sam", param_hint="--locator")


@pairs_app.command("build")
def build(
    source: Annotated[
        Path, typer.Option("--from", help="approved manifest (Parquet: clip_id, path, caption[, masks])")
    ],
    out: Annotated[Path, typer.Option("--out", help="output folder (new, or a previous pairs build)")],
    mode: Annotated[Optional[str], typer.Option(help="in, cross or both")] = None,
    max_refs: Annotated[Optional[int], typer.Option("--max-refs", min=1, max=4, help="references per sample")] = None,
    config: Annotated[Optional[Path], typer.Option(help="pairs YAML config (see configs/pairs.yaml)")] = None,
    embedder: Annotated[
        Optional[str], typer.Option(help="identity embedder: libraworld-glyph, torch:PATH (.pt2) or module:attr")
    ] = None,
    threshold: Annotated[Optional[float], typer.Option(help="verification threshold (cosine) of cross matches")] = None,
    locator: Annotated[
        Optional[str], typer.Option(help="subject locator: auto, manifest, world (--masks) or grounded-sam")
    ] = None,
    masks: Annotated[
        Optional[Path], typer.Option(help="LibraWorld manifest with the masks (for curated / reviewed input)")
    ] = None,
    detector_weights: Annotated[Optional[Path], typer.Option(help="GroundingDINO weights (grounded-sam)")] = None,
    segmenter_weights: Annotated[Optional[Path], typer.Option(help="SAM weights (grounded-sam)")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="parallel processes for decoding and scoring")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of frame choice and augmentation")] = None,
    prepared_risk: Annotated[
        Optional[bool], typer.Option("--prepared-risk/--no-prepared-risk", help="also score prepared references")
    ] = None,
) -> None:
    """Build in-pair / cross-pair samples: reference PNGs, samples.parquet and summary.json under --out."""
    if mode is not None and mode not in ("in", "cross", "both"):
        raise typer.BadParameter("must be in, cross or both", param_hint="--mode")
    try:
        cfg = load_config(
            PairsConfig,
            config,
            mode=mode,
            max_refs=max_refs,
            embedder=embedder,
            threshold=threshold,
            workers=workers,
            seed=seed,
            prepared_risk=prepared_risk,
        )
        subject_locator = _locator(locator, masks, detector_weights, segmenter_weights)
        progress = progress_bar("pairs {task.description}", console)
        tasks: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if not tasks:
                progress.start()  # only once work begins, so input errors print nothing else
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done)

        try:
            summary = build_pairs(source, out, cfg, locator=subject_locator, on_progress=on_progress)
        finally:
            if tasks:
                progress.stop()
    except (PairsInputError, MissingWeightsError, ConfigError, NotImplementedError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(USER_ERROR_EXIT) from err
    data = summary.data
    table = Table(title=f"pairs build -> {out}")
    table.add_column("what")
    table.add_column("counts")
    table.add_row("input rows", f"{data['rows']} ({data['rows_not_approved']} not approved)")
    table.add_row("clips", f"{data['clips']} ({data['clips_with_samples']} with samples)")
    table.add_row("samples", str(data["samples"]))
    table.add_row("refs per sample", str(data["refs_per_sample"]))
    table.add_row("clips skipped", str(data["clips_skipped"] or "none"))
    table.add_row("clips without a sample", str(data["clips_without_sample"] or "none"))
    table.add_row("subjects skipped", str(data["skipped_subjects"]))
    table.add_row("embedder / threshold", f"{data['embedder']} / {data['threshold']}")
    console.print(table)
    console.print(f"summary: {out / SUMMARY_NAME}")
    typer.echo(out / SAMPLES_NAME)
