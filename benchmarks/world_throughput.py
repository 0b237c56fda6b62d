"""LibraWorld generation throughput at the default size (64x64, 16 frames), clips per second.

Measured in one process, medians over repeats, against a baseline from the same run: the
H.264 encode alone of the same rendered frames (the floor any generator writing mp4 pays).

    python benchmarks/world_throughput.py [--n 200] [--repeats 3] [--json out.json]

Target (issue #2): >= 10 clips/s per core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import av
import numpy as np
from machine import cpu_model  # benchmarks/machine.py (scripts run from this folder)

from libragen.core.video import write_video
from libragen.world.config import WorldConfig
from libragen.world.defects import render_with_defect
from libragen.world.generate import make_world
from libragen.world.plan import plan_world


def _make(config: WorldConfig, n: int, out: Path, workers: int) -> None:
    make_world(config, n, out, seed=0, workers=workers)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    results: dict[str, list[float]] = {
        "encode_only": [],
        "world_1_worker": [],
        "world_defects_1_worker": [],
        f"world_{cores}_workers": [],
    }
    clean, defective = WorldConfig(), WorldConfig(defect_rate=0.3)
    rendered = [render_with_defect(spec, clean.crf)[0].frames for spec in plan_world(clean, args.n, seed=0)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def encode_only(out: Path) -> None:
            for k, frames in enumerate(rendered):
                write_video(out / f"{k}.mp4", frames, clean.fps, crf=clean.crf)

        runs = {
            "encode_only": encode_only,
            "world_1_worker": partial(_make, clean, args.n, workers=1),
            "world_defects_1_worker": partial(_make, defective, args.n, workers=1),
            f"world_{cores}_workers": partial(_make, clean, args.n, workers=cores),
        }
        for repeat in range(args.repeats):
            for name, run in runs.items():
                results[name].append(args.n / _timed(partial(run, root / f"{name}-{repeat}")))

    medians = {name: statistics.median(values) for name, values in results.items()}
    print(
        f"machine: {cpu_model()}, {cores} cores; python {platform.python_version()}, numpy {np.__version__}, "
        f"PyAV {av.__version__}; n={args.n}, repeats={args.repeats}\n"
    )
    print("| run | clips/s (median) | min | max | vs encode-only |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        print(
            f"| {name} | {medians[name]:.1f} | {min(values):.1f} | {max(values):.1f} | "
            f"{medians[name] / medians['encode_only']:.2f}x |"
        )
    per_core = medians["world_1_worker"]
    verdict = "met" if per_core >= 10 else "NOT met"
    print(f"\nper core (1 worker, clean): {per_core:.1f} clips/s — target >= 10: {verdict}")
    print(f"{cores} workers vs 1: {medians[f'world_{cores}_workers'] / per_core:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"medians": medians, "runs": results, "cores": cores}, indent=2))


if __name__ == "__main__":
    main()
