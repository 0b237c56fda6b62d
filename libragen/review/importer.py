"""Bring work into the review database: curated clips, gold answers, DPO pairs and GSB side-by-side sets.

An import upserts items by id and marks the items of the same set that it no longer contains as retired
(inactive); it never writes to the event log, so re-running curation and importing again keeps every
human decision. A clip whose content hash changed goes back into the queues (old decisions stay in the
log, tied to the old hash). The imported Arrow table is kept in the database so ``export`` can write the
curated rows back exactly, whatever columns they had.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from libragen.core.files import sha256_file
from libragen.review.config import ReviewConfig
from libragen.review.reasons import CLIP_DECISIONS, SIDE_DECISIONS, near_scores
from libragen.review.store import ReviewError, Store, utc_now

CURATED_REQUIRED = ("clip_id", "path", "content_hash", "keep")
CLIP_SET = "curated"


@dataclass(frozen=True)
class ImportSummary:
    """What an import did."""

    mode: str
    set_name: str
    source: str
    rows: int
    queued: int
    skipped: int
    added: int
    changed: int
    unchanged: int
    retired: int
    decisions_in_log: int

    def line(self) -> str:
        """One human-readable line."""
        return (
            f"{self.mode} import of {self.source}: {self.rows} rows, {self.queued} queued ({self.added} new, "
            f"{self.changed} changed, {self.unchanged} unchanged), {self.skipped} skipped, {self.retired} retired; "
            f"{self.decisions_in_log} human decision events kept in the log"
        )

    def as_dict(self) -> dict[str, Any]:
        """The summary as a dict (stored with the import)."""
        return asdict(self)


def _draw(salt: str, *parts: str) -> str:
    return hashlib.sha256("\x1f".join((salt, *parts)).encode()).hexdigest()


def _table_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def load_import_table(blob: bytes) -> pa.Table:
    """The Arrow table an import stored."""
    return pa.ipc.open_file(pa.BufferReader(blob)).read_all()


def _upsert(
    store: Store,
    *,
    mode: str,
    set_name: str,
    source: Path,
    items: list[dict[str, Any]],
    config: ReviewConfig,
    rows: int,
    skipped: int,
    table: pa.Table | None = None,
) -> ImportSummary:
    ids = [item["item_id"] for item in items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ReviewError(f"{source}: repeated item id(s) {dup}")
    with store.write() as conn:
        seq = conn.execute(
            "INSERT INTO imports(mode, set_name, source, source_sha256, table_ipc, imported_at, summary)"
            " VALUES (?, ?, ?, ?, ?, ?, '{}')",
            (mode, set_name, str(source), sha256_file(source) if source.is_file() else "", None, utc_now()),
        ).lastrowid
        if table is not None:
            conn.execute("UPDATE imports SET table_ipc = ? WHERE seq = ?", (_table_ipc(table), seq))
        before = {
            r["item_id"]: r["content_hash"]
            for r in conn.execute("SELECT item_id, content_hash FROM items WHERE mode = ?", (mode,))
        }
        other_sets = {
            r["item_id"]
            for r in conn.execute("SELECT item_id FROM items WHERE mode = ? AND set_name != ?", (mode, set_name))
        }
        clash = sorted(set(ids) & other_sets)[:5]
        if clash:
            raise ReviewError(f"{source}: item id(s) {clash} already belong to another {mode} set")
        added = changed = 0
        for item in items:
            old = before.get(item["item_id"])
            added += old is None
            changed += old is not None and old != item["content_hash"]
            conn.execute(
                "INSERT INTO items(mode, item_id, set_name, content_hash, media, view, context, row_index,"
                " import_seq, active, rank, u) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)"
                " ON CONFLICT(mode, item_id) DO UPDATE SET content_hash = excluded.content_hash,"
                " media = excluded.media, view = excluded.view, context = excluded.context,"
                " row_index = excluded.row_index, import_seq = excluded.import_seq, active = 1",
                (
                    mode,
                    item["item_id"],
                    set_name,
                    item["content_hash"],
                    json.dumps(item["media"]),
                    json.dumps(item["view"]),
                    json.dumps(item.get("context", {})),
                    item.get("row_index"),
                    seq,
                    _draw(config.salt, "rank", mode, item["item_id"]),
                    int(_draw(config.salt, "overlap", mode, item["item_id"])[:13], 16) / 16**13,
                ),
            )
        conn.execute(
            "UPDATE items SET need = CASE WHEN u < ? THEN 2 ELSE 1 END, is_gold = EXISTS (SELECT 1 FROM gold g"
            " WHERE g.mode = items.mode AND g.item_id = items.item_id), taken = (SELECT COUNT(*) FROM assignments a"
            " WHERE a.mode = items.mode AND a.item_id = items.item_id AND a.content_hash = items.content_hash"
            " AND a.released = 0) WHERE mode = ? AND set_name = ?",
            (config.overlap, mode, set_name),
        )
        retired = conn.execute(
            "UPDATE items SET active = 0 WHERE mode = ? AND set_name = ? AND import_seq != ? AND active = 1",
            (mode, set_name, seq),
        ).rowcount
        kept = conn.execute(
            "SELECT COUNT(*) FROM events e WHERE e.mode = ? AND e.kind = 'decision'", (mode,)
        ).fetchone()[0]
        summary = ImportSummary(
            mode=mode,
            set_name=set_name,
            source=str(source),
            rows=rows,
            queued=len(items),
            skipped=skipped,
            added=added,
            changed=changed,
            unchanged=len(items) - added - changed,
            retired=retired,
            decisions_in_log=int(kept),
        )
        conn.execute("UPDATE imports SET summary = ? WHERE seq = ?", (json.dumps(summary.as_dict()), seq))
    return summary


def _scores_dict(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    pairs = value.items() if isinstance(value, dict) else value
    return {str(k): (None if v is None else float(v)) for k, v in pairs}


def import_curated(store: Store, parquet: str | os.PathLike[str], config: ReviewConfig) -> ImportSummary:
    """Queue the clips of a ``curated.parquet`` (those curation kept, unless configured otherwise)."""
    path = Path(parquet).resolve()
    if not path.is_file():
        raise ReviewError(f"{path}: curated manifest not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise ReviewError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0][:160]})") from err
    missing = [c for c in CURATED_REQUIRED if c not in table.column_names]
    if missing:
        raise ReviewError(f"{path}: missing column(s) {', '.join(missing)}")
    items, skipped = [], 0
    for index, row in enumerate(table.select([c for c in table.column_names if c != "masks"]).to_pylist()):
        if row["path"] is None or not row["clip_id"] or not (row["keep"] or config.include_auto_rejected):
            skipped += 1
            continue
        video = Path(row["path"]) if Path(row["path"]).is_absolute() else path.parent / row["path"]
        content_hash = row["content_hash"] or (sha256_file(video) if video.is_file() else "missing")
        subjects = [
            {
                "ref_index": s.get("ref_index"),
                "boxes": s.get("boxes") or [],
                "visible_fraction": s.get("visible_fraction") or [],
            }
            for s in (row.get("subjects") or [])
        ]
        scores = _scores_dict(row.get("scores"))
        near = list(row.get("near_reasons") or [])
        view = {
            "caption": row.get("caption"),
            "scores": scores,
            "near_reasons": near,
            "near_scores": near_scores(near, list(scores)),
            "auto_reasons": list(row.get("reasons") or []),
            "quality_score": row.get("quality_score"),
            "keep": bool(row["keep"]),
            "width": row.get("width"),
            "height": row.get("height"),
            "fps": row.get("fps"),
            "num_frames": row.get("num_frames"),
            "subjects": subjects,
        }
        items.append(
            {
                "item_id": row["clip_id"],
                "content_hash": content_hash,
                "media": [str(video)],
                "view": view,
                "row_index": index,
            }
        )
    return _upsert(
        store,
        mode="clip",
        set_name=CLIP_SET,
        source=path,
        items=items,
        config=config,
        rows=table.num_rows,
        skipped=skipped,
        table=table,
    )


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    raise ReviewError(f"{path}: expected a .parquet or .jsonl file")


def import_gold(store: Store, source: str | os.PathLike[str], mode: str = "clip") -> int:
    """Load gold answers (rows with ``item_id`` or ``clip_id``, ``answer``, optional ``reasons``); return count."""
    path = Path(source)
    if not path.is_file():
        raise ReviewError(f"{path}: gold file not found")
    valid = CLIP_DECISIONS if mode == "clip" else SIDE_DECISIONS
    answers = []
    for number, row in enumerate(_read_rows(path)):
        item_id, answer = row.get("item_id") or row.get("clip_id"), row.get("answer")
        if not item_id or answer not in valid:
            raise ReviewError(f"{path}: row {number} needs an item_id and an answer in {valid}")
        answers.append((mode, str(item_id), answer, json.dumps(list(row.get("reasons") or []))))
    with store.write() as conn:
        conn.executemany(
            "INSERT INTO gold(mode, item_id, answer, reasons) VALUES (?, ?, ?, ?) ON CONFLICT(mode, item_id)"
            " DO UPDATE SET answer = excluded.answer, reasons = excluded.reasons",
            answers,
        )
        conn.execute(
            "UPDATE items SET is_gold = EXISTS (SELECT 1 FROM gold g WHERE g.mode = items.mode"
            " AND g.item_id = items.item_id) WHERE mode = ?",
            (mode,),
        )
    return len(answers)


def import_pairs(
    store: Store, source: str | os.PathLike[str], config: ReviewConfig, name: str | None = None
) -> ImportSummary:
    """Queue DPO pairs for review: rows with ``pair_id``, ``positive`` and ``negative`` video paths
    (absolute or relative to the file's folder) and an optional ``prompt``. Which side shows the
    positive is drawn per pair (fixed by the salt) and recorded with every decision.
    """
    path = Path(source).resolve()
    if not path.is_file():
        raise ReviewError(f"{path}: pairs file not found")
    rows = _read_rows(path)
    items = []
    for number, row in enumerate(rows):
        if not row.get("pair_id") or not row.get("positive") or not row.get("negative"):
            raise ReviewError(f"{path}: row {number} needs pair_id, positive and negative")
        videos = {}
        for role in ("positive", "negative"):
            video = Path(row[role]) if Path(row[role]).is_absolute() else path.parent / row[role]
            if not video.is_file():
                raise ReviewError(f"{path}: row {number}: {role} video {video} not found")
            videos[role] = video
        positive_left = int(_draw(config.salt, "side", str(row["pair_id"]))[:8], 16) % 2 == 0
        left, right = ("positive", "negative") if positive_left else ("negative", "positive")
        digest = hashlib.sha256(
            (sha256_file(videos["positive"]) + sha256_file(videos["negative"])).encode()
        ).hexdigest()
        items.append(
            {
                "item_id": str(row["pair_id"]),
                "content_hash": digest,
                "media": [str(videos[left]), str(videos[right])],
                "view": {"caption": row.get("prompt")},
                "context": {"left": left, "right": right},
            }
        )
    return _upsert(
        store,
        mode="pair",
        set_name=name or path.stem,
        source=path,
        items=items,
        config=config,
        rows=len(rows),
        skipped=0,
    )


def import_gsb(
    store: Store, folder: str | os.PathLike[str], config: ReviewConfig, name: str | None = None
) -> ImportSummary:
    """Queue a GSB set: a folder written by :func:`libragen.eval.gsb.export_side_by_side` (mp4s + key.jsonl).

    Item ids are ``<set>:<video name>``; the key (which method is on the left) is recorded with every decision.
    """
    root = Path(folder).resolve()
    key_path = root / "key.jsonl"
    if not key_path.is_file():
        raise ReviewError(f"{root}: no key.jsonl (make the set with export_side_by_side)")
    set_name = name or root.name
    if ":" in set_name:
        raise ReviewError(f"GSB set name {set_name!r} must not contain ':'")
    rows = _read_rows(key_path)
    items = []
    for number, row in enumerate(rows):
        item, left = row.get("item"), row.get("left")
        video = root / str(item)
        if not item or left not in ("A", "B") or not video.is_file():
            raise ReviewError(f"{key_path}: row {number} needs an item with a video beside it and left A or B")
        items.append(
            {
                "item_id": f"{set_name}:{item}",
                "content_hash": sha256_file(video),
                "media": [str(video)],
                "view": {"caption": None, "set": set_name, "item": item},
                "context": {"set": set_name, "item": item, "left": left},
            }
        )
    return _upsert(
        store, mode="gsb", set_name=set_name, source=key_path, items=items, config=config, rows=len(rows), skipped=0
    )


def import_roots(store: Store) -> list[Path]:
    """The folders imported files came from (the default data roots)."""
    roots: list[Path] = []
    with store.connect() as conn:
        for row in conn.execute("SELECT DISTINCT source FROM imports ORDER BY seq"):
            folder = Path(row["source"]).parent
            if folder not in roots:
                roots.append(folder)
    return roots
