"""The samples manifest written by ``pairs build`` (``OUT/samples.parquet``) and its reader.

One row per training sample (a target clip plus 1-4 references):

* ``sample_id`` (``<clip_id>-in`` / ``<clip_id>-cross``), ``clip_id``, ``video_path`` (absolute),
  ``pair_type`` (``in`` | ``cross``), ``caption`` (Ref tags renumbered so ``Ref j`` is reference
  j), ``source_caption``, target ``num_frames``/``width``/``height``, ``num_refs``,
  ``copy_paste_risk`` (max over the references);
* ``refs``: per reference ``ref_index`` (j), ``phrase``, ``target_ref_index`` (the subject's tag in
  the source caption), ``source_clip_id``, ``source_ref_index``, ``frame_index`` (in the source
  clip), ``box`` (the subject's visible box there, x0 y0 x1 y1 px), ``image`` (PNG path relative to
  OUT), ``similarity`` (cosine of the reference's identity vector to the target subject's),
  ``copy_paste_risk``, ``prepared_copy_paste`` (null unless computed), ``augmentation`` (JSON).
  A score that could not be computed (e.g. a blank crop) is null.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from libragen.core.files import atomic_path

SAMPLES_NAME = "samples.parquet"
SUMMARY_NAME = "summary.json"
CONFIG_NAME = "pairs.yaml"
REFS_DIR = "refs"

REF_TYPE = pa.struct(
    [
        ("ref_index", pa.int8()),
        ("phrase", pa.string()),
        ("target_ref_index", pa.int8()),
        ("source_clip_id", pa.string()),
        ("source_ref_index", pa.int8()),
        ("frame_index", pa.int32()),
        ("box", pa.list_(pa.float32(), 4)),
        ("image", pa.string()),
        ("similarity", pa.float32()),
        ("copy_paste_risk", pa.float32()),
        ("prepared_copy_paste", pa.float32()),
        ("augmentation", pa.string()),
    ]
)

SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("clip_id", pa.string()),
        ("video_path", pa.string()),
        ("pair_type", pa.string()),
        ("caption", pa.string()),
        ("source_caption", pa.string()),
        ("num_frames", pa.int32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("num_refs", pa.int8()),
        ("copy_paste_risk", pa.float32()),
        ("refs", pa.list_(REF_TYPE)),
    ]
)


def write_samples(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write sample rows (dicts following :data:`SCHEMA`) atomically."""
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def read_samples(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All sample rows (``path`` may be the build folder or the Parquet file)."""
    p = Path(path)
    if p.is_dir():
        p = p / SAMPLES_NAME
    return pq.read_table(p).to_pylist()
