"""Curation accuracy on a LibraWorld pool with injected defects: per-kind precision/recall, clean false rejects.

    libragen world make --n 1000 --defects 0.3 --seed 5 --out /tmp/pool1k
    python benchmarks/curate_quality.py --pool /tmp/pool1k --out /tmp/pool1k-curated [--workers 2]

Scored per *source clip* against the manifest's ``defect`` column:

* a source whose analysis found a shot cut is predicted ``cut`` (its shots are separate candidates);
* otherwise the prediction is the primary reason (``reasons[0]``, see ``curate.probes.PRIORITY``) of its
  record, mapped to the defect kind it stands for; a kept clip is predicted clean;
* near-duplicates are scored as groups: a clip is predicted "in a duplicate group" when dedup linked it to
  another clip, and truly in one when it is a ``near_duplicate`` defect or the clip it copies. Which member
  of a group is dropped (the one with the lower quality score) is reported separately.

The same table is also printed with *any* reason counting (stricter: a clip flagged for two reasons is a
false positive for the second), so both views are on record.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from libragen.curate.config import CurateConfig
from libragen.curate.pipeline import run_curation
from libragen.curate.schema import CURATED_NAME
from libragen.world.config import DEFECT_KINDS
from libragen.world.manifest import read_manifest

REASON_TO_KIND = {
    "empty_file": "zero_bytes",
    "not_video": "not_video",
    "corrupt_video": "truncated",
    "too_short": "too_short",
    "low_resolution": "low_resolution",
    "letterbox": "letterbox",
    "text_overlay": "text_overlay",
    "low_bitrate": "low_bitrate",
    "blur": "blur",
    "subject_too_small": "subject_too_small",
    "occluded": "occluded",
    "static": "static",
}


def _table(truth: dict[str, str], predicted: dict[str, set[str]], kinds: list[str]) -> tuple[str, dict]:
    lines = ["| defect | GT clips | flagged | precision | recall |", "|---|---|---|---|---|"]
    numbers = {}
    for kind in kinds:
        positives = {c for c, k in truth.items() if k == kind}
        flagged = {c for c, p in predicted.items() if kind in p}
        hit = len(positives & flagged)
        precision = hit / len(flagged) if flagged else float("nan")
        recall = hit / len(positives) if positives else float("nan")
        numbers[kind] = {"gt": len(positives), "flagged": len(flagged), "precision": precision, "recall": recall}
        lines.append(f"| {kind} | {len(positives)} | {len(flagged)} | {precision:.3f} | {recall:.3f} |")
    return "\n".join(lines), numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    start = time.perf_counter()
    summary = run_curation(args.pool / "manifest.parquet", args.out, CurateConfig(), workers=args.workers)
    seconds = time.perf_counter() - start
    world = read_manifest(args.pool)
    truth = {row["clip_id"]: row["defect"] or "clean" for row in world}
    dup_sources = {json.loads(r["defect_params"])["duplicate_of"] for r in world if r["defect"] == "near_duplicate"}

    import pyarrow.parquet as pq

    records = pq.read_table(args.out / CURATED_NAME).to_pylist()
    by_source: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_source[record["clip_id"].split("#shot")[0]].append(record)

    primary: dict[str, set[str]] = {}
    anything: dict[str, set[str]] = {}
    in_group: set[str] = set()
    dropped_copy = dropped_original = 0
    for source, recs in by_source.items():
        scores = dict(recs[0]["scores"])
        if any(dict(r["scores"]).get("duplicate_group_size", 0) >= 2 for r in recs):
            in_group.add(source)
            if any("near_duplicate" in r["reasons"] for r in recs):
                dropped_copy += truth[source] == "near_duplicate"
                dropped_original += source in dup_sources
        if scores.get("source_cuts", 0) > 0:
            primary[source] = anything[source] = {"cut"}
            continue
        reasons = [r for r in recs[0]["reasons"] if r not in ("near_duplicate", "not_in_top_n")]
        primary[source] = {REASON_TO_KIND[reasons[0]]} if reasons else {"clean"}
        anything[source] = {REASON_TO_KIND[r] for r in reasons} or {"clean"}

    kinds = [k for k in DEFECT_KINDS if k != "near_duplicate"]
    primary_table, primary_numbers = _table(truth, primary, kinds)
    any_table, _ = _table(truth, anything, kinds)
    dup_truth = {c for c, k in truth.items() if k == "near_duplicate"} | dup_sources
    dup_hit = len(dup_truth & in_group)
    dup_precision = dup_hit / len(in_group) if in_group else float("nan")
    dup_recall = dup_hit / len(dup_truth) if dup_truth else float("nan")
    clean = [c for c, k in truth.items() if k == "clean"]
    clean_rejected = [c for c in clean if primary[c] != {"clean"}]
    clean_dedup_dropped = [
        c
        for c in clean
        if c in dup_sources and c in in_group and any("near_duplicate" in r["reasons"] for r in by_source[c])
    ]

    print(
        f"pool: {args.pool} ({len(world)} clips), {summary.records} records, {summary.kept} kept, "
        f"{seconds:.0f} s with {args.workers} Ray workers\n"
    )
    print("Primary reason per source clip:\n\n" + primary_table)
    print(f"| near_duplicate (groups) | {len(dup_truth)} | {len(in_group)} | {dup_precision:.3f} | {dup_recall:.3f} |")
    print(
        f"\nIn duplicate groups, the dropped member was the copy {dropped_copy} times and the original "
        f"{dropped_original} times."
    )
    print(
        f"Clean clips falsely rejected: {len(clean_rejected)}/{len(clean)} = "
        f"{len(clean_rejected) / len(clean):.3%} (plus {len(clean_dedup_dropped)} originals dropped in favour "
        "of their near-duplicate copy)"
    )
    print("\nAny reason counting:\n\n" + any_table)
    worst = min(min(v["precision"], v["recall"]) for v in primary_numbers.values())
    print(
        f"\nworst per-kind precision/recall (primary): {worst:.3f}; near-duplicate groups: "
        f"{min(dup_precision, dup_recall):.3f}"
    )


if __name__ == "__main__":
    main()
