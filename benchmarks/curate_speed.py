"""Curation speed, in one run over the same files:

1. every probe of the pipeline vs PySceneDetect's ContentDetector alone — the target is that the whole
   pipeline is no slower than that single probe, thanks to the one shared reduced decode. Timed two ways:
   both in one process (each decoding with every core), and both spread over 2 processes the way each is
   run on a whole machine (the pipeline as ``libragen curate run`` runs it: 2 Ray workers; PySceneDetect:
   one file at a time to 2 plain processes);
2. the Ray Data pipeline with 2 workers vs 1 worker (target >= 1.7x on 2 cores). Each Ray task holds one
   CPU and decodes with one thread. The same per-file work in 2 plain processes vs 1 (no Ray, one file at a
   time to whichever process is free) is timed too: how far this machine lets it scale.

    libragen world make --n 240 --defects 0.3 --seed 5 --config configs/world_720p.yaml --out /tmp/pool720
    python benchmarks/curate_speed.py --pool /tmp/pool720 --n 240 --out docs/examples/curate_speed/720p.json

Every Ray run starts its own local cluster and worker processes (about 4-5 s on 2 cores, whatever the pool
size), so on a small pool the start-up weighs on both Ray ratios; a larger ``--n`` shows the running rate.
The pool's frame size decides the outcome: PySceneDetect decodes and converts every frame at full size, our
pipeline decodes every frame too but converts and analyses only the analysis frames (short side
``analysis_size``, ``analysis_fps``), so the shared decode pays off as frames grow (on 64-px clips decoding is
nearly free and our extra probes dominate). Medians over ``--repeats`` runs; run it on an otherwise idle
machine (the ratios are what count).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from libragen.core.video import VideoReadError, probe_video
from libragen.curate.config import CurateConfig
from libragen.curate.inputs import list_inputs
from libragen.curate.pipeline import run_curation
from libragen.curate.process import process_item

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe


def _pyscenedetect_files(paths: list[str]) -> None:
    from scenedetect import ContentDetector, detect

    for path in paths:
        with contextlib.suppress(Exception):
            detect(path, ContentDetector())


def _pyscenedetect(paths: list[str], workers: int = 1) -> None:
    """PySceneDetect's ContentDetector over the files, in one process or one file at a time over ``workers``
    plain processes (the same spread the curation pipeline gets from its Ray workers)."""
    if workers == 1:
        _pyscenedetect_files(paths)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_pyscenedetect_files, [[path] for path in paths], chunksize=1)


def _one_thread_item(job: tuple) -> None:
    item, config, out, context = job
    process_item(item, config, out, context, decode_threads=1)


def _plain_processes(items: list, config: CurateConfig, out: Path, context: dict[str, str], workers: int) -> None:
    """The same per-file work as a Ray task (one decoder thread) in ``workers`` plain processes, one file at a
    time to whichever process is free: the machine's own ceiling for spreading this work, without Ray."""
    jobs = [(item, config, out, context) for item in items]
    if workers == 1:
        for job in jobs:
            _one_thread_item(job)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_one_thread_item, jobs, chunksize=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = root / "files"
        files.mkdir()
        for path in sorted((args.pool / "clips").iterdir())[: args.n]:
            shutil.copy(path, files / path.name)
        items = list_inputs(files)
        paths = [item.path for item in items]
        sizes = []
        for path in paths:
            with contextlib.suppress(VideoReadError):
                info = probe_video(path)
                sizes.append(f"{info.width}x{info.height} {info.num_frames} frames at {info.fps:g} fps")
        pool = statistics.mode(sizes) if sizes else "no readable file"
        config = CurateConfig()
        context = {"config_hash": "bench", "code_version": "bench"}
        names = (
            "pyscenedetect",
            "all_probes",
            "ray_1_worker",
            "ray_2_workers",
            "plain_1_process",
            "plain_2_processes",
            "pyscenedetect_2_processes",
        )
        times: dict[str, list[float]] = {name: [] for name in names}
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

            for workers, name in ((1, "plain_1_process"), (2, "plain_2_processes")):
                start = time.perf_counter()
                _plain_processes(items, config, root / f"{name}{repeat}", context, workers)
                times[name].append(time.perf_counter() - start)

            start = time.perf_counter()
            _pyscenedetect(paths, workers=2)
            times["pyscenedetect_2_processes"].append(time.perf_counter() - start)

    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"machine: {describe()}; {len(paths)} files (most: {pool}), median of {args.repeats}\n")
    print("| run | seconds (median) | files/s | min | max |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {median[name]:.1f} | {args.n / median[name]:.1f} | {min(values):.1f} | {max(values):.1f} |")
    print(
        f"\nall probes vs PySceneDetect alone: {median['all_probes'] / median['pyscenedetect']:.2f}x the time "
        f"(target <= 1.0)"
    )
    print(f"Ray 2 workers vs 1: {median['ray_1_worker'] / median['ray_2_workers']:.2f}x faster (target >= 1.7)")
    ceiling = median["plain_1_process"] / median["plain_2_processes"]
    print(f"the same work in 2 plain processes vs 1 (no Ray; this machine's ceiling): {ceiling:.2f}x faster")
    on_both_cores = median["ray_2_workers"] / median["pyscenedetect_2_processes"]
    print(
        f"both on the whole machine, the pipeline as the CLI runs it (2 Ray workers) vs PySceneDetect in 2 "
        f"processes: {on_both_cores:.2f}x the time"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "command": "python " + " ".join(sys.argv),
            "machine": describe(),
            "files": len(paths),
            "typical_file": pool,
            "seconds": times,
            "median_seconds": median,
            "all_probes_vs_pyscenedetect": median["all_probes"] / median["pyscenedetect"],
            "ray_2_vs_1_speedup": median["ray_1_worker"] / median["ray_2_workers"],
            "plain_2_vs_1_speedup": ceiling,
            "ray_2_workers_vs_pyscenedetect_2_processes": on_both_cores,
        }
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
