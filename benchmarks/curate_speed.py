"""Curation speed, in one run over the same files:

1. every probe of the pipeline (one process, no Ray) vs PySceneDetect's ContentDetector alone — the target is
   that the whole pipeline is no slower than that single probe, thanks to the one shared reduced decode;
2. the Ray Data pipeline with 2 workers vs 1 worker (target >= 1.7x on 2 cores).

    libragen world make --n 1000 --defects 0.3 --seed 5 --out /tmp/pool1k
    python benchmarks/curate_speed.py --pool /tmp/pool1k --n 300

Medians over ``--repeats`` runs; run it on an otherwise idle machine (the ratio is what counts).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from libragen.curate.config import CurateConfig
from libragen.curate.inputs import list_inputs
from libragen.curate.pipeline import run_curation
from libragen.curate.process import process_item


def _pyscenedetect(paths: list[str]) -> None:
    from scenedetect import ContentDetector, detect

    for path in paths:
        with contextlib.suppress(Exception):
            detect(path, ContentDetector())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = root / "files"
        files.mkdir()
        for path in sorted((args.pool / "clips").iterdir())[: args.n]:
            shutil.copy(path, files / path.name)
        items = list_inputs(files)
        paths = [item.path for item in items]
        config = CurateConfig()
        context = {"config_hash": "bench", "code_version": "bench"}
        times: dict[str, list[float]] = {"pyscenedetect": [], "all_probes": [], "ray_1_worker": [], "ray_2_workers": []}
        for repeat in range(args.repeats):
            start = time.perf_counter()
            _pyscenedetect(paths)
            times["pyscenedetect"].append(time.perf_counter() - start)

            out = root / f"probes{repeat}"
            start = time.perf_counter()
            for item in items:
                process_item(item, config, out, context)
            times["all_probes"].append(time.perf_counter() - start)

            for workers, name in ((1, "ray_1_worker"), (2, "ray_2_workers")):
                out = root / f"{name}{repeat}"
                start = time.perf_counter()
                run_curation(files, out, config, workers=workers)
                times[name].append(time.perf_counter() - start)
                import ray

                ray.shutdown()  # the next run starts its own local cluster with its worker count

    median = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.n} files, "
        f"median of {args.repeats}\n"
    )
    print("| run | seconds (median) | files/s | min | max |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {median[name]:.1f} | {args.n / median[name]:.1f} | {min(values):.1f} | {max(values):.1f} |")
    print(
        f"\nall probes vs PySceneDetect alone: {median['all_probes'] / median['pyscenedetect']:.2f}x the time "
        f"(target <= 1.0)"
    )
    print(f"Ray 2 workers vs 1: {median['ray_1_worker'] / median['ray_2_workers']:.2f}x faster (target >= 1.7)")


if __name__ == "__main__":
    main()
