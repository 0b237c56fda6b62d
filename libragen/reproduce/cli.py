"""``libragen reproduce``: the command line of the end-to-end run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from libragen.core.config import load_config
from libragen.reproduce.config import QUICK, ReproduceConfig


def _deep_update(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _deep_update(base.get(key, {}), value) if isinstance(value, dict) else value
    return merged


def reproduce(
    out: Annotated[
        Path, typer.Option(help="run folder; every finished stage there is reused (rerun to resume)")
    ] = Path("runs/reproduce"),
    quick: Annotated[bool, typer.Option("--quick", help="smoke-test sizes (minutes; numbers mean nothing)")] = False,
    seeds: Annotated[Optional[int], typer.Option(min=1, help="training seeds (default 3; --quick: 1)")] = None,
    config: Annotated[Optional[Path], typer.Option(help="reproduce YAML (see configs/reproduce.yaml)")] = None,
    doc: Annotated[
        Optional[Path],
        typer.Option(
            help="results markdown to write the section into (default docs/results.md; --quick: OUT/results.md)"
        ),
    ] = None,
) -> None:
    """Rerun the recipe end to end on LibraWorld (world → curation → review → pairs → SFT → merge → DPO → merge →
    dynamic CFG → evaluation) and write which of the paper's claims hold, with error bars over seeds."""
    from libragen.reproduce.run import command_line
    from libragen.reproduce.run import reproduce as run_reproduce

    cfg = load_config(ReproduceConfig, config)
    if quick:
        cfg = ReproduceConfig.model_validate(_deep_update(cfg.model_dump(), QUICK))
    if seeds is not None:
        cfg = cfg.model_copy(update={"seeds": seeds})
    target = doc or (out / "results.md" if quick else Path("docs/results.md"))
    console = Console(stderr=True)
    record = run_reproduce(cfg, out, target, console, command_line())
    for item in record["verdicts"]:
        console.print(f"{'holds' if item['holds'] else 'does not hold'}: {item['question']} — {item['numbers']}")
    console.print(f"report: {target} ({out / 'reproduce.json'})")
