"""Make a LibraWorld set: plan specs, render + encode each clip (in parallel), write the manifest.

Output folder layout::

    OUT/manifest.parquet     one row per clip (see libragen.world.manifest)
    OUT/clips/<clip_id>.mp4  H.264 clips (corrupt on purpose where the manifest says so)
    OUT/world.yaml           the config, seed, split and n that made the set

Every file is written atomically; the manifest is written last, so a folder with a manifest is
complete. Rendering a clip depends only on its spec, so any worker count gives the same bytes.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from libragen.core.config import dump_config
from libragen.core.files import sha256_file, write_bytes_atomic
from libragen.core.video import write_video
from libragen.world.caption import caption, ref_descriptions
from libragen.world.config import WorldConfig
from libragen.world.defects import damage_file, render_with_defect
from libragen.world.identity import identity
from libragen.world.manifest import MANIFEST_NAME, encode_masks, write_manifest
from libragen.world.plan import plan_world
from libragen.world.render import RenderedClip
from libragen.world.spec import ClipSpec


@dataclass(frozen=True)
class WorldSummary:
    """What :func:`make_world` wrote."""

    out_dir: Path
    manifest: Path
    clips: int
    defects: dict[str, int]


def _subject_rows(spec: ClipSpec, clip: RenderedClip) -> list[dict[str, Any]]:
    fractions = clip.visible_fraction
    frames = clip.boxes.shape[1]
    rows = []
    for k, subject in enumerate(spec.subjects):
        ident = identity(subject.identity_id)
        angles = np.rad2deg(subject.trajectory(max(spec.frames, frames))[3][:frames])
        rows.append(
            {
                "ref_index": k + 1,
                "identity_id": subject.identity_id,
                "shape": ident.shape,
                "colour": ident.colour,
                "accent": ident.accent,
                "direction": subject.direction,
                "speed": subject.speed,
                "speed_px": subject.speed_px,
                "style": subject.style,
                "rotation_deg_per_frame": subject.rotation_deg,
                "scale_change": subject.scale_change,
                "boxes": [[float(v) for v in box] for box in clip.boxes[k]],
                "visible_fraction": [float(v) for v in fractions[k]],
                "angles_deg": [float(a) for a in angles],
            }
        )
    return rows


def realise_clip(spec: ClipSpec, out_dir: Path, config: WorldConfig) -> dict[str, Any]:
    """Render, encode and (if asked) corrupt one clip; return its manifest row."""
    shown = spec.defect.source if spec.defect and spec.defect.kind == "near_duplicate" else spec
    assert shown is not None
    clip, options = render_with_defect(spec, config.crf)
    relative = Path("clips") / f"{spec.clip_id}.mp4"
    path = out_dir / relative
    write_video(path, clip.frames, spec.fps, crf=options.crf, qp=options.qp)
    damage_file(path, spec)
    return {
        "clip_id": spec.clip_id,
        "path": relative.as_posix(),
        "split": spec.split,
        "index": spec.index,
        "seed": spec.seed,
        "width": int(clip.frames.shape[2]),
        "height": int(clip.frames.shape[1]),
        "num_frames": int(clip.frames.shape[0]),
        "fps": spec.fps,
        "scene": shown.scene,
        "camera_pan": shown.pan.direction if shown.pan else None,
        "pan_speed_px": shown.pan.speed_px if shown.pan else 0.0,
        "caption": caption(shown),
        "ref_descriptions": ref_descriptions(shown),
        "identity_ids": [s.identity_id for s in shown.subjects],
        "subjects": _subject_rows(shown, clip),
        "masks": encode_masks(clip.masks),
        "defect": spec.defect.kind if spec.defect else None,
        "defect_params": json.dumps(spec.defect.params if spec.defect else {}, sort_keys=True),
        "file_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def _realise_many(specs: list[ClipSpec], out_dir: Path, config: WorldConfig) -> list[dict[str, Any]]:
    return [realise_clip(spec, out_dir, config) for spec in specs]


def _chunks(items: list[ClipSpec], size: int) -> Iterable[list[ClipSpec]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def make_world(
    config: WorldConfig,
    n: int,
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    split: str = "train",
    workers: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> WorldSummary:
    """Generate ``n`` clips into ``out_dir``; ``on_progress(k)`` is called as k more clips finish."""
    out = Path(out_dir)
    specs = plan_world(config, n, seed=seed, split=split)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    workers = max(1, min(workers, n))
    if workers == 1:
        for spec in specs:
            rows.append(realise_clip(spec, out, config))
            if on_progress:
                on_progress(1)
    else:
        chunk = max(1, min(16, n // (workers * 4)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for done in pool.map(_realise_many, _chunks(specs, chunk), repeat(out), repeat(config)):
                rows.extend(done)
                if on_progress:
                    on_progress(len(done))
    record = {"n": n, "seed": seed, "split": split, "config": yaml.safe_load(dump_config(config))}
    write_bytes_atomic(out / "world.yaml", yaml.safe_dump(record, sort_keys=False).encode())
    manifest = write_manifest(rows, out / MANIFEST_NAME)
    defects = Counter(row["defect"] for row in rows if row["defect"])
    return WorldSummary(out_dir=out, manifest=manifest, clips=len(rows), defects=dict(sorted(defects.items())))
