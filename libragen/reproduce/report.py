"""The reproduce report: the table (mean ± std over seeds), GSB against merged SFT, the balance radar, and one
verdict per research question, written into docs/results.md between two markers.

Verdict rules are fixed here, before any run, and use *paired* per-video differences (same prompt, same noise)
pooled over seeds; "up" / "down" means beyond two standard errors of that difference:

* RQ1 — LibraGen vs the VGFM: subject consistency up, dynamic degree and visual quality not down.
* RQ2 — LibraGen vs the same recipe on the raw pool: composite (mean of the four balance axes) up and GSB > 0.
* RQ3 — in-pair copy-pastes more than cross-pair (copy-paste up), and the merge is within 5 % of the better of
  the two on every balance axis.
* RQ4 — +merged DPO vs merged SFT: subject consistency up, dynamic degree and visual quality not down.
* RQ5 — +dynamic CFG vs the same model with text CFG: text alignment up, no other balance axis down.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from pathlib import Path

from libragen.eval.gsb import automatic_judge
from libragen.eval.heldout import mean_and_error, paired_differences
from libragen.eval.report import radar_chart

BEGIN = "<!-- libragen reproduce: begin (generated; edit the command, not this section) -->"
END = "<!-- libragen reproduce: end -->"

#: Table columns: report summary key, header, higher is better.
COLUMNS = [
    ("dynamic_degree", "dynamic degree", True),
    ("smoothness", "motion smoothness", True),
    ("visual_quality", "visual quality", True),
    ("ta", "text alignment", True),
    ("consistency", "subject consistency", True),
    ("copy_paste", "copy-paste ↓", False),
    ("realism_fd", "realism FD ↓", False),
]
#: The four balance axes (per video): the radar's and the composite's.
BALANCE = {
    "dynamic": "dynamic degree",
    "ta": "text alignment",
    "visual_quality": "visual quality",
    "consistency": "subject consistency",
}
GSB_BASE = "merged SFT"
RADAR_ROWS = [
    "VGFM (text only)",
    "in-pair SFT",
    "cross-pair SFT",
    "merged SFT",
    "+dynamic CFG (= LibraGen)",
    "raw-data LibraGen",
]


def composite(report: dict) -> dict[str, float]:
    """Per video: the mean of the four balance axes, each clipped to [0, 1]."""
    scores = {}
    for video, values in report["per_video"].items():
        axes = [min(1.0, max(0.0, values[key])) for key in BALANCE if values.get(key) == values.get(key)]
        if len(axes) == len(BALANCE):
            scores[video] = sum(axes) / len(axes)
    return scores


def _with_composite(report: dict) -> dict:
    scores = composite(report)
    per_video = {v: {**s, "composite": scores[v]} for v, s in report["per_video"].items() if v in scores}
    return {**report, "per_video": per_video}


def pooled_difference(reports: list[dict], baselines: list[dict], key: str) -> tuple[float, float]:
    """Paired per-video difference of ``key`` pooled over seeds: mean and standard error."""
    differences = []
    for report, baseline in zip(reports, baselines, strict=True):
        differences += paired_differences(_with_composite(report), _with_composite(baseline), key)
    return mean_and_error(differences)


def _cell(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "–"
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def seed_aligned(rows: Mapping[str, list[dict]], a: str, b: str) -> tuple[list[dict], list[dict]]:
    """The reports of rows ``a`` and ``b`` seed by seed; a row with one report (the VGFM, which does not depend on
    the training seed) stands beside every seed of the other."""
    left, right = rows[a], rows[b]
    if len(left) == 1 and len(right) > 1:
        left = left * len(right)
    if len(right) == 1 and len(left) > 1:
        right = right * len(left)
    return left, right


def gsb_values(rows: Mapping[str, list[dict]], margin: float) -> dict[str, list[float]]:
    """Per row, one automatic-judge GSB ratio per seed against the merged-SFT row of the same seed."""
    out = {}
    for name in rows:
        pairs = zip(*seed_aligned(rows, name, GSB_BASE), strict=True)
        out[name] = [automatic_judge(composite(r), composite(b), margin).ratio for r, b in pairs]
    return out


def results_table(rows: Mapping[str, list[dict]], margin: float) -> str:
    """Markdown: one row per variant, mean ± std over seeds, GSB vs merged SFT last."""
    gsb = gsb_values(rows, margin)
    header = ["variant", *(label for _, label, _ in COLUMNS), f"GSB vs {GSB_BASE} (auto judge)"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, reports in rows.items():
        cells = [
            _cell([r["summary"].get(key, math.nan) for r in reports], 1 if key == "realism_fd" else 3)
            for key, _, _ in COLUMNS
        ]
        cells.append("—" if name == GSB_BASE else _cell(gsb[name], 2))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _delta(rows: Mapping[str, list[dict]], a: str, b: str, key: str) -> tuple[float, float]:
    return pooled_difference(*seed_aligned(rows, a, b), key)


def _up(delta: tuple[float, float]) -> bool:
    return delta[0] > 2 * delta[1]


def _not_down(delta: tuple[float, float]) -> bool:
    return delta[0] >= -2 * delta[1]


def _fmt(delta: tuple[float, float]) -> str:
    return f"{delta[0]:+.3f} ± {delta[1]:.3f}"


def verdicts(rows: Mapping[str, list[dict]], margin: float) -> list[tuple[str, bool, str]]:
    """(question, holds, the numbers) for RQ1-RQ5 by the rules in the module docstring."""
    out = []
    libragen, vgfm = "+dynamic CFG (= LibraGen)", "VGFM (text only)"
    d = {k: _delta(rows, libragen, vgfm, k) for k in ("consistency", "dynamic", "visual_quality")}
    out.append(
        (
            "RQ1 subject consistency without losing motion or visual quality (LibraGen vs VGFM)",
            _up(d["consistency"]) and _not_down(d["dynamic"]) and _not_down(d["visual_quality"]),
            f"Δ consistency {_fmt(d['consistency'])}, Δ dynamic degree {_fmt(d['dynamic'])}, "
            f"Δ visual quality {_fmt(d['visual_quality'])}",
        )
    )
    raw = "raw-data LibraGen"
    d_comp = _delta(rows, libragen, raw, "composite")
    gsb = [
        automatic_judge(composite(a), composite(b), margin).ratio
        for a, b in zip(*seed_aligned(rows, libragen, raw), strict=True)
    ]
    out.append(
        (
            "RQ2 quality over quantity (curated LibraGen vs the same recipe on the ≥10× larger raw pool)",
            _up(d_comp) and statistics.mean(gsb) > 0,
            f"Δ composite {_fmt(d_comp)}, GSB curated vs raw {statistics.mean(gsb):+.2f}",
        )
    )
    d_cp = _delta(rows, "in-pair SFT", "cross-pair SFT", "copy_paste")
    shortfalls = {}
    for key, label in BALANCE.items():
        summary_key = "dynamic_degree" if key == "dynamic" else key
        best = max(
            statistics.mean(r["summary"][summary_key] for r in rows[n]) for n in ("in-pair SFT", "cross-pair SFT")
        )
        merged = statistics.mean(r["summary"][summary_key] for r in rows["merged SFT"])
        shortfalls[label] = (merged - best) / best if best else 0.0
    worst = min(shortfalls, key=shortfalls.get)
    out.append(
        (
            "RQ3 in-pair copy-pastes, cross-pair generalises, the merge balances",
            _up(d_cp) and shortfalls[worst] >= -0.05,
            f"Δ copy-paste in − cross {_fmt(d_cp)}; merge vs the better single LoRA, worst axis {worst} "
            f"{100 * shortfalls[worst]:+.1f} %",
        )
    )
    d = {k: _delta(rows, "+merged DPO", "merged SFT", k) for k in ("consistency", "dynamic", "visual_quality")}
    out.append(
        (
            "RQ4 DPO raises consistency without hurting motion or quality (+merged DPO vs merged SFT)",
            _up(d["consistency"]) and _not_down(d["dynamic"]) and _not_down(d["visual_quality"]),
            f"Δ consistency {_fmt(d['consistency'])}, Δ dynamic degree {_fmt(d['dynamic'])}, "
            f"Δ visual quality {_fmt(d['visual_quality'])}",
        )
    )
    d = {k: _delta(rows, libragen, "+merged DPO", k) for k in BALANCE}
    others = [k for k in BALANCE if k != "ta"]
    out.append(
        (
            "RQ5 time-dependent guidance raises text alignment at no cost (dynamic CFG vs text CFG, same model)",
            _up(d["ta"]) and all(_not_down(d[k]) for k in others),
            ", ".join(f"Δ {BALANCE[k]} {_fmt(d[k])}" for k in BALANCE),
        )
    )
    return out


def write_radar(rows: Mapping[str, list[dict]], path: Path) -> Path:
    """Balance radar of the key rows (mean summary over seeds)."""
    means = {}
    for name in RADAR_ROWS:
        if name in rows:
            keys = {k for r in rows[name] for k in r["summary"]}
            means[name] = {k: statistics.mean(r["summary"].get(k, math.nan) for r in rows[name]) for k in keys}
    return radar_chart(means, path, title="LibraWorld reproduce: balance (mean over seeds)")


def replace_section(document: Path, section: str) -> None:
    """Put ``section`` between the markers of ``document`` (appended, with the markers, the first time)."""
    text = document.read_text() if document.is_file() else "# Measured results\n"
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    document.parent.mkdir(parents=True, exist_ok=True)
    document.write_text(text)
