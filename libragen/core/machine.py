"""What machine a measurement ran on: results state it beside their numbers."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def describe() -> str:
    """'<cpu>, <n> cores, Python <version>'."""
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"
