"""Cached stages: a stage whose folder holds a ``stage.json`` with the same fingerprint is not run again.

A fingerprint is a hash of the stage's settings and of the fingerprints of the stages it reads, so changing a size
reruns that stage and everything downstream of it, and nothing else. A stage killed half way has no ``stage.json``;
rerunning it lets the underlying tool resume (the trainers from their last checkpoint, curation from its records).
A stage whose settings changed starts from an empty folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from libragen.core.files import write_bytes_atomic

MARKER = "stage.json"


@dataclass
class StageRunner:
    """Runs stages under ``root``, skipping cached ones; keeps each stage's fingerprint, result and time."""

    root: Path
    console: Console
    fingerprints: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    results: dict[str, dict] = field(default_factory=dict)

    def folder(self, name: str) -> Path:
        return self.root / name

    def run(self, name: str, settings: Any, inputs: list[str], work: Callable[[Path], dict | None]) -> dict:
        """Run ``work(folder)`` for stage ``name`` (a path under root) unless its cached fingerprint matches.

        ``settings``: anything JSON-serialisable that decides the output; ``inputs``: names of stages it reads.
        Returns the dict ``work`` returned (from the cache when skipped).
        """
        missing = [stage for stage in inputs if stage not in self.fingerprints]
        if missing:
            raise RuntimeError(f"stage {name} needs {missing} first")
        payload = json.dumps({"settings": settings, "inputs": [self.fingerprints[s] for s in inputs]}, sort_keys=True)
        fingerprint = hashlib.sha256(payload.encode()).hexdigest()[:16]
        folder = self.folder(name)
        marker = folder / MARKER
        if marker.is_file():
            record = json.loads(marker.read_text())
            if record.get("fingerprint") == fingerprint:
                self.fingerprints[name] = fingerprint
                self.seconds[name] = record.get("seconds", 0.0)
                self.cached.append(name)
                self.results[name] = record.get("result", {})
                self.console.print(f"[dim]{name}: cached ({record.get('seconds', 0.0) / 60:.1f} min when run)[/dim]")
                return record.get("result", {})
            self.console.print(f"{name}: settings changed, running again from scratch")
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.console.print(f"[bold]{name}[/bold] …")
        started = time.perf_counter()
        result = work(folder) or {}
        seconds = time.perf_counter() - started
        record = {"fingerprint": fingerprint, "seconds": seconds, "result": result, "settings": settings}
        write_bytes_atomic(marker, json.dumps(record, indent=2, default=str).encode())
        self.fingerprints[name] = fingerprint
        self.seconds[name] = seconds
        self.results[name] = result
        self.console.print(f"{name}: done in {seconds / 60:.1f} min")
        return result
