"""The one progress-bar style every long-running command uses (rich, on stderr): bar, count, elapsed, ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bar(label: str, console: Console) -> Progress:
    """A ``Progress`` showing ``label`` (may use ``{task.description}``), N/M done, elapsed time and ETA."""
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
    )
