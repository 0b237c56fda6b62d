"""What machine a benchmark ran on (benchmarks state it beside their numbers), and how results are reported."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from libragen.core.machine import cpu_model, describe

__all__ = ["cpu_model", "describe", "provenance", "report"]


def provenance() -> dict[str, str]:
    """The machine and the exact command line, the first two fields of every benchmark's result."""
    return {"machine": describe(), "command": " ".join(["python", *sys.argv])}


def report(result: dict, out: Path | None) -> None:
    """Print ``result`` as JSON, and also write it to ``out`` when given."""
    text = json.dumps(result, indent=2)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    print(text)
