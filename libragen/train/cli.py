"""``libragen train``: pre-train the LibraWorld VGFM (SFT and DPO trainers join here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from libragen.core.config import load_config

train_app = typer.Typer(help="Training: VGFM pre-training (SFT and DPO follow).", no_args_is_help=True)


@train_app.command("export")
def export(
    run: Annotated[Path, typer.Option(help="a VGFM run folder")],
    out: Annotated[Path, typer.Option(help="backbone folder to write")],
    ema: Annotated[bool, typer.Option(help="export the EMA weights (if the run keeps them)")] = True,
) -> None:
    """Save a run's newest checkpoint as a backbone folder (float16), usable by generate/eval while training goes on."""
    from libragen.train.vgfm import export_checkpoint

    Console(stderr=True).print(f"wrote {export_checkpoint(run, out, use_ema=ema)}")


@train_app.command("vgfm")
def vgfm(
    config: Annotated[Path, typer.Option(help="VGFM YAML config (see configs/vgfm.yaml)")],
    out: Annotated[Path, typer.Option(help="run folder; an existing run resumes from its last checkpoint")],
    steps: Annotated[int | None, typer.Option(help="override loop.steps")] = None,
) -> None:
    """Pre-train (or resume) the LibraWorld text-to-video foundation model."""
    from libragen.train.vgfm import VGFMConfig, train_vgfm

    cfg = load_config(VGFMConfig, config)
    if steps is not None:
        cfg = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"steps": steps})})
    console = Console(stderr=True)
    result = train_vgfm(cfg, out, console)
    console.print(
        f"trained {result.steps_done} steps (resumed from {result.resumed_from}) in {result.seconds / 60:.1f} min; "
        f"final loss {result.final_loss:.4f}; model: {out / 'final'}; loss curve: {out / 'loss.png'}"
    )
