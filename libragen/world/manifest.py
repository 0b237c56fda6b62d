"""The LibraWorld Parquet manifest: one row per clip with its ground truth.

Columns: clip id, relative mp4 path, split, stored size/frames/fps, scene, camera pan, Ref-tag
caption and reference descriptions, identity ids, a ``subjects`` list (per subject: identity
attributes, motion labels, per-frame boxes, visible fractions and in-plane angles in degrees — the
planned ones, exact on clean clips), inline bit-packed visible masks (:func:`decode_masks`), the
injected defect and its parameters, and the file's SHA-256.

The schema is fixed and written without timestamps, so the same seed gives a byte-identical file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from libragen.core.files import atomic_path

SUBJECT_TYPE = pa.struct(
    [
        ("ref_index", pa.int8()),
        ("identity_id", pa.int64()),
        ("shape", pa.string()),
        ("colour", pa.string()),
        ("accent", pa.string()),
        ("direction", pa.string()),
        ("speed", pa.string()),
        ("speed_px", pa.float32()),
        ("style", pa.string()),
        ("rotation_deg_per_frame", pa.float32()),
        ("scale_change", pa.string()),
        ("boxes", pa.list_(pa.list_(pa.float32(), 4))),
        ("visible_fraction", pa.list_(pa.float32())),
        ("angles_deg", pa.list_(pa.float32())),
    ]
)

SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("path", pa.string()),
        ("split", pa.string()),
        ("index", pa.int32()),
        ("seed", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("num_frames", pa.int32()),
        ("fps", pa.float32()),
        ("scene", pa.string()),
        ("camera_pan", pa.string()),
        ("pan_speed_px", pa.float32()),
        ("caption", pa.string()),
        ("ref_descriptions", pa.list_(pa.string())),
        ("identity_ids", pa.list_(pa.int64())),
        ("subjects", pa.list_(SUBJECT_TYPE)),
        ("masks", pa.binary()),
        ("defect", pa.string()),
        ("defect_params", pa.string()),
        ("file_bytes", pa.int64()),
        ("sha256", pa.string()),
    ]
)

MANIFEST_NAME = "manifest.parquet"


def encode_masks(masks: np.ndarray) -> bytes:
    """Bit-pack a (S, T, H, W) bool array (shape is recovered from the row's other columns)."""
    return np.packbits(masks.astype(bool), axis=None).tobytes()


def decode_masks(row: dict[str, Any]) -> np.ndarray:
    """The (S, T, H, W) bool visible masks of a manifest row."""
    shape = (len(row["subjects"]), int(row["num_frames"]), int(row["height"]), int(row["width"]))
    count = int(np.prod(shape))
    bits = np.unpackbits(np.frombuffer(row["masks"], np.uint8), count=count)
    return bits.reshape(shape).astype(bool)


def defect_params_of(row: dict[str, Any]) -> dict[str, Any]:
    """The row's defect parameters as a dict."""
    return json.loads(row["defect_params"] or "{}")


def write_manifest(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write rows (dicts following :data:`SCHEMA`) to a Parquet file atomically."""
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=False)
    return Path(path)


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All rows of a manifest as dicts (``path`` may be the file or the folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_NAME
    return pq.read_table(p).to_pylist()
