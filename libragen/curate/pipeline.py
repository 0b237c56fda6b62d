"""The curation run: Ray Data over the pending inputs, then pool-wide dedup, top-N, and the manifest.

``ray.init()`` is local with no set-up; ``RAY_ADDRESS`` points it at a cluster. Every input is one Ray
Data row; :func:`libragen.curate.process.process_item` commits its result as a marker file, so a run
killed at any moment resumes by processing only inputs without a marker. The manifest is assembled from
the markers (in input order) and written atomically last.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import libragen
from libragen.core.config import dump_config
from libragen.core.files import atomic_path, write_bytes_atomic
from libragen.core.video import read_video
from libragen.curate.config import CurateConfig
from libragen.curate.dedup import aligned_correlation, duplicate_groups
from libragen.curate.inputs import InputItem, list_inputs
from libragen.curate.plugins import import_target
from libragen.curate.process import keyframes_of, keyframes_path, marker_path, process_item
from libragen.curate.schema import CURATED_NAME, CURATED_SCHEMA
from libragen.eval.scorers import missing_paths

MAX_CHUNK = 64  # inputs per Ray task at most: progress and load balance on very large pools


def guided_chunks(count: int, workers: int, max_chunk: int = MAX_CHUNK) -> list[tuple[int, int]]:
    """Split ``count`` inputs into [start, stop) chunks that shrink as the work runs out (guided scheduling).

    Each chunk is the remaining work over twice the workers (at most ``max_chunk``, at least one input), so
    the first tasks are long, Ray's per-task cost is paid a few dozen times rather than once per file, and
    the last tasks are single files: a worker that finishes early waits for at most one file, not one block.
    """
    chunks, start = [], 0
    while start < count:
        size = min(max_chunk, max(1, -(-(count - start) // (2 * workers))))
        chunks.append((start, start + size))
        start += size
    return chunks


def _cost_order(items: list[InputItem]) -> list[InputItem]:
    """Largest files first: file size is the cheapest guess of decoding cost, so the small guided chunks at
    the end get the cheap files (longest-processing-time-first)."""

    def size(item: InputItem) -> int:
        try:
            return os.path.getsize(item.path)
        except OSError:
            return 0

    return sorted(items, key=lambda item: (-size(item), item.key))


@dataclass(frozen=True)
class CurationSummary:
    manifest: Path
    inputs: int
    processed_now: int
    records: int
    kept: int
    reasons: dict[str, int]


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{libragen.__version__}+{commit}" if commit else libragen.__version__


def config_hash(config: CurateConfig) -> str:
    return hashlib.sha256(dump_config(config).encode()).hexdigest()[:16]


def _init_ray(workers: int) -> None:
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    common = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=workers, **common)
    ray.data.DataContext.get_current().enable_progress_bars = False


def _run_pending(
    pending: list[InputItem],
    config: CurateConfig,
    out: Path,
    context: dict[str, str],
    workers: int,
    on_item: Callable[[], None] | None,
) -> None:
    import ray

    _init_ray(workers)
    config_json = config.model_dump_json()

    by_key = {item.key: item for item in pending}

    def work(batch: dict[str, np.ndarray]) -> dict[str, list]:
        config_in_worker = CurateConfig.model_validate_json(config_json)
        keys = [str(key) for chunk in batch["keys"] for key in chunk]
        # Each task holds one CPU (num_cpus=1 below), so its decoder gets one thread: N workers use N cores.
        counts = [len(process_item(by_key[key], config_in_worker, out, context, decode_threads=1)) for key in keys]
        return {"key": keys, "records": counts}

    # One row, one block, one task per chunk; Ray hands the chunks out in order as workers free up.
    ordered = _cost_order(pending)
    rows = [{"keys": [item.key for item in ordered[a:b]]} for a, b in guided_chunks(len(ordered), workers)]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    results = dataset.map_batches(work, batch_size=None, num_cpus=1, concurrency=workers)
    for _ in results.iter_rows():
        if on_item:
            on_item()


def _keyframes(out: Path, item_key: str, record: dict[str, Any], config: CurateConfig) -> np.ndarray:
    """The clip's keyframes as its worker saved them; decoded again only for results of older versions."""
    saved = keyframes_path(out, item_key)
    if saved.is_file():
        with np.load(saved) as stored:
            if record["clip_id"] in stored:
                return stored[record["clip_id"]]
    short = min(record["width"] or 0, record["height"] or 0)
    frames = read_video(
        out / record["path"],
        fps=min(config.analysis_fps, record["fps"] or config.analysis_fps),
        size=None if short <= config.analysis_size else config.analysis_size,
    )
    return keyframes_of(frames)


def _dedup(records: list[dict[str, Any]], item_keys: list[str], config: CurateConfig, out: Path) -> None:
    """Reject all but the best copy of every near-duplicate group among the clips still kept.

    ``item_keys[i]`` is the input item that ``records[i]`` came from. The best copy is the one with the
    largest short side, then the most bits per pixel (the least re-encoded), then the highest quality score.
    """
    candidates = [i for i, r in enumerate(records) if r["keep"] and r["phash"]]
    keyframes: dict[int, np.ndarray] = {}

    def same_content(a: int, b: int) -> bool:
        for k in (a, b):
            if k not in keyframes:
                index = candidates[k]
                keyframes[k] = _keyframes(out, item_keys[index], records[index], config).astype(np.float32)
        return (
            aligned_correlation(keyframes[a], keyframes[b], config.duplicate_max_shift)
            >= config.duplicate_min_correlation
        )

    groups = duplicate_groups(
        [records[i]["phash"] for i in candidates], config.duplicate_max_distance, verify=same_content
    )
    for group in groups:
        members = [candidates[g] for g in group]
        best = max(
            members,
            key=lambda i: (
                records[i]["scores"].get("short_side", 0.0),
                records[i]["scores"].get("bits_per_pixel", 0.0),
                records[i]["quality_score"],
                records[i]["clip_id"],
            ),
        )
        for i in members:
            records[i]["scores"]["duplicate_group_size"] = float(len(members))
            if i != best:
                records[i]["keep"] = False
                records[i]["reasons"] = [*records[i]["reasons"], "near_duplicate"]


def _keep_top(records: list[dict[str, Any]], keep: int | None) -> None:
    if keep is None:
        return
    kept = sorted((i for i, r in enumerate(records) if r["keep"]), key=lambda i: -records[i]["quality_score"])
    for i in kept[keep:]:
        records[i]["keep"] = False
        records[i]["reasons"] = [*records[i]["reasons"], "not_in_top_n"]


def check_plug_ins(config: CurateConfig) -> None:
    """Stop before any work when a scorer path does not exist or a plug-in class cannot be imported (plug-ins
    are imported, not built: their weights load in the workers, not in this process)."""
    missing = missing_paths(config.scorers)
    if missing:
        raise FileNotFoundError(f"{missing[0]}: scorer weights not found (give a local folder or file)")
    for target in [config.subject_detector, *config.model_scorers]:
        if target is not None:
            import_target(target, "plug-in")


def run_curation(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: CurateConfig,
    *,
    keep: int | None = None,
    workers: int = 1,
    on_start: Callable[[int, int], None] | None = None,
    on_item: Callable[[], None] | None = None,
) -> CurationSummary:
    """Curate ``source`` (folder or manifest) into ``out_dir/curated.parquet``; resumes a killed run."""
    check_plug_ins(config)
    out = Path(out_dir)
    (out / "records").mkdir(parents=True, exist_ok=True)
    items = list_inputs(source)
    context = {"config_hash": config_hash(config), "code_version": code_version()}
    pending = [item for item in items if not marker_path(out, item.key).is_file()]
    if on_start:
        on_start(len(items), len(pending))
    if pending:
        _run_pending(pending, config, out, context, workers, on_item)
    records, item_keys = [], []
    for item in items:
        rows = json.loads(marker_path(out, item.key).read_text())
        records += rows
        item_keys += [item.key] * len(rows)
    _dedup(records, item_keys, config, out)
    _keep_top(records, keep)
    manifest = out / CURATED_NAME
    with atomic_path(manifest) as tmp:
        pq.write_table(pa.Table.from_pylist(records, schema=CURATED_SCHEMA), tmp, compression="zstd")
    write_bytes_atomic(out / "curate.yaml", dump_config(config).encode())
    reasons = Counter(r["reasons"][0] for r in records if r["reasons"])
    return CurationSummary(
        manifest, len(items), len(pending), len(records), sum(r["keep"] for r in records), dict(sorted(reasons.items()))
    )
