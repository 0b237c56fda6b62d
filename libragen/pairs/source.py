"""Read the approved manifest (``--from``): one row per clip with its video path and Ref-tag caption.

Accepted inputs: the review export (``libragen review export``), the curated manifest (when no
review was done) or a LibraWorld manifest. Required columns: ``clip_id``, ``path`` (absolute, or
relative to the manifest's folder) and ``caption`` (Ref-tag style). Which rows are approved:

* with a ``human_decision`` column (review export), rows whose decision is ``accept``;
* else with a ``keep`` column (curated manifest), rows curation kept;
* else every row. Rows without a path or caption are never used.

Optional columns: ``masks`` + ``subjects`` (LibraWorld's visible masks, used by
:class:`~libragen.pairs.subjects.ManifestMasks` in place of a detector) and ``start_frame`` /
``end_frame`` (a curated shot's frames in its source clip, used to slice masks looked up elsewhere).

Ground truth that names identities (``identity_ids``, ``ref_descriptions``, the identity fields and
boxes of ``subjects``) is dropped here, so nothing downstream can use it to choose pairs; only the
quality benchmark reads it, to measure precision.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from libragen.pairs.captions import tag_phrases
from libragen.pairs.errors import PairsInputError

REQUIRED_COLUMNS = ("clip_id", "path", "caption")
_KEPT_COLUMNS = (
    "clip_id",
    "path",
    "caption",
    "width",
    "height",
    "num_frames",
    "fps",
    "masks",
    "subjects",
    "start_frame",
    "end_frame",
    "keep",
    "human_decision",
)
_KEPT_SUBJECT_FIELDS = ("ref_index",)
MANIFEST_NAME = "manifest.parquet"


@dataclass(frozen=True)
class ClipEntry:
    """One approved clip, without identity ground truth."""

    clip_id: str
    video_path: Path
    caption: str
    phrases: dict[int, str]  # Ref index -> phrase, from the caption's tags
    row: dict[str, Any] = field(repr=False)  # kept columns (masks, sizes, frame range) for locators


@dataclass(frozen=True)
class Source:
    """The approved clips of an input manifest and how many rows were not used."""

    path: Path
    clips: list[ClipEntry]
    rows: int
    not_approved: int  # rejected by review / curation, or without a path or caption


def resolve_manifest(path: str | os.PathLike[str]) -> Path:
    """The Parquet file itself, or ``manifest.parquet`` inside a folder."""
    p = Path(path)
    if p.is_dir():
        if (p / MANIFEST_NAME).is_file():
            return p / MANIFEST_NAME
        raise PairsInputError(f"{p}: a folder without {MANIFEST_NAME}; give the approved Parquet file")
    if not p.exists():
        raise PairsInputError(f"{p}: input manifest not found")
    return p


def read_columns(path: Path, wanted: tuple[str, ...], required: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of ``path`` with the ``wanted`` columns it has; one-line errors for unreadable files."""
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as err:
        raise PairsInputError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0][:160]})") from err
    missing = [c for c in required if c not in names]
    if missing:
        raise PairsInputError(f"{path}: missing column(s) {', '.join(missing)} (need {', '.join(required)})")
    return pq.read_table(path, columns=[c for c in wanted if c in names]).to_pylist()


def strip_identity(row: dict[str, Any]) -> dict[str, Any]:
    """The row with each subject reduced to its ``ref_index`` (no identity, no full-extent boxes)."""
    if row.get("subjects") is not None:
        row["subjects"] = [{k: s.get(k) for k in _KEPT_SUBJECT_FIELDS} for s in row["subjects"]]
    return row


def _approved(row: dict[str, Any]) -> bool:
    if "human_decision" in row:
        return row["human_decision"] == "accept"
    if "keep" in row:
        return bool(row["keep"])
    return True


def load_source(source: str | os.PathLike[str]) -> Source:
    """Load and check the approved manifest; raises :class:`PairsInputError` with a one-line reason."""
    path = resolve_manifest(source)
    rows = read_columns(path, _KEPT_COLUMNS, REQUIRED_COLUMNS)
    clips: list[ClipEntry] = []
    seen: set[str] = set()
    skipped = 0
    for row in rows:
        clip_id, video, caption = row["clip_id"], row["path"], row["caption"]
        if not clip_id:
            raise PairsInputError(f"{path}: a row has an empty clip_id")
        if clip_id in seen:
            raise PairsInputError(f"{path}: clip_id {clip_id!r} appears more than once")
        seen.add(clip_id)
        if not _approved(row) or not video or not caption:
            skipped += 1
            continue
        try:
            phrases = tag_phrases(caption)
        except ValueError as err:
            raise PairsInputError(f"{path}: clip {clip_id}: {err}") from err
        video_path = Path(video) if Path(video).is_absolute() else path.parent / video
        clips.append(ClipEntry(clip_id, video_path, caption, phrases, strip_identity(row)))
    if not rows:
        raise PairsInputError(f"{path}: the manifest has no rows")
    return Source(path=path, clips=clips, rows=len(rows), not_approved=skipped)


def load_clips(source: str | os.PathLike[str]) -> list[ClipEntry]:
    """The approved clips of ``source`` (see :func:`load_source`)."""
    return load_source(source).clips
