"""``libragen world``: make LibraWorld sets, render identity portraits, summarise a set."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from PIL import Image
from rich.console import Console
from rich.table import Table

from libragen.core.config import load_config
from libragen.core.progress import progress_bar
from libragen.world.config import WorldConfig
from libragen.world.generate import make_world
from libragen.world.identity import NUM_IDENTITIES, identity
from libragen.world.manifest import MANIFEST_NAME, read_manifest
from libragen.world.sprite import render_portrait

world_app = typer.Typer(
    help="LibraWorld: the procedural subject-video world (make sets, inspect them).", no_args_is_help=True
)
console = Console(stderr=True)


@world_app.command("make")
def make(
    out: Annotated[Path, typer.Option("--out", help="output folder (created)")],
    n: Annotated[int, typer.Option("--n", min=1, help="number of clips")] = 200,
    seed: Annotated[int, typer.Option(help="random seed; same seed -> same bytes")] = 0,
    split: Annotated[str, typer.Option(help="identity split: train or heldout")] = "train",
    defects: Annotated[
        Optional[float], typer.Option("--defects", min=0.0, max=1.0, help="share of clips with an injected defect")
    ] = None,
    config: Annotated[Optional[Path], typer.Option(help="world YAML config (see configs/world.yaml)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="parallel processes")] = max(1, os.cpu_count() or 1),
) -> None:
    """Generate N LibraWorld clips (mp4) and a Parquet manifest with their ground truth."""
    if split not in ("train", "heldout"):
        raise typer.BadParameter("must be 'train' or 'heldout'", param_hint="--split")
    cfg = load_config(WorldConfig, config, defect_rate=defects)
    with progress_bar("world make", console) as progress:
        task = progress.add_task("clips", total=n)
        summary = make_world(
            cfg, n, out, seed=seed, split=split, workers=workers, on_progress=lambda k: progress.advance(task, k)
        )
    defect_text = ", ".join(f"{k} {v}" for k, v in summary.defects.items()) or "none"
    console.print(
        f"wrote {summary.clips} clips ({cfg.width}x{cfg.height}, {cfg.frames} frames) with defects: {defect_text}"
    )
    typer.echo(summary.manifest)


@world_app.command("portrait")
def portrait(
    identity_id: Annotated[int, typer.Argument(help=f"identity id, 0..{NUM_IDENTITIES - 1}")],
    out: Annotated[Path, typer.Option("--out", help="PNG to write")],
    size: Annotated[int, typer.Option(min=16, max=1024, help="image side in pixels")] = 128,
) -> None:
    """Render an identity's canonical reference image (white background)."""
    if not 0 <= identity_id < NUM_IDENTITIES:
        raise typer.BadParameter(f"must be in [0, {NUM_IDENTITIES})", param_hint="IDENTITY_ID")
    ident = identity(identity_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_portrait(ident, size)).save(out)
    console.print(f"identity {identity_id}: {ident.description} ({'held-out' if ident.heldout else 'train'} split)")
    typer.echo(out)


@world_app.command("info")
def info(folder: Annotated[Path, typer.Argument(help=f"a folder with {MANIFEST_NAME}, or the file")]) -> None:
    """Summarise a LibraWorld set: clips, identities, subjects per clip, defects, scenes."""
    rows = read_manifest(folder)
    identities = Counter(i for row in rows for i in row["identity_ids"])
    table = Table(title=f"{folder} — {len(rows)} clips, {len(identities)} identities")
    table.add_column("what")
    table.add_column("counts")
    table.add_row("split", str(dict(Counter(row["split"] for row in rows))))
    table.add_row("subjects per clip", str(dict(sorted(Counter(len(r["subjects"]) for r in rows).items()))))
    table.add_row("clips per identity", str(dict(sorted(Counter(identities.values()).items()))))
    table.add_row("defects", str(dict(sorted(Counter(r["defect"] or "clean" for r in rows).items()))))
    table.add_row("scenes", str(dict(sorted(Counter(r["scene"] for r in rows).items()))))
    Console().print(table)
