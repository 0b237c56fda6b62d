"""``libragen train``: VGFM pre-training, SFT LoRA fine-tuning (the DPO trainer joins here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from libragen.core.config import load_config

train_app = typer.Typer(help="Training: VGFM pre-training, SFT LoRA fine-tuning, Flow-DPO.", no_args_is_help=True)


def _with_steps(cfg, steps: int | None):
    """The config with ``loop.steps`` overridden from the command line (if given)."""
    if steps is None:
        return cfg
    return cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"steps": steps})})


def _report(console: Console, result, outputs: str) -> None:
    console.print(
        f"trained {result.steps_done} steps (resumed from {result.resumed_from}) in {result.seconds / 60:.1f} min; "
        f"final loss {result.final_loss:.4f}; {outputs}"
    )


@train_app.command("export")
def export(
    run: Annotated[Path, typer.Option(help="a VGFM run folder")],
    out: Annotated[Path, typer.Option(help="backbone folder to write")],
    ema: Annotated[bool, typer.Option(help="export the EMA weights (if the run keeps them)")] = True,
) -> None:
    """Save a run's newest checkpoint as a backbone folder (float16), usable by generate/eval while training goes on."""
    from libragen.train.vgfm import export_checkpoint

    Console(stderr=True).print(f"wrote {export_checkpoint(run, out, use_ema=ema)}")


@train_app.command("decoder")
def decoder(
    model: Annotated[Path, typer.Option(help="saved LibraWorld backbone folder with pooled latents (written into)")],
    data: Annotated[list[Path], typer.Option(help="LibraWorld folder(s) of real clips")],
    steps: Annotated[int, typer.Option(min=1, help="optimisation steps")] = 600,
    max_clips: Annotated[int, typer.Option(min=2, help="clips to read (the last 50 are held out)")] = 1000,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads")] = None,
) -> None:
    """Train the learned decoder (pooled latents -> frames) of a backbone; records PSNR vs bilinear."""
    from libragen.train.decoder import DecoderTrainConfig, train_decoder

    cfg = DecoderTrainConfig(data=[str(d) for d in data], steps=steps, max_clips=max_clips, threads=threads)
    console = Console(stderr=True)
    result = train_decoder(model, cfg, console)
    console.print(
        f"decoder written to {model}: held-out PSNR {result['psnr_learned_db']:.2f} dB "
        f"(bilinear {result['psnr_bilinear_db']:.2f} dB) in {result['seconds'] / 60:.1f} min"
    )


@train_app.command("vgfm")
def vgfm(
    config: Annotated[Path, typer.Option(help="VGFM YAML config (see configs/vgfm.yaml)")],
    out: Annotated[Path, typer.Option(help="run folder; an existing run resumes from its last checkpoint")],
    steps: Annotated[int | None, typer.Option(help="override loop.steps")] = None,
) -> None:
    """Pre-train (or resume) the LibraWorld text-to-video foundation model."""
    from libragen.train.vgfm import VGFMConfig, train_vgfm

    cfg = load_config(VGFMConfig, config)
    cfg = _with_steps(cfg, steps)
    console = Console(stderr=True)
    _report(console, train_vgfm(cfg, out, console), f"model: {out / 'final'}; loss curve: {out / 'loss.png'}")


@train_app.command("sft")
def sft(
    config: Annotated[Path, typer.Option(help="SFT YAML config (see configs/sft_in.yaml)")],
    out: Annotated[Path, typer.Option(help="run folder; an existing run resumes from its last checkpoint")],
    steps: Annotated[int | None, typer.Option(help="override loop.steps")] = None,
) -> None:
    """Fine-tune a LoRA on in-pair, cross-pair or mixed pairs (Tune-to-Balance); merge with `libragen merge`."""
    from libragen.train.sft_trainer import SFTConfig, train_sft

    cfg = load_config(SFTConfig, config)
    cfg = _with_steps(cfg, steps)
    console = Console(stderr=True)
    _report(console, train_sft(cfg, out, console), f"LoRA: {out / 'final'}; loss curve: {out / 'loss.png'}")


@train_app.command("dpo")
def dpo(
    config: Annotated[Path, typer.Option(help="DPO YAML config (see configs/dpo_consis.yaml)")],
    out: Annotated[Path, typer.Option(help="run folder; an existing run resumes from its last checkpoint")],
    steps: Annotated[int | None, typer.Option(help="override loop.steps")] = None,
) -> None:
    """Flow-DPO LoRA training on preference pairs from `libragen dpo pairs` (Consis-DPO or Real-Fake DPO)."""
    from libragen.train.dpo_trainer import DPOConfig, train_dpo

    cfg = load_config(DPOConfig, config)
    cfg = _with_steps(cfg, steps)
    console = Console(stderr=True)
    _report(console, train_dpo(cfg, out, console), f"LoRA: {out / 'final'}; curves: {out / 'dpo_curves.png'}")


dpo_app = typer.Typer(help="DPO preference data: Consis-DPO and Real-Fake DPO pairs.", no_args_is_help=True)


@dpo_app.command("pairs")
def dpo_pairs(
    config: Annotated[Path, typer.Option(help="pairs YAML config (kind, data, count, offset, filter)")],
    out: Annotated[Path, typer.Option(help="folder for pairs.jsonl and the videos; a rerun continues")],
    model: Annotated[Path | None, typer.Option(help="base backbone (default: the shipped VGFM)")] = None,
    lora: Annotated[Path | None, typer.Option(help="SFT LoRA baked in first (cross-pair for consis)")] = None,
) -> None:
    """Sample preference pairs, filter them by consistency gap; review with `libragen review import-pairs`."""
    from libragen.models import SHIPPED_VGFM
    from libragen.train.dpo_pairs import DPOPairsConfig, make_dpo_pairs, read_pairs
    from libragen.train.merge import load_fused

    cfg = load_config(DPOPairsConfig, config)
    console = Console(stderr=True)
    backbone = load_fused(model or SHIPPED_VGFM, lora).eval()
    table = make_dpo_pairs(backbone, cfg, out, console)
    kept = len(read_pairs(table))
    total = len(table.read_text().splitlines())
    console.print(f"{table}: {total} pairs, {kept} kept by the filter")
