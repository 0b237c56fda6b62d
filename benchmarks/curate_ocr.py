"""The OCR text backend of curation on a LibraWorld pool: steady OCR text on text-overlay vs clean clips.

    libragen world make --n 240 --defects 0.3 --seed 5 --config configs/world_720p.yaml --out /tmp/hd240
    python benchmarks/curate_ocr.py --pool /tmp/hd240 --clean 30

For every ``text_overlay`` clip and the first ``--clean`` clean clips: ``steady_text_fraction`` of the
detail frames the pipeline decodes (needs ``pip install 'libragen[ocr]'``), and how many cross
``max_ocr_text_fraction``. Prints the numbers and the seconds per clip.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from libragen.core.video import decode_for_analysis
from libragen.curate.config import CurateConfig
from libragen.curate.ocr import steady_text_fraction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--clean", type=int, default=30)
    args = parser.parse_args()
    config = CurateConfig(text_backend="rapidocr")
    rows = pq.read_table(args.pool / "manifest.parquet", columns=["path", "defect"]).to_pylist()
    for kind, limit in (("text_overlay", None), (None, args.clean)):
        chosen = [r for r in rows if r["defect"] == kind][:limit]
        start, values = time.perf_counter(), []
        for row in chosen:
            decoded = decode_for_analysis(
                args.pool / row["path"],
                fps=config.analysis_fps,
                max_short_side=config.analysis_size,
                detail_frames=config.detail_frames,
                detail_short_side=config.detail_size,
            )
            values.append(steady_text_fraction(decoded.detail_luma, config))
        seconds = (time.perf_counter() - start) / max(len(chosen), 1)
        flagged = sum(v > config.max_ocr_text_fraction for v in values)
        print(
            f"{kind or 'clean'}: {len(values)} clips, steady OCR text fraction min {np.min(values):.4f} "
            f"median {np.median(values):.4f} max {np.max(values):.4f}; above {config.max_ocr_text_fraction}: "
            f"{flagged}; {seconds:.2f} s per clip"
        )


if __name__ == "__main__":
    main()
