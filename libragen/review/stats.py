"""Review quality numbers: Cohen's kappa between reviewers, per-reviewer gold accuracy, GSB ratios.

Agreement uses every active item that two or more reviewers currently label: one Cohen's kappa per pair
of reviewers on the items they share, and an overall kappa over all such (reviewer, reviewer) label pairs.
GSB choices are turned into a ratio by :func:`libragen.eval.gsb.gsb_from_choices` with the key recorded
at import (which side method A was on).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations
from typing import Any

from libragen.eval.gsb import GSB, gsb_from_choices
from libragen.review.reasons import MODES
from libragen.review.store import Store


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two raters' labels on the same items (nan with no items)."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    n = len(a)
    if n == 0:
        return float("nan")
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[k] * count_b[k] for k in set(count_a) | set(count_b)) / (n * n)
    if expected == 1.0:
        return 1.0 if observed == 1.0 else float("nan")
    return (observed - expected) / (1.0 - expected)


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def agreement(labels: list[dict[str, Any]]) -> dict[str, Any]:
    """Pairwise and overall Cohen's kappa from current labels (dicts with reviewer, item_id, decision)."""
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    for label in labels:
        by_item[label["item_id"]][label["reviewer"]] = label["decision"]
    pairs: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    all_a, all_b = [], []
    for decisions in by_item.values():
        for r1, r2 in combinations(sorted(decisions), 2):
            pairs[(r1, r2)][0].append(decisions[r1])
            pairs[(r1, r2)][1].append(decisions[r2])
            all_a.append(decisions[r1])
            all_b.append(decisions[r2])
    shared = sum(len(d) >= 2 for d in by_item.values())
    return {
        "items_with_two_or_more": shared,
        "label_pairs": len(all_a),
        "kappa": _clean(cohen_kappa(all_a, all_b)),
        "percent_agreement": _clean(sum(x == y for x, y in zip(all_a, all_b, strict=True)) / len(all_a))
        if all_a
        else None,
        "pairs": [
            {"reviewers": [r1, r2], "items": len(a), "kappa": _clean(cohen_kappa(a, b))}
            for (r1, r2), (a, b) in sorted(pairs.items())
        ],
    }


def reviewer_table(labels: list[dict[str, Any]], gold: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per reviewer: decisions, decision counts, gold items seen and accuracy, median seconds per item."""
    rows: dict[str, dict[str, Any]] = {}
    for label in labels:
        row = rows.setdefault(
            label["reviewer"],
            {
                "reviewer": label["reviewer"],
                "decisions": 0,
                "counts": Counter(),
                "gold": 0,
                "gold_correct": 0,
                "times": [],
            },
        )
        row["decisions"] += 1
        row["counts"][label["decision"]] += 1
        if label["time_spent_ms"] is not None:
            row["times"].append(label["time_spent_ms"] / 1000.0)
        if label["item_id"] in gold:
            row["gold"] += 1
            row["gold_correct"] += label["decision"] == gold[label["item_id"]]["answer"]
    out = []
    for row in sorted(rows.values(), key=lambda r: r["reviewer"]):
        out.append(
            {
                "reviewer": row["reviewer"],
                "decisions": row["decisions"],
                "counts": dict(sorted(row["counts"].items())),
                "gold": row["gold"],
                "gold_correct": row["gold_correct"],
                "gold_accuracy": round(row["gold_correct"] / row["gold"], 4) if row["gold"] else None,
                "median_seconds": round(statistics.median(row["times"]), 2) if row["times"] else None,
            }
        )
    return out


def gsb_results(labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per GSB set: the pooled and per-reviewer G/S/B counts and ratio (method A's view)."""
    sets: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label in labels:
        sets[label["context"]["set"]].append(label)
    out = []
    for set_name, set_labels in sorted(sets.items()):
        per_reviewer = []
        pooled = GSB(0, 0, 0)
        by_reviewer: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for label in set_labels:
            by_reviewer[label["reviewer"]].append(label)
        for reviewer, items in sorted(by_reviewer.items()):
            key = {label["context"]["item"]: label["context"]["left"] for label in items}
            choices = {label["context"]["item"]: label["decision"] for label in items}
            result = gsb_from_choices(key, choices)
            pooled = GSB(pooled.good + result.good, pooled.same + result.same, pooled.bad + result.bad)
            per_reviewer.append({"reviewer": reviewer, **_gsb_dict(result)})
        out.append({"set": set_name, **_gsb_dict(pooled), "reviewers": per_reviewer})
    return out


def _gsb_dict(result: GSB) -> dict[str, Any]:
    return {"good": result.good, "same": result.same, "bad": result.bad, "ratio": _clean(result.ratio)}


def pair_results(labels: list[dict[str, Any]]) -> dict[str, Any]:
    """DPO pair review: how often people found the positive better, the same, or worse."""
    verdicts = Counter(pair_verdict(label) for label in labels)
    total = sum(verdicts.values())
    return {
        "judgements": total,
        "positive_better": verdicts["positive_better"],
        "same": verdicts["same"],
        "negative_better": verdicts["negative_better"],
        "confirmed_share": round(verdicts["positive_better"] / total, 4) if total else None,
    }


def pair_verdict(label: dict[str, Any]) -> str:
    """A pair decision (left/right/same) seen from the positive: positive_better, same or negative_better."""
    if label["decision"] == "same":
        return "same"
    return "positive_better" if label["context"][label["decision"]] == "positive" else "negative_better"


def review_stats(store: Store) -> dict[str, Any]:
    """Everything the stats page shows, as one JSON-able dict."""
    out: dict[str, Any] = {}
    for mode in MODES:
        labels = store.current_labels(mode)
        gold = store.gold(mode)
        with store.connect() as conn:
            items = conn.execute("SELECT COUNT(*) FROM items WHERE mode = ? AND active = 1", (mode,)).fetchone()[0]
        section: dict[str, Any] = {
            "items": int(items),
            "items_decided": len({label["item_id"] for label in labels}),
            "gold_items": len(gold),
            "reviewers": reviewer_table(labels, gold),
            "agreement": agreement(labels),
        }
        if mode == "gsb":
            section["gsb"] = gsb_results(labels)
        if mode == "pair":
            section["pairs"] = pair_results(labels)
        out[mode] = section
    return out
