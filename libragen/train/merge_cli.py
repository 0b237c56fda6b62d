"""``libragen merge``: combine LoRAs with peft's weighted merging, save the result as a LoRA or fused model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

METHODS = ["linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "magnitude_prune"]


def parse_weighted(spec: str) -> tuple[Path, float]:
    """``path:weight`` -> (path, weight); the path may itself contain ':'."""
    path, sep, weight = spec.rpartition(":")
    if not sep or not path:
        raise typer.BadParameter(f"{spec!r}: expected PATH:WEIGHT, e.g. runs/in_pair/lora:0.6", param_hint="--lora")
    try:
        value = float(weight)
    except ValueError:
        raise typer.BadParameter(f"{spec!r}: weight {weight!r} is not a number", param_hint="--lora") from None
    if not Path(path).exists():
        raise typer.BadParameter(f"{path}: no such LoRA folder or file", param_hint="--lora")
    return Path(path), value


def merge(
    lora: Annotated[list[str], typer.Option("--lora", help="PATH:WEIGHT of a LoRA folder; repeat (2 or more)")],
    out: Annotated[Path, typer.Option(help="folder for the merged LoRA (or the fused model with --fuse)")],
    model: Annotated[
        Path | None, typer.Option(help="base backbone the LoRAs were trained on (default: the shipped VGFM)")
    ] = None,
    method: Annotated[str, typer.Option(help=f"peft combination: {', '.join(METHODS)}")] = "linear",
    density: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="share of weights kept (ties, dare_*, magnitude_prune)")
    ] = None,
    svd_rank: Annotated[int | None, typer.Option(min=1, help="rank of svd merges (default: the largest input)")] = None,
    fuse: Annotated[
        bool, typer.Option(help="bake the merged LoRA into the base weights and save a full model")
    ] = False,
) -> None:
    """Merge LoRAs by weight (peft add_weighted_adapter) — the Tune-to-Balance step between in- and cross-pair."""
    from libragen.models import SHIPPED_VGFM
    from libragen.train.merge import write_merge

    if method not in METHODS:
        raise typer.BadParameter(f"{method!r}: choose one of {', '.join(METHODS)}", param_hint="--method")
    inputs = [parse_weighted(spec) for spec in lora]
    base = model or SHIPPED_VGFM
    console = Console(stderr=True)
    try:
        write_merge(base, inputs, out, method, density=density, svd_rank=svd_rank, fuse=fuse)  # type: ignore[arg-type]
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--lora") from None
    what = "fused model" if fuse else "merged LoRA"
    record = {
        "base": str(base),
        "method": method,
        "loras": [{"path": str(p), "weight": w} for p, w in inputs],
        "density": density,
        "svd_rank": svd_rank,
        "fused": fuse,
    }
    (out / "merge.json").write_text(json.dumps(record, indent=2))
    console.print(f"{what} of {len(inputs)} LoRAs ({method}) -> {out}")
