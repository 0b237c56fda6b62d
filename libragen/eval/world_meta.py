"""Write an evaluation meta file for real LibraWorld clips (prompts = their captions, refs = subject crops).

Each subject's reference is cropped (masked, white-padded, 64 px) from *another* clip of the same identity
when the folder has one, as users would give a photo of their subject from elsewhere; otherwise from the
clip's own first frame where the subject is well visible (recorded as ``ref_kind: in``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from libragen.core.files import write_bytes_atomic
from libragen.core.refs import prepare_reference
from libragen.core.video import read_video
from libragen.world.manifest import decode_masks, read_manifest


def _crop(root: Path, row: dict, subject_index: int) -> np.ndarray | None:
    subject = row["subjects"][subject_index]
    visible = np.array(subject["visible_fraction"])
    good = np.flatnonzero(visible >= 0.8)
    if len(good) == 0:
        return None
    frame_index = int(good[len(good) // 2])
    frame = read_video(root / row["path"], max_frames=frame_index + 1)[frame_index]
    return prepare_reference(frame, mask=decode_masks(row)[subject_index, frame_index], size=64)


def write_world_meta(
    world_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], limit: int | None = None
) -> Path:
    """``out_dir/meta.jsonl`` and ``out_dir/refs/*.png`` for the clean clips of a LibraWorld folder."""
    root, out = Path(world_dir), Path(out_dir)
    rows = [row for row in read_manifest(root) if row["defect"] is None]
    appearances: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for r, row in enumerate(rows):
        for k, subject in enumerate(row["subjects"]):
            appearances[int(subject["identity_id"])].append((r, k))
    (out / "refs").mkdir(parents=True, exist_ok=True)
    lines = []
    for r, row in enumerate(rows[:limit]):
        refs, kinds = [], []
        for k, subject in enumerate(row["subjects"]):
            others = [(rr, kk) for rr, kk in appearances[int(subject["identity_id"])] if rr != r]
            crop = next((c for rr, kk in others if (c := _crop(root, rows[rr], kk)) is not None), None)
            kind = "cross"
            if crop is None:
                crop, kind = _crop(root, row, k), "in"
            if crop is None:
                continue
            name = f"refs/{row['clip_id']}_ref{k + 1}.png"
            Image.fromarray(crop).save(out / name)
            refs.append(name)
            kinds.append(kind)
        lines.append(
            json.dumps(
                {"id": row["clip_id"], "video": row["path"], "prompt": row["caption"], "refs": refs, "ref_kind": kinds}
            )
        )
    meta = out / "meta.jsonl"
    write_bytes_atomic(meta, ("\n".join(lines) + "\n").encode())
    return meta
