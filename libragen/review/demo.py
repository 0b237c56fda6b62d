"""Demo and test input: a ``curated.parquet`` (CURATED_SCHEMA) made from a LibraWorld set, plus gold answers.

Curation proper lives in ``libragen.curate``; this module only *simulates* its verdicts from LibraWorld's
ground truth so the review app can be tried and tested before (or without) a curation run. Scores are
synthetic numbers (deterministic per clip); part of the subtly damaged clips are "kept" with the
matching threshold in ``near_reasons``, so reviewers have real defects to reject.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from libragen.core.files import atomic_path, write_bytes_atomic
from libragen.curate.schema import CURATED_NAME, CURATED_SCHEMA
from libragen.world.config import FILE_DEFECTS, WorldConfig
from libragen.world.generate import make_world
from libragen.world.manifest import read_manifest

#: Defects that the simulated curation misses on every other clip (they reach the reviewers).
MISSED_DEFECTS = frozenset({"cut", "static", "text_overlay", "blur", "letterbox", "subject_too_small", "occluded"})
SCORE_NAMES = (
    "cut_score",
    "static_motion",
    "blur_sharpness",
    "text_overlay_area",
    "letterbox_fraction",
    "subject_too_small_area",
)


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:12], 16) / 16**12


def curated_row_from_world(row: dict[str, Any], index: int) -> dict[str, Any]:
    """One LibraWorld manifest row as a CURATED_SCHEMA row with a simulated automatic verdict."""
    defect = row["defect"]
    unreadable = defect in FILE_DEFECTS
    missed = defect in MISSED_DEFECTS and index % 2 == 0
    keep = defect is None or missed
    reason = "unreadable" if unreadable else defect
    scores = {name: round(_unit(row["clip_id"], name), 4) for name in SCORE_NAMES}
    return {
        "clip_id": row["clip_id"],
        "path": None if unreadable else row["path"],
        "source_path": row["path"],
        "start_frame": 0,
        "end_frame": int(row["num_frames"]),
        "content_hash": row["sha256"],
        "keep": keep,
        "reasons": [] if keep else [reason],
        "near_reasons": [reason] if missed else [],
        "scores": list(scores.items()),
        "quality_score": round(sum(scores.values()) / len(scores), 4),
        "width": int(row["width"]),
        "height": int(row["height"]),
        "fps": float(row["fps"]),
        "num_frames": int(row["num_frames"]),
        "caption": row["caption"],
        "subjects": row["subjects"],
        "config_hash": "demo",
        "code_version": "review-demo",
    }


def write_curated_from_world(world_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write ``curated.parquet`` for a LibraWorld folder (paths stay relative: written inside the folder)."""
    root = Path(world_dir)
    target = Path(out) if out is not None else root / CURATED_NAME
    if target.resolve().parent != root.resolve():
        raise ValueError("the curated manifest must sit in the world folder (its paths are relative to it)")
    rows = [curated_row_from_world(row, k) for k, row in enumerate(read_manifest(root))]
    with atomic_path(target) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=CURATED_SCHEMA), tmp)
    return target


def write_gold_from_world(
    world_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, count: int, seed: int = 0
) -> Path:
    """Gold answers (JSON lines) for ``count`` clips the simulated curation kept: defect -> reject, else accept.

    Damaged and clean clips alternate, so the gold set has both answers when the world has both.
    """
    rows = read_manifest(world_dir)
    kept = [row for k, row in enumerate(rows) if curated_row_from_world(row, k)["keep"]]
    kept.sort(key=lambda row: _unit(seed, row["clip_id"]))
    damaged, clean = [r for r in kept if r["defect"]], [r for r in kept if not r["defect"]]
    kept = [row for pair in zip(damaged, clean, strict=False) for row in pair]  # balanced: reject, accept, ...
    kept += damaged[len(kept) // 2 :] + clean[len(kept) // 2 :]
    lines = [
        json.dumps(
            {
                "item_id": row["clip_id"],
                "answer": "reject" if row["defect"] else "accept",
                "reasons": [row["defect"]] if row["defect"] else [],
            }
        )
        for row in kept[:count]
    ]
    return write_bytes_atomic(out, ("\n".join(lines) + "\n").encode())


def make_demo(out_dir: str | os.PathLike[str], n: int = 40, *, seed: int = 0, gold: int = 4) -> dict[str, Path]:
    """A LibraWorld set with 30 % defects, its simulated ``curated.parquet`` and a gold file."""
    root = Path(out_dir)
    world = root / "world"
    make_world(WorldConfig(defect_rate=0.3), n, world, seed=seed)
    curated = write_curated_from_world(world)
    gold_path = write_gold_from_world(world, root / "gold.jsonl", count=gold, seed=seed)
    return {"world": world, "curated": curated, "gold": gold_path}
