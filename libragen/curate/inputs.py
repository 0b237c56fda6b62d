"""Curation inputs: every file under a folder, or the rows of a Parquet manifest, as stable work items.

A work item's ``key`` depends only on where the input is (its resolved path, plus the row for manifests),
so a rerun finds the same keys and can skip what is done. Any file counts — a text file or a broken mp4
is an input that will be rejected with a reason, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

#: Leading bytes of containers a video could be in (offset, signature).
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # mp4 / mov / 3gp
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"wide"),
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm
    (0, b"RIFF"),  # avi
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # mpeg-ps
    (0, b"G"),  # mpeg-ts sync byte
    (0, b"OggS"),
)


@dataclass(frozen=True)
class InputItem:
    key: str
    path: str
    source_id: str
    caption: str | None = None
    subjects_json: str | None = None  # LibraWorld subject rows (boxes, visible fractions) when known
    width: int | None = None
    height: int | None = None


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def looks_like_container(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts like a known video container (tells 'corrupt video' from 'not a video')."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    return any(head[offset : offset + len(sig)] == sig for offset, sig in _SIGNATURES)


def list_inputs(source: str | os.PathLike[str]) -> list[InputItem]:
    """Work items of a folder (every regular file, sorted) or of a Parquet manifest with a ``path`` column."""
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"{root}: input not found")
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        return [InputItem(_key(str(p.resolve())), str(p.resolve()), str(p.relative_to(root))) for p in files]
    if root.suffix != ".parquet":
        raise ValueError(f"{root}: --input must be a folder or a .parquet manifest")
    table = pq.read_table(root)
    if "path" not in table.column_names:
        raise ValueError(f"{root}: manifest has no 'path' column")
    items = []
    for index, row in enumerate(table.to_pylist()):
        path = (root.parent / row["path"]).resolve()
        subjects = row.get("subjects")
        items.append(
            InputItem(
                key=_key(f"{path}#{index}"),
                path=str(path),
                source_id=str(row.get("clip_id") or row["path"]),
                caption=row.get("caption"),
                subjects_json=json.dumps(subjects) if subjects is not None else None,
                width=row.get("width"),
                height=row.get("height"),
            )
        )
    return items
