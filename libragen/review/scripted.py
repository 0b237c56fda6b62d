"""A scripted reviewer that answers from LibraWorld's ground truth: it stands in for people in ``libragen reproduce``.

It is **not** a person and its answers are not human judgements: it logs in as ``scripted-ground-truth``, takes clips
from the review queue exactly as the web app hands them out, and accepts a clip when the LibraWorld manifest says
its source has no defect, else rejects it with the reason code that defect maps to. Its decisions are ordinary
events in the review database, so ``libragen review export`` writes the approved manifest the usual way.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from libragen.review.assign import queue, top_up
from libragen.review.config import ReviewConfig
from libragen.review.export import export_clips
from libragen.review.importer import import_curated
from libragen.review.store import Store
from libragen.world.manifest import read_manifest

REVIEWER = "scripted-ground-truth"

#: LibraWorld defect -> the review app's reject reason code (others are "other" with the defect as the note).
DEFECT_REASONS = {
    "cut": "cut",
    "static": "static",
    "blur": "blur",
    "low_bitrate": "blur",
    "text_overlay": "text_watermark",
    "letterbox": "letterbox",
    "subject_too_small": "subject_small_occluded",
    "occluded": "subject_small_occluded",
}


def scripted_review(
    curated: str | os.PathLike[str], world: str | os.PathLike[str], db: str | os.PathLike[str], approved: Path
) -> dict:
    """Import ``curated`` (a curated.parquet) into the review database ``db``, decide every queued clip from the
    ground truth of the LibraWorld folder ``world``, export the accepted clips to ``approved``; return counts."""
    defects = {Path(row["path"]).name: row["defect"] for row in read_manifest(world)}
    sources = {
        row["clip_id"]: Path(row["source_path"]).name
        for row in pq.read_table(curated, columns=["clip_id", "source_path"]).to_pylist()
    }
    store = Store(db)
    config = ReviewConfig(overlap=0.0, gold_every=0, lookahead=50)
    import_curated(store, curated, config)
    user = next((u for u in store.users() if u.name == REVIEWER), None)
    if user is None:
        store.add_user(REVIEWER)
        user = next(u for u in store.users() if u.name == REVIEWER)
    decisions: Counter[str] = Counter()
    while True:
        with store.write() as conn:
            top_up(conn, user.id, "clip", config)
            pending = [item for item in queue(conn, user.id, "clip", history=0) if not item["decided"]]
            if not pending:
                break
            for item in pending:
                defect = defects.get(sources[item["item_id"]], "unknown source")
                reasons, note = [], None
                if defect is not None:
                    reasons = [DEFECT_REASONS.get(defect, "other")]
                    note = None if reasons[0] != "other" else f"ground truth: {defect}"
                store.record_decision(
                    user,
                    event_uuid=str(uuid.uuid4()),
                    mode="clip",
                    item_id=item["item_id"],
                    content_hash=item["content_hash"],
                    decision="reject" if defect is not None else "accept",
                    reasons=reasons,
                    note=note,
                    conn=conn,
                )
                decisions[defect or "accepted"] += 1
    path, rows = export_clips(store, approved)
    return {"reviewer": REVIEWER, "decisions": dict(decisions), "approved": rows, "manifest": str(path)}
