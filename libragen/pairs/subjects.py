"""Where each captioned subject is in a clip: the subject detection/segmentation interface.

A :class:`SubjectLocator` turns a clip's frames and its Ref-tag phrases into one
:class:`SubjectTrack` per tagged subject: per-frame visible masks and boxes.

* :class:`ManifestMasks` — LibraWorld: the manifest's ground-truth visible masks (the stand-in for
  a perfect segmenter). Boxes are the masks' bounding boxes, i.e. what a segmenter would give,
  not the manifest's full-extent boxes.
* :class:`WorldMasks` — the same masks looked up in the LibraWorld manifest a curated or reviewed
  manifest (which carries no masks) came from.
* :class:`GroundedSamLocator` — real footage: GroundingDINO boxes from the phrase + SAM masks, from
  local weights. Only the interface and its checks exist: without weights it says which path it
  needs; with weights it says that the adapter is not written yet.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from libragen.pairs.errors import MissingWeightsError, PairsInputError
from libragen.pairs.source import ClipEntry, read_columns, resolve_manifest, strip_identity
from libragen.world.manifest import decode_masks


@dataclass
class SubjectTrack:
    """One tagged subject through a clip."""

    ref_index: int  # the caption's Ref k
    phrase: str
    masks: np.ndarray  # (T, H, W) bool visible pixels
    boxes: np.ndarray  # (T, 4) float32 x0, y0, x1, y1 of the visible pixels; NaN where not visible

    @property
    def areas(self) -> np.ndarray:
        """(T,) visible pixels per frame."""
        return self.masks.reshape(len(self.masks), -1).sum(axis=1)


class SubjectLocateError(ValueError):
    """Subjects could not be located in one clip (the clip is skipped with this reason)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


@runtime_checkable
class SubjectLocator(Protocol):
    """Finds every tagged subject of a clip in its frames."""

    name: str

    def locate(self, clip: ClipEntry, frames: np.ndarray) -> list[SubjectTrack]: ...


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """(T, 4) tight boxes (exclusive ends) of (T, H, W) masks; NaN rows where a mask is empty."""
    boxes = np.full((len(masks), 4), np.nan, np.float32)
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    for t in range(len(masks)):
        ys, xs = np.flatnonzero(rows[t]), np.flatnonzero(cols[t])
        if len(ys):
            boxes[t] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


def _tracks(clip: ClipEntry, masks: np.ndarray, subjects: list[dict], frames: np.ndarray) -> list[SubjectTrack]:
    """Tracks of the tagged subjects from (S, T, H, W) masks that must match the decoded frames."""
    if masks.shape[2:] != frames.shape[1:3]:
        raise SubjectLocateError(
            "masks_mismatch",
            f"{clip.clip_id}: masks are {masks.shape[3]}x{masks.shape[2]} but the video decodes to "
            f"{frames.shape[2]}x{frames.shape[1]}",
        )
    if masks.shape[1] < len(frames):
        raise SubjectLocateError(
            "masks_mismatch", f"{clip.clip_id}: {masks.shape[1]} mask frames for {len(frames)} video frames"
        )
    tracks = []
    for k, subject in enumerate(subjects):
        ref_index = int(subject["ref_index"])
        phrase = clip.phrases.get(ref_index)
        if phrase is None:
            continue  # a subject the caption does not tag cannot get a reference
        track_masks = masks[k, : len(frames)]
        tracks.append(SubjectTrack(ref_index, phrase, track_masks, mask_boxes(track_masks)))
    return tracks


class ManifestMasks:
    """LibraWorld locator: visible masks stored in the input manifest row, matched by ``ref_index``."""

    name = "manifest-masks"

    def locate(self, clip: ClipEntry, frames: np.ndarray) -> list[SubjectTrack]:
        row = clip.row
        if row.get("masks") is None or not row.get("subjects"):
            raise SubjectLocateError("no_masks", f"{clip.clip_id}: the manifest row has no subject masks")
        return _tracks(clip, decode_masks(row), row["subjects"], frames)


class WorldMasks:
    """LibraWorld locator for curated / reviewed manifests, which do not carry masks.

    Looks the clip up in the LibraWorld manifest it came from (by ``clip_id``; a curated shot
    ``<id>#shotN`` by ``<id>``, sliced to its ``start_frame:end_frame``) and uses its visible masks.
    Only masks and Ref indices are read from that manifest.
    """

    name = "world-masks"

    def __init__(self, world_manifest: str | os.PathLike[str]) -> None:
        path = resolve_manifest(world_manifest)
        wanted = ("clip_id", "masks", "subjects", "width", "height", "num_frames")
        self.rows = {r["clip_id"]: strip_identity(r) for r in read_columns(path, wanted, wanted)}

    def locate(self, clip: ClipEntry, frames: np.ndarray) -> list[SubjectTrack]:
        base = clip.clip_id.split("#shot", 1)[0]
        row = self.rows.get(base)
        if row is None:
            raise SubjectLocateError("no_masks", f"{clip.clip_id}: not in the LibraWorld manifest given for masks")
        masks = decode_masks(row)
        start = int(clip.row.get("start_frame") or 0)
        end = clip.row.get("end_frame")
        masks = masks[:, start : int(end) if end is not None else None]
        return _tracks(clip, masks, row["subjects"], frames)


class GroundedSamLocator:
    """Real footage: GroundingDINO (phrase -> boxes) + SAM (box -> mask), from local weights.

    Construction checks the weight files and the two packages and fails with a one-line message
    saying what is missing. The adapter itself is not written yet (no weights in this project).
    """

    name = "grounded-sam"

    def __init__(self, detector_weights: str | os.PathLike[str], segmenter_weights: str | os.PathLike[str]) -> None:
        self.detector_weights = Path(detector_weights)
        self.segmenter_weights = Path(segmenter_weights)
        if not self.detector_weights.is_file():
            raise MissingWeightsError(
                "GroundingDINO subject detection", self.detector_weights, "pass --detector-weights PATH"
            )
        if not self.segmenter_weights.is_file():
            raise MissingWeightsError(
                "SAM subject segmentation", self.segmenter_weights, "pass --segmenter-weights PATH"
            )
        missing = [m for m in ("groundingdino", "segment_anything") if importlib.util.find_spec(m) is None]
        if missing:
            raise PairsInputError(f"grounded-sam locator needs the Python package(s) {', '.join(missing)}")
        raise NotImplementedError("grounded-sam locator: weights found, but the adapter is not written yet")

    def locate(self, clip: ClipEntry, frames: np.ndarray) -> list[SubjectTrack]:  # pragma: no cover
        raise NotImplementedError


def default_locator(clips: list[ClipEntry]) -> SubjectLocator:
    """:class:`ManifestMasks` when the manifest carries masks, else a clear error naming the ways out."""
    if clips and all(c.row.get("masks") is not None and c.row.get("subjects") for c in clips):
        return ManifestMasks()
    raise PairsInputError(
        "the input manifest has no subject masks: for LibraWorld give --masks WORLD_MANIFEST; real footage "
        "needs a detector (--locator grounded-sam --detector-weights PATH --segmenter-weights PATH)"
    )
