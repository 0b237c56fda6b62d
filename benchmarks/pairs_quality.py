"""Pairs quality on LibraWorld (issue #7 "Must show"), measured against the world's ground truth.

    python benchmarks/pairs_quality.py [--n 400] [--seed 11] [--world /tmp/pairs_world]
                                       [--out /tmp/pairs_bench] [--curve] [--prepared-risk] [--json F]

Makes (or reuses) a clean LibraWorld set of ``--n`` clips, runs ``pairs build`` with the default
config (configs/pairs.yaml) and reports:

* **cross-pair identity precision**: share of cross-pair references whose source subject has the
  target subject's identity id (ground truth is read here only, never by the build), and
  **recall**: share of target subjects whose identity is visible in another clip that got a
  correct cross-pair reference;
* **in-pair coverage**: IoU of each in-pair reference's subject box (from the mask, in the chosen
  frame, before augmentation) with the ground-truth full-extent box of that subject in that frame;
* **copy-paste risk**: for subjects with both an in-pair and a cross-pair reference, the share
  whose in-pair ``copy_paste_risk`` is higher than the cross-pair one (and the medians);
  with ``--prepared-risk`` the same for ``prepared_copy_paste``.

``--curve`` adds a second build at threshold 0.5 and the precision/recall at several thresholds,
by keeping the cross references with similarity >= t. That equals a build at t: candidates are
ranked by similarity and the first one that is no near-duplicate is taken, so the reference a
build at t picks is the one the 0.5 build picked when its similarity is >= t, and none otherwise.
The benchmark checks this at the default threshold against the first build.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import cpu_model  # benchmarks/machine.py (scripts run from this folder)

from libragen.core.config import load_config
from libragen.pairs.build import build_pairs
from libragen.pairs.config import PairsConfig
from libragen.pairs.samples import read_samples
from libragen.world.config import WorldConfig
from libragen.world.generate import make_world
from libragen.world.manifest import MANIFEST_NAME, read_manifest

CURVE = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _truth(world: Path) -> tuple[dict[str, dict[int, dict[str, Any]]], dict[int, set[str]]]:
    """Per clip, ref index -> ground-truth subject; per identity, the clips where it is visible."""
    subjects: dict[str, dict[int, dict[str, Any]]] = {}
    seen: dict[int, set[str]] = {}
    for row in read_manifest(world):
        subjects[row["clip_id"]] = {int(s["ref_index"]): s for s in row["subjects"]}
        for s in row["subjects"]:
            if max(s["visible_fraction"]) > 0:
                seen.setdefault(int(s["identity_id"]), set()).add(row["clip_id"])
    return subjects, seen


def _cross_refs(samples: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {
        (row["clip_id"], int(ref["target_ref_index"])): ref
        for row in samples
        if row["pair_type"] == "cross"
        for ref in row["refs"]
    }


def _precision_recall(
    cross: dict[tuple[str, int], dict[str, Any]],
    subjects: dict[str, dict[int, dict[str, Any]]],
    seen: dict[int, set[str]],
    located: set[tuple[str, int]],
    threshold: float,
) -> dict[str, float]:
    kept = {key: ref for key, ref in cross.items() if ref["similarity"] >= threshold - 1e-6}  # float32 storage
    right = {
        (c, k)
        for (c, k), ref in kept.items()
        if subjects[c][k]["identity_id"] == subjects[ref["source_clip_id"]][int(ref["source_ref_index"])]["identity_id"]
    }
    correct = len(right)
    with_partner = {(c, k) for c, k in located if len(seen.get(int(subjects[c][k]["identity_id"]), set()) - {c}) > 0}
    found = len(with_partner & right)
    return {
        "threshold": threshold,
        "cross_refs": len(kept),
        "precision": correct / len(kept) if kept else float("nan"),
        "wrong": len(kept) - correct,
        "recall": found / len(with_partner) if with_partner else float("nan"),
        "subjects_with_partner": len(with_partner),
    }


def evaluate(world: Path, build: Path, threshold: float) -> dict[str, Any]:
    subjects, seen = _truth(world)
    samples = read_samples(build)
    inpair = [(row, ref) for row in samples if row["pair_type"] == "in" for ref in row["refs"]]
    located = {(row["clip_id"], int(ref["target_ref_index"])) for row, ref in inpair}
    ious = np.array(
        [
            _iou(ref["box"], subjects[row["clip_id"]][int(ref["target_ref_index"])]["boxes"][ref["frame_index"]])
            for row, ref in inpair
        ]
    )
    cross = _cross_refs(samples)
    in_by_subject = {(row["clip_id"], int(ref["target_ref_index"])): ref for row, ref in inpair}
    both = [key for key in cross if key in in_by_subject]
    risk_in = np.array([in_by_subject[k]["copy_paste_risk"] for k in both])
    risk_cross = np.array([cross[k]["copy_paste_risk"] for k in both])
    prep_in = [in_by_subject[k]["prepared_copy_paste"] for k in both]
    prep_cross = [cross[k]["prepared_copy_paste"] for k in both]
    result: dict[str, Any] = {
        "samples": {
            "in": sum(r["pair_type"] == "in" for r in samples),
            "cross": sum(r["pair_type"] == "cross" for r in samples),
        },
        "cross": _precision_recall(cross, subjects, seen, located, threshold),
        "inpair_iou": {
            "refs": len(ious),
            "mean": float(ious.mean()),
            "min": float(ious.min()),
            "share_ge_0.8": float((ious >= 0.8).mean()),
        },
        "copy_paste": {
            "subjects_with_both": len(both),
            "share_in_higher": float((risk_in > risk_cross).mean()) if both else float("nan"),
            "median_in": float(np.median(risk_in)) if both else float("nan"),
            "median_cross": float(np.median(risk_cross)) if both else float("nan"),
        },
    }
    if both and all(v is not None for v in (*prep_in, *prep_cross)):
        result["prepared_copy_paste"] = {
            "share_in_higher": float(np.mean(np.array(prep_in) > np.array(prep_cross))),
            "median_in": float(np.median(prep_in)),
            "median_cross": float(np.median(prep_cross)),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--world", type=Path, default=Path("/tmp/pairs_world"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/pairs_bench"))
    parser.add_argument("--config", type=Path, default=None, help="pairs config (default: built-in defaults)")
    parser.add_argument("--curve", action="store_true", help="also the precision/recall curve (second build)")
    parser.add_argument("--prepared-risk", action="store_true", help="also score prepared references (slower)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    world = args.world
    if not (world / MANIFEST_NAME).is_file():
        start = time.perf_counter()
        make_world(WorldConfig(defect_rate=0.0), args.n, world, seed=args.seed, workers=args.workers)
        print(f"made {args.n} clean clips in {time.perf_counter() - start:.1f}s -> {world}")
    config = load_config(
        PairsConfig, args.config, workers=args.workers, prepared_risk=True if args.prepared_risk else None
    )
    start = time.perf_counter()
    summary = build_pairs(world / MANIFEST_NAME, args.out / "default", config)
    seconds = time.perf_counter() - start
    report: dict[str, Any] = {
        "world": {"n": len(read_manifest(world)), "seed": args.seed, "path": str(world)},
        "config": config.model_dump(mode="json"),
        "build_seconds": round(seconds, 1),
        "summary": summary.data,
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    report.update(evaluate(world, args.out / "default", config.threshold))
    if args.curve:
        low = config.model_copy(update={"threshold": min(CURVE)})
        build_pairs(world / MANIFEST_NAME, args.out / "curve", low)
        subjects, seen = _truth(world)
        samples = read_samples(args.out / "curve")
        located = {
            (r["clip_id"], int(ref["target_ref_index"])) for r in samples if r["pair_type"] == "in" for ref in r["refs"]
        }
        cross = _cross_refs(samples)
        report["curve"] = [_precision_recall(cross, subjects, seen, located, t) for t in CURVE]
        default_cross = _cross_refs(read_samples(args.out / "default"))
        filtered = {k for k, ref in cross.items() if ref["similarity"] >= config.threshold - 1e-6}
        report["curve_matches_default_build"] = filtered == set(default_cross) and all(
            cross[k]["source_clip_id"] == default_cross[k]["source_clip_id"] for k in filtered
        )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
