"""What machine a benchmark ran on (benchmarks state it beside their numbers), and how results are reported."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> str:
    """'<cpu>, <n> cores, Python <version>'."""
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


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
