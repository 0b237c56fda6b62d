"""Load test of the review server on loopback: N concurrent reviewers x M decisions, then a database audit.

    python benchmarks/review_load.py --reviewers 8 --decisions 250 [--repeats 3] [--out results.json]

Prints one JSON object per run and a markdown table row per run (see docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

from libragen.review.loadtest import run_load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviewers", type=int, default=8)
    parser.add_argument("--decisions", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write all runs as JSON here")
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="review_load_") as workdir:
            result = run_load(workdir, reviewers=args.reviewers, decisions=args.decisions).as_dict()
        runs.append(result)
        print(json.dumps(result), flush=True)
    print(f"\n{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(
        "| run | decisions | acknowledged | in DB | lost | duplicated | retries deduplicated | wall s | decisions/s "
        "| p50 ms | p95 ms | max ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k, r in enumerate(runs, 1):
        print(
            f"| {k} | {r['decisions_sent']} | {r['acknowledged']} | {r['decision_events_in_db']} | {r['lost']} | "
            f"{r['duplicated']} | {r['duplicate_acks']}/{r['retries_sent']} | {r['wall_s']} | {r['decisions_per_s']} "
            f"| {r['latency_ms_p50']} | {r['latency_ms_p95']} | {r['latency_ms_max']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(runs, indent=2))
    bad = [r for r in runs if r["lost"] or r["duplicated"] or r["errors"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
