"""``libragen curate report``: one self-contained HTML page about a curation run.

Counts per primary reject reason, a histogram per score with the threshold drawn in, and a contact sheet
(middle frames) of kept clips and of rejected clips per reason. Images are embedded as base64 PNGs, so
the page can be mailed or archived as one file. Every string from the data is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections import Counter, defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from libragen.core.files import write_bytes_atomic
from libragen.core.video import VideoReadError, read_video
from libragen.curate.config import CurateConfig
from libragen.curate.probes import CHECKS

SHEET_PER_GROUP = 8


def _png(figure_or_image) -> str:
    buffer = io.BytesIO()
    if isinstance(figure_or_image, Image.Image):
        figure_or_image.save(buffer, format="PNG")
    else:
        figure_or_image.savefig(buffer, format="png", dpi=90)
        plt.close(figure_or_image)
    return base64.b64encode(buffer.getvalue()).decode()


def _histograms(records: list[dict], config: CurateConfig) -> str:
    names = sorted({name for _, name, _, _ in CHECKS} & {k for r in records for k in dict(r["scores"])})
    columns = 4
    rows = max(1, -(-len(names) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.4 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        values = np.array([dict(r["scores"])[name] for r in records if name in dict(r["scores"])])
        values = values[np.isfinite(values)]
        logarithmic = "bits" in name and values.size > 1 and values.min() > 0
        bins = np.geomspace(values.min(), values.max() * 1.001, 40) if logarithmic else 40
        axis.hist(values, bins=bins, color="C0")
        if logarithmic:
            axis.set_xscale("log")
        for _reason, score, threshold, _below in CHECKS:
            if score == name and np.isfinite(threshold(config)):  # an unset optional threshold draws no line
                axis.axvline(threshold(config), color="C3", linestyle="--", linewidth=1)
        axis.set_title(name, fontsize=9)
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    figure.tight_layout()
    return _png(figure)


def _thumbnail(root: Path, record: dict) -> Image.Image | None:
    """The middle frame of the clip: its own file, or for a rejected shot without one, its frame range of
    the source."""
    if record["path"]:
        path, start, count = root / record["path"], 0.0, None
    elif record.get("source_path") and record.get("fps") and record["end_frame"] > record["start_frame"]:
        middle = (record["start_frame"] + record["end_frame"]) // 2
        path, start, count = root / record["source_path"], middle / record["fps"], 1
    else:
        return None
    try:
        frames = read_video(path, size=64, start=start, max_frames=count)
    except VideoReadError:
        return None
    if len(frames) == 0:
        return None
    return Image.fromarray(frames[len(frames) // 2]).resize((96, 96))


def _sheet(root: Path, records: list[dict]) -> str:
    tiles = [t for t in (_thumbnail(root, r) for r in records[:SHEET_PER_GROUP]) if t is not None]
    if not tiles:
        return ""
    sheet = Image.new("RGB", (100 * len(tiles), 100), "white")
    for k, tile in enumerate(tiles):
        sheet.paste(tile, (100 * k + 2, 2))
    return f'<img alt="contact sheet" src="data:image/png;base64,{_png(sheet)}">'


def write_report(
    curated: str | os.PathLike[str], out: str | os.PathLike[str], config: CurateConfig | None = None
) -> Path:
    """Render the HTML report of ``curated.parquet`` to ``out``."""
    manifest = Path(curated)
    root = manifest.parent
    records = pq.read_table(manifest).to_pylist()
    config = config or CurateConfig()
    reasons = Counter(r["reasons"][0] for r in records if r["reasons"])
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[record["reasons"][0] if record["reasons"] else "kept"].append(record)
    rows = "".join(
        f"<tr><td>{html.escape(reason)}</td><td>{count}</td></tr>" for reason, count in reasons.most_common()
    )
    sheets = "".join(
        f"<h3>{html.escape(name)} ({len(members)})</h3>{_sheet(root, members)}"
        for name, members in sorted(groups.items(), key=lambda kv: (kv[0] != "kept", kv[0]))
    )
    kept = sum(r["keep"] for r in records)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Curation report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 10px}}</style></head><body>
<h1>Curation report</h1><p>{html.escape(str(manifest))}: {len(records)} clips, {kept} kept,
{len(records) - kept} rejected.</p>
<h2>Primary reject reasons</h2><table><tr><th>reason</th><th>clips</th></tr>{rows}</table>
<h2>Scores (dashed: thresholds)</h2><img alt="histograms" src="data:image/png;base64,{_histograms(records, config)}">
<h2>Contact sheets (middle frames)</h2>{sheets}
</body></html>"""
    return write_bytes_atomic(out, page.encode())
