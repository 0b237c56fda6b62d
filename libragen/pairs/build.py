"""``pairs build``: approved clips -> in-pair and cross-pair training samples.

Three passes over the approved manifest:

1. **Views** (per clip, in worker processes when ``workers > 1``): decode the clip, locate every
   tagged subject (:mod:`libragen.pairs.subjects`), pick its usable views, its identity views,
   its in-pair reference (frame choice + augmentation, :mod:`libragen.pairs.views`) and its best
   view as a possible cross-pair reference for other clips. Unreadable clips and invisible
   subjects are skipped with a reason.
2. **Identity** (main process): embed the identity views, average them per subject, and find each
   subject's verified cross-clip candidates (:mod:`libragen.pairs.retrieval`).
3. **Samples** (per clip): score copy-paste risk against the target's frames
   (:mod:`libragen.pairs.risk`); a cross candidate whose view reappears in the target (risk above
   ``max_cross_risk``: a near-duplicate clip) is passed over for the next one. Keep at most
   ``max_refs`` subjects per sample (largest visible area first), retag the caption, write the
   reference PNGs, and finally ``samples.parquet``, ``summary.json`` and ``pairs.yaml``.

Decoded frames stay in memory between passes 1 and 3 up to ``frame_cache_mb``; beyond that a clip
is decoded again in pass 3.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from libragen.core.config import dump_config
from libragen.core.embed import ImageEmbedder
from libragen.core.files import write_bytes_atomic
from libragen.core.refs import pad_to_square, prepare_reference
from libragen.core.video import VideoReadError, read_video
from libragen.pairs.captions import retag
from libragen.pairs.config import PairsConfig
from libragen.pairs.embedders import get_embedder
from libragen.pairs.errors import PairsInputError
from libragen.pairs.retrieval import Candidate, cross_candidates, embed_views, identity_vectors
from libragen.pairs.risk import prepared_risk, source_view_risk
from libragen.pairs.samples import CONFIG_NAME, REFS_DIR, SAMPLES_NAME, SUMMARY_NAME, write_samples
from libragen.pairs.source import ClipEntry, load_source
from libragen.pairs.subjects import SubjectLocateError, SubjectLocator, default_locator
from libragen.pairs.views import (
    Augmentation,
    augmented_reference,
    background_crop,
    best_view,
    contact_pixels,
    draw_augmentation,
    inpair_frame,
    screen_contacts,
    spread,
    subject_box,
    usable_views,
)

T = TypeVar("T")
R = TypeVar("R")
ProgressFn = Callable[[str, int, int], None]


@dataclass
class RefView:
    """A candidate reference: its frame, visible box, prepared image and background crop."""

    frame_index: int
    box: tuple[float, float, float, float]
    image: np.ndarray  # prepared reference (ref_size, ref_size, 3)
    background: np.ndarray  # crop window with background, native scale
    augmentation: Augmentation | None = None


@dataclass
class SubjectViews:
    """Pass-1 result for one tagged subject of one clip."""

    ref_index: int
    phrase: str
    mean_area: float
    identity_views: np.ndarray  # (k, embed_size, embed_size, 3)
    inpair: RefView | None
    cross: RefView | None
    inpair_fallback: bool = False


@dataclass
class ClipViews:
    """Pass-1 result for one clip."""

    clip: ClipEntry
    num_frames: int = 0
    width: int = 0
    height: int = 0
    subjects: list[SubjectViews] = field(default_factory=list)
    invisible: list[int] = field(default_factory=list)  # ref indices never usable
    error: tuple[str, str] | None = None  # (reason, detail) when the whole clip is skipped
    frames: np.ndarray | None = None


@dataclass
class BuildSummary:
    """What a build wrote and skipped (also written as ``summary.json``)."""

    out_dir: Path
    data: dict[str, Any]

    @property
    def samples(self) -> dict[str, int]:
        return self.data["samples"]


def _clip_rng(config: PairsConfig, clip_id: str) -> np.random.Generator:
    return np.random.default_rng([config.seed, zlib.crc32(clip_id.encode())])


def _decode(clip: ClipEntry, config: PairsConfig) -> np.ndarray:
    return read_video(clip.video_path, max_frames=config.max_frames)


def collect_views(clip: ClipEntry, config: PairsConfig, locator: SubjectLocator, keep_frames: bool) -> ClipViews:
    """Pass 1 for one clip (pure: depends only on its arguments)."""
    result = ClipViews(clip=clip)
    try:
        frames = _decode(clip, config)
        tracks = locator.locate(clip, frames)
    except VideoReadError as err:
        result.error = ("unreadable_video", str(err))
        return result
    except SubjectLocateError as err:
        result.error = (err.reason, str(err))
        return result
    result.num_frames, result.height, result.width = (int(v) for v in frames.shape[:3])
    if not tracks:
        result.error = ("no_tagged_subjects", f"{clip.clip_id}: no tagged subject could be located")
        return result
    rng = _clip_rng(config, clip.clip_id)
    for track, contact in zip(tracks, contact_pixels(tracks), strict=True):
        views = usable_views(track, config)
        if len(views) == 0:
            result.invisible.append(track.ref_index)
            continue
        views, clear = screen_contacts(track, views, contact, config)
        preferred = clear if len(clear) else views  # touching another subject may mean occluded
        identity = np.stack(
            [
                prepare_reference(frames[t], mask=track.masks[t], size=config.embed_size, margin=config.margin)
                for t in spread(views, config.embed_views)
            ]
        )
        inpair = cross = None
        fallback = False
        if config.mode in ("in", "both"):
            frame, fallback = inpair_frame(track, views, config, rng, clear)
            box = subject_box(track, frame)
            image, augmentation = augmented_reference(
                frames[frame], track.masks[frame], draw_augmentation(config, rng), config.ref_size
            )
            inpair = RefView(frame, box, image, background_crop(frames[frame], box, config.margin), augmentation)
        if config.mode in ("cross", "both"):
            frame = best_view(track, preferred)
            box = subject_box(track, frame)
            image = prepare_reference(
                frames[frame], mask=track.masks[frame], size=config.ref_size, margin=config.margin
            )
            cross = RefView(frame, box, image, background_crop(frames[frame], box, config.margin))
        result.subjects.append(
            SubjectViews(
                ref_index=track.ref_index,
                phrase=track.phrase,
                mean_area=float(track.areas[views].mean()),
                identity_views=identity,
                inpair=inpair,
                cross=cross,
                inpair_fallback=fallback,
            )
        )
    if keep_frames:
        result.frames = frames
    return result


@dataclass
class _ScoreTask:
    clip: ClipEntry
    frames: np.ndarray | None
    inpair: list[RefView]
    cross: list[list[RefView]]  # per subject, candidates best first


@dataclass
class _ScoreResult:
    inpair: list[tuple[float, float]]  # (risk, prepared risk) per in-pair reference
    cross: list[tuple[int | None, float, float, int]]  # (chosen candidate, risk, prepared, rejected)
    error: str | None = None


def _safe_risk(fn: Callable[..., float], *args: Any) -> float:
    try:
        return float(fn(*args))
    except ValueError:  # blank reference (all white)
        return float("nan")


def _score(task: _ScoreTask, config: PairsConfig) -> _ScoreResult:
    """Pass 3 for one clip: copy-paste risks, and the first cross candidate that is no near-duplicate."""
    try:
        frames = task.frames if task.frames is not None else _decode(task.clip, config)
    except VideoReadError as err:
        return _ScoreResult([], [], error=str(err))

    def prepared(view: RefView) -> float:
        if not config.prepared_risk:
            return float("nan")
        return _safe_risk(prepared_risk, view.image, frames, view.box[3] - view.box[1])

    inpair = [(_safe_risk(source_view_risk, v.background, frames), prepared(v)) for v in task.inpair]
    cross: list[tuple[int | None, float, float, int]] = []
    for candidates in task.cross:
        chosen: tuple[int | None, float, float, int] = (None, float("nan"), float("nan"), 0)
        for k, view in enumerate(candidates):
            risk = _safe_risk(source_view_risk, view.background, frames)
            if np.isfinite(risk) and risk > config.max_cross_risk:
                chosen = (None, float("nan"), float("nan"), k + 1)
                continue
            chosen = (k, risk, prepared(view), k)
            break
        cross.append(chosen)
    return _ScoreResult(inpair, cross)


def _map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """Ordered map, in a process pool when ``workers > 1``."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, items, chunksize=4)


class _CollectCall:
    """Picklable ``collect_views`` with fixed arguments (for process pools)."""

    def __init__(self, config: PairsConfig, locator: SubjectLocator, keep_frames: bool) -> None:
        self.config, self.locator, self.keep_frames = config, locator, keep_frames

    def __call__(self, clip: ClipEntry) -> ClipViews:
        return collect_views(clip, self.config, self.locator, self.keep_frames)


class _ScoreCall:
    def __init__(self, config: PairsConfig) -> None:
        self.config = config

    def __call__(self, task: _ScoreTask) -> _ScoreResult:
        return _score(task, self.config)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise PairsInputError(f"{out}: output path exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / SUMMARY_NAME).is_file():
        raise PairsInputError(f"{out}: folder is not empty and holds no previous pairs build; choose a new --out")
    if (out / REFS_DIR).is_dir():
        shutil.rmtree(out / REFS_DIR)  # a previous build's references
    out.mkdir(parents=True, exist_ok=True)


def _write_png(out: Path, relative: str, image: np.ndarray) -> str:
    path = out / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return relative


def build_pairs(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: PairsConfig | None = None,
    *,
    embedder: ImageEmbedder | str | None = None,
    locator: SubjectLocator | None = None,
    frame_cache_mb: float = 1024.0,
    on_progress: ProgressFn | None = None,
) -> BuildSummary:
    """Build the samples of ``source`` (approved manifest) into ``out``; see the module docstring."""
    config = config or PairsConfig()
    loaded = load_source(source)
    clips = loaded.clips
    if not clips:
        raise PairsInputError(
            f"{loaded.path}: no approved clips ({loaded.rows} rows, all rejected or without path/caption)"
        )
    locator = locator or default_locator(clips)
    out_dir = Path(out)
    _prepare_out(out_dir)
    identity_embedder = get_embedder(embedder if embedder is not None else config.embedder)

    def progress(stage: str, done: int, total: int) -> None:
        if on_progress:
            on_progress(stage, done, total)

    # Pass 1: views.
    collected: list[ClipViews] = []
    cache_left = frame_cache_mb * 2**20
    keep = frame_cache_mb > 0
    for number, views in enumerate(_map(_CollectCall(config, locator, keep), clips, config.workers), 1):
        if views.frames is not None:
            if views.frames.nbytes <= cache_left:
                cache_left -= views.frames.nbytes
            else:
                views.frames = None
        collected.append(views)
        progress("views", number, len(clips))

    # Pass 2: identity vectors and verified cross candidates.
    appearances = [(c, s) for c, views in enumerate(collected) for s in views.subjects]
    stacks = [s.identity_views for _, s in appearances]
    inpair_images = [s.inpair.image for _, s in appearances if s.inpair is not None]
    if inpair_images:  # the in-pair reference as the embedder sees it, for its similarity
        stacks.append(np.stack([pad_to_square(img, config.embed_size) for img in inpair_images]))
    progress("identity", 0, 1)
    embedded = embed_views(identity_embedder, stacks)
    vectors = identity_vectors(embedded[: len(appearances)])
    inpair_vectors = iter(embedded[len(appearances)] if inpair_images else [])
    groups = np.array([c for c, _ in appearances])
    candidates: list[list[Candidate]] = [[] for _ in appearances]
    if config.mode in ("cross", "both") and len(appearances):
        candidates = cross_candidates(vectors, groups, config.threshold, config.candidates)
    inpair_similarity: dict[int, float] = {}
    for i, (_, subject) in enumerate(appearances):
        if subject.inpair is not None:
            vector = next(inpair_vectors)
            norm = float(np.linalg.norm(vector))
            inpair_similarity[i] = float(vector @ vectors[i] / norm) if norm > 0 else float("nan")
    progress("identity", 1, 1)

    # Pass 3: risks, sample rows, files.
    index_of = {(c, s.ref_index): i for i, (c, s) in enumerate(appearances)}
    tasks = []
    for c, views in enumerate(collected):
        subjects = views.subjects if views.error is None else []
        tasks.append(
            _ScoreTask(
                clip=views.clip,
                frames=views.frames,
                inpair=[s.inpair for s in subjects if s.inpair is not None],
                cross=[
                    [appearances[cand.index][1].cross for cand in candidates[index_of[(c, s.ref_index)]]]
                    for s in subjects
                ]
                if config.mode in ("cross", "both")
                else [],
            )
        )
    counts: dict[str, Counter[str]] = {"clips": Counter(), "in": Counter(), "cross": Counter()}
    refs_per_sample: dict[str, Counter[int]] = {"in": Counter(), "cross": Counter()}
    rows: list[dict[str, Any]] = []
    fallbacks = 0
    for c, result in enumerate(_map(_ScoreCall(config), tasks, config.workers)):
        views = collected[c]
        progress("samples", c + 1, len(collected))
        for kind in ("in", "cross"):
            if config.mode in (kind, "both") and views.invisible:
                counts[kind]["not_visible"] += len(views.invisible)
        if views.error is not None or result.error is not None:
            counts["clips"][views.error[0] if views.error else "unreadable_video"] += 1
            continue
        fallbacks += sum(s.inpair_fallback for s in views.subjects if s.inpair is not None)
        per_kind: dict[str, list[dict[str, Any]]] = {"in": [], "cross": []}
        inpair_risks = iter(result.inpair)
        for position, subject in enumerate(views.subjects):
            i = index_of[(c, subject.ref_index)]
            if subject.inpair is not None:
                risk, prep = next(inpair_risks)
                per_kind["in"].append(
                    _ref_entry(
                        subject,
                        subject.inpair,
                        views.clip.clip_id,
                        subject.ref_index,
                        inpair_similarity.get(i, float("nan")),
                        risk,
                        prep,
                    )
                )
            if config.mode in ("cross", "both"):
                chosen, risk, prep, rejected = result.cross[position]
                if chosen is None:
                    counts["cross"]["near_duplicate_only" if rejected else "no_match"] += 1
                    continue
                cand = candidates[i][chosen]
                source_clip, source_subject = appearances[cand.index]
                assert source_subject.cross is not None
                per_kind["cross"].append(
                    _ref_entry(
                        subject,
                        source_subject.cross,
                        collected[source_clip].clip.clip_id,
                        source_subject.ref_index,
                        cand.similarity,
                        risk,
                        prep,
                    )
                )
        for kind, entries in per_kind.items():
            if config.mode not in (kind, "both"):
                continue
            if not entries:
                counts["clips"][f"no_{kind}_sample"] += 1
                continue
            row = _sample_row(views, kind, entries, config, out_dir, counts[kind])
            refs_per_sample[kind][row["num_refs"]] += 1
            rows.append(row)

    write_samples(rows, out_dir / SAMPLES_NAME)
    data = {
        "source": str(loaded.path),
        "rows": loaded.rows,
        "rows_not_approved": loaded.not_approved,
        "clips": len(clips),
        "clips_with_samples": len({row["clip_id"] for row in rows}),
        "clips_skipped": {k: v for k, v in sorted(counts["clips"].items()) if not k.endswith("_sample")},
        "clips_without_sample": {k: v for k, v in sorted(counts["clips"].items()) if k.endswith("_sample")},
        "samples": {
            "in": sum(refs_per_sample["in"].values()),
            "cross": sum(refs_per_sample["cross"].values()),
            "total": len(rows),
        },
        "refs_per_sample": {k: {str(n): v[n] for n in sorted(v)} for k, v in refs_per_sample.items()},
        "subjects": len(appearances) + sum(len(v.invisible) for v in collected),
        "skipped_subjects": {k: dict(sorted(counts[k].items())) for k in ("in", "cross")},
        "inpair_frame_fallbacks": fallbacks,
        "embedder": identity_embedder.name,
        "locator": locator.name,
        "threshold": config.threshold,
    }
    write_bytes_atomic(out_dir / SUMMARY_NAME, (json.dumps(data, indent=2) + "\n").encode())
    write_bytes_atomic(out_dir / CONFIG_NAME, dump_config(config).encode())
    return BuildSummary(out_dir=out_dir, data=data)


def _finite(value: float) -> float | None:
    """Store a score, or null when it was not computed (NaN)."""
    return float(value) if np.isfinite(value) else None


def _ref_entry(
    subject: SubjectViews,
    view: RefView,
    source_clip_id: str,
    source_ref_index: int,
    similarity: float,
    risk: float,
    prepared: float,
) -> dict[str, Any]:
    return {
        "target_ref_index": subject.ref_index,
        "phrase": subject.phrase,
        "mean_area": subject.mean_area,
        "source_clip_id": source_clip_id,
        "source_ref_index": source_ref_index,
        "frame_index": view.frame_index,
        "box": [float(v) for v in view.box],
        "image_array": view.image,
        "similarity": _finite(similarity),
        "copy_paste_risk": _finite(risk),
        "prepared_copy_paste": _finite(prepared),
        "augmentation": json.dumps(view.augmentation.to_dict()) if view.augmentation else "{}",
    }


def _sample_row(
    views: ClipViews,
    kind: str,
    entries: list[dict[str, Any]],
    config: PairsConfig,
    out: Path,
    skipped: Counter[str],
) -> dict[str, Any]:
    """One sample: keep the ``max_refs`` largest subjects, retag the caption, write the PNGs."""
    if len(entries) > config.max_refs:
        kept = sorted(entries, key=lambda e: -e["mean_area"])[: config.max_refs]
        skipped["over_max_refs"] += len(entries) - len(kept)
        entries = [e for e in entries if any(e is k for k in kept)]
    caption, order = retag(views.clip.caption, [e["target_ref_index"] for e in entries])
    by_index = {e["target_ref_index"]: e for e in entries}
    clip_id = views.clip.clip_id
    folder = f"{REFS_DIR}/{_SAFE.sub('_', clip_id)}"
    refs = []
    for j, target_index in enumerate(order, 1):
        entry = dict(by_index[target_index])
        image = entry.pop("image_array")
        entry.pop("mean_area")
        entry["ref_index"] = j
        entry["image"] = _write_png(out, f"{folder}/{kind}-{j}.png", image)
        refs.append(entry)
    risks = [r["copy_paste_risk"] for r in refs if r["copy_paste_risk"] is not None]
    return {
        "sample_id": f"{clip_id}-{kind}",
        "clip_id": clip_id,
        "video_path": str(views.clip.video_path.resolve()),
        "pair_type": kind,
        "caption": caption,
        "source_caption": views.clip.caption,
        "num_frames": views.num_frames,
        "width": views.width,
        "height": views.height,
        "num_refs": len(refs),
        "copy_paste_risk": max(risks) if risks else None,
        "refs": refs,
    }
