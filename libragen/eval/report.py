"""Evaluation outputs: JSON with every number, a markdown table, the balance radar chart and metric bars.

The radar's four axes follow the paper's balance figure, each in [0, 1]:
motion = dynamic degree (VBench rule), prompt following = text alignment, visual quality = the
weight-free quality score, subject consistency = the identity probe's score (trait agreement when
a reader is loaded, else cosine similarity clipped at 0).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from libragen.core.files import atomic_path, write_bytes_atomic

AXES = {
    "motion": "dynamic_degree",
    "prompt following": "ta",
    "visual quality": "visual_quality",
    "subject consistency": "consistency",
}
TABLE_METRICS = (
    "dynamic_degree",
    "dynamic_fraction",
    "amplitude",
    "smoothness",
    "flicker",
    "visual_quality",
    "sharpness",
    "ta",
    "consistency",
    "copy_paste",
    "realism_fd",
    "clip_ta",
    "clip_i",
    "dino_i",
    "aesthetic",
)


def balance_axes(summary: Mapping[str, float]) -> dict[str, float]:
    """The four radar values of one method's summary (NaN where a metric was not computed)."""
    values = {}
    for axis, metric in AXES.items():
        value = summary.get(metric, float("nan"))
        values[axis] = float(min(1.0, max(0.0, value))) if value == value else float("nan")
    return values


def radar_chart(methods: Mapping[str, Mapping[str, float]], path: str | Path, title: str = "balance") -> Path:
    """Radar over the balance axes, one polygon per method (``methods``: name -> summary)."""
    labels = list(AXES)
    angles = [2 * math.pi * k / len(labels) for k in range(len(labels))]
    figure, axis = plt.subplots(figsize=(5.6, 6.4), subplot_kw={"projection": "polar"})
    for name, summary in methods.items():
        values = balance_axes(summary)
        points = [0.0 if math.isnan(values[label]) else values[label] for label in labels]
        axis.plot([*angles, angles[0]], [*points, points[0]], linewidth=2, label=name)
        axis.fill([*angles, angles[0]], [*points, points[0]], alpha=0.12)
    axis.set_xticks(angles, labels)
    axis.set_ylim(0, 1)
    axis.set_title(title, pad=18)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def metric_bars(methods: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """One small bar chart per metric, methods side by side."""
    metrics = [m for m in TABLE_METRICS if any(_finite(s.get(m)) for s in methods.values())]
    columns = 4
    rows = max(1, math.ceil(len(metrics) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    names = list(methods)
    for axis, metric in zip(axes.flat, metrics, strict=False):
        values = [methods[n].get(metric, float("nan")) for n in names]
        axis.bar(range(len(names)), values, color=[f"C{k}" for k in range(len(names))])
        axis.set_title(metric, fontsize=9)
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    for axis in list(axes.flat)[len(metrics) :]:
        axis.axis("off")
    figure.tight_layout()
    return _save(figure, path)


def _finite(value: object) -> bool:
    return isinstance(value, float | int) and math.isfinite(float(value))


def _save(figure: plt.Figure, path: str | Path) -> Path:
    target = Path(path)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return target


def markdown_table(methods: Mapping[str, Mapping[str, float]]) -> str:
    """Methods as rows, metrics (those computed for at least one method) as columns."""
    metrics = [m for m in TABLE_METRICS if any(_finite(s.get(m)) for s in methods.values())]
    lines = ["| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, summary in methods.items():
        cells = [f"{summary[m]:.3f}" if _finite(summary.get(m)) else "–" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path, label: str = "videos") -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``radar.png`` and ``metrics.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = {label: report["summary"]}
    paths = {
        "json": write_bytes_atomic(out / "report.json", json.dumps(report, indent=2, default=float).encode()),
        "radar": radar_chart(methods, out / "radar.png", title=f"balance — {label}"),
        "bars": metric_bars(methods, out / "metrics.png"),
    }
    notices = "".join(f"- {n}\n" for n in report.get("notices", []))
    text = (
        f"# Evaluation report — {label}\n\n{report['count']} videos; command: `{report.get('command', '')}`\n\n"
        f"{markdown_table(methods)}\n![balance](radar.png)\n\n![metrics](metrics.png)\n\n"
        + (f"## Notices\n\n{notices}" if notices else "")
    )
    paths["markdown"] = write_bytes_atomic(out / "report.md", text.encode())
    return paths
