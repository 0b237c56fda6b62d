"""``libragen review export``: the human-approved manifest for the pairs stage, and pair / GSB results.

Clip label of an item (derived from the event log, never stored): a gold item takes its known answer;
otherwise, among the reviewers' current decisions on the clip's current content, any reject rejects
(conservative: a clip two people disagree on is not used) and all-accept accepts. The clip export is
the curated rows people accepted, byte-for-byte as imported (``path`` made absolute unless the export
sits beside the curated manifest), plus ``human_*`` columns.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from libragen.core.files import atomic_path, write_bytes_atomic
from libragen.review.importer import load_import_table
from libragen.review.stats import gsb_results, pair_verdict
from libragen.review.store import ReviewError, Store

HUMAN_FIELDS = pa.schema(
    [
        ("human_decision", pa.string()),
        ("human_source", pa.string()),
        ("human_reviewers", pa.list_(pa.string())),
        ("human_accepts", pa.int32()),
        ("human_rejects", pa.int32()),
        ("human_reasons", pa.list_(pa.string())),
        ("human_event_ids", pa.list_(pa.int64())),
        ("human_decided_at", pa.string()),
    ]
)


def clip_labels(store: Store) -> dict[str, dict[str, Any]]:
    """Final label per active clip that has one (gold answer or reviewers' decisions)."""
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label in store.current_labels("clip"):
        by_item[label["item_id"]].append(label)
    gold = store.gold("clip")
    with store.connect() as conn:
        active = [r["item_id"] for r in conn.execute("SELECT item_id FROM items WHERE mode = 'clip' AND active = 1")]
    out: dict[str, dict[str, Any]] = {}
    for item_id in active:
        labels = by_item.get(item_id, [])
        if not labels and item_id not in gold:
            continue
        accepts = sum(label["decision"] == "accept" for label in labels)
        rejects = len(labels) - accepts
        if item_id in gold:
            decision, source = gold[item_id]["answer"], "gold"
        else:
            decision, source = ("reject" if rejects else "accept"), "reviewers"
        reasons = sorted({r for label in labels for r in label["reasons"]})
        out[item_id] = {
            "human_decision": decision,
            "human_source": source,
            "human_reviewers": sorted(label["reviewer"] for label in labels),
            "human_accepts": accepts,
            "human_rejects": rejects,
            "human_reasons": reasons,
            "human_event_ids": sorted(label["event_id"] for label in labels),
            "human_decided_at": max((label["ts_utc"] for label in labels), default=None),
        }
    return out


def export_clips(store: Store, out: str | os.PathLike[str], *, include_all: bool = False) -> tuple[Path, int]:
    """Write the approved manifest (``include_all``: every labelled clip, with its decision); return (path, rows)."""
    target = Path(out).resolve()
    labels = clip_labels(store)
    wanted = {k: v for k, v in labels.items() if include_all or v["human_decision"] == "accept"}
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT i.item_id, i.row_index, i.import_seq, m.source FROM items i JOIN imports m ON m.seq = i.import_seq"
            " WHERE i.mode = 'clip' AND i.active = 1 ORDER BY i.import_seq, i.row_index"
        ).fetchall()
        blobs = {
            r["seq"]: r["table_ipc"]
            for r in conn.execute(
                "SELECT seq, table_ipc FROM imports WHERE seq IN (SELECT DISTINCT import_seq FROM items"
                " WHERE mode = 'clip' AND active = 1)"
            )
        }
    groups: dict[int, list[tuple[str, int]]] = defaultdict(list)
    sources: dict[int, Path] = {}
    for row in rows:
        if row["item_id"] in wanted:
            groups[row["import_seq"]].append((row["item_id"], row["row_index"]))
            sources[row["import_seq"]] = Path(row["source"]).parent
    if not groups:
        if not blobs:
            raise ReviewError("no curated clips imported yet: run `libragen review import --from curated.parquet`")
        base_schema = load_import_table(next(iter(blobs.values()))).schema
        tables = [base_schema.empty_table()]
    else:
        tables = []
        for seq, picks in groups.items():
            table = load_import_table(blobs[seq]).take([index for _, index in picks])
            table = _rebase_paths(table, sources[seq], target.parent)
            human = pa.Table.from_pylist([wanted[item_id] for item_id, _ in picks], schema=HUMAN_FIELDS)
            tables.append(_with_columns(table, human))
    result = pa.concat_tables(
        [
            t if HUMAN_FIELDS.names[0] in t.column_names else _with_columns(t, HUMAN_FIELDS.empty_table())
            for t in tables
        ],
        promote_options="default",
    )
    with atomic_path(target) as tmp:
        pq.write_table(result, tmp, compression="zstd")
    return target, result.num_rows


def _with_columns(table: pa.Table, human: pa.Table) -> pa.Table:
    for name in human.column_names:
        if name in table.column_names:
            table = table.drop_columns([name])
        table = table.append_column(human.schema.field(name), human.column(name))
    return table


def _rebase_paths(table: pa.Table, source_dir: Path, out_dir: Path) -> pa.Table:
    if "path" not in table.column_names or source_dir.resolve() == out_dir.resolve():
        return table
    paths = [
        None if p is None else (p if Path(p).is_absolute() else str(source_dir / p))
        for p in table.column("path").to_pylist()
    ]
    index = table.column_names.index("path")
    return table.set_column(index, table.schema.field("path"), pa.array(paths, pa.string()))


def export_pairs(store: Store, out: str | os.PathLike[str]) -> tuple[Path, int]:
    """Write one row per judged DPO pair: the majority verdict (ties: ``disputed``) and its counts."""
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label in store.current_labels("pair"):
        by_item[label["item_id"]].append(label)
    with store.connect() as conn:
        media = {
            r["item_id"]: json.loads(r["media"])
            for r in conn.execute("SELECT item_id, media FROM items WHERE mode = 'pair' AND active = 1")
        }
    rows = []
    for item_id, labels in sorted(by_item.items()):
        counts = Counter(pair_verdict(label) for label in labels)
        ranked = counts.most_common()
        verdict = ranked[0][0] if len(ranked) == 1 or ranked[0][1] > ranked[1][1] else "disputed"
        context = labels[0]["context"]
        roles = dict(zip((context["left"], context["right"]), media[item_id], strict=True))
        rows.append(
            {
                "pair_id": item_id,
                "positive": roles["positive"],
                "negative": roles["negative"],
                "positive_side": "left" if context["left"] == "positive" else "right",
                "human_verdict": verdict,
                "positive_better": counts["positive_better"],
                "same": counts["same"],
                "negative_better": counts["negative_better"],
                "human_reviewers": sorted(label["reviewer"] for label in labels),
            }
        )
    target = Path(out)
    schema = pa.schema(
        [
            ("pair_id", pa.string()),
            ("positive", pa.string()),
            ("negative", pa.string()),
            ("positive_side", pa.string()),
            ("human_verdict", pa.string()),
            ("positive_better", pa.int32()),
            ("same", pa.int32()),
            ("negative_better", pa.int32()),
            ("human_reviewers", pa.list_(pa.string())),
        ]
    )
    with atomic_path(target) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    return target, len(rows)


def export_gsb(store: Store, out: str | os.PathLike[str]) -> tuple[Path, int]:
    """Write every current GSB choice (JSON lines: set, item, reviewer, choice, left) and the ratios beside it."""
    labels = store.current_labels("gsb")
    target = Path(out)
    lines = [
        json.dumps(
            {
                "set": label["context"]["set"],
                "item": label["context"]["item"],
                "reviewer": label["reviewer"],
                "choice": label["decision"],
                "left": label["context"]["left"],
                "event_id": label["event_id"],
            }
        )
        for label in labels
    ]
    write_bytes_atomic(target, ("\n".join(lines) + ("\n" if lines else "")).encode())
    summary = target.with_name(target.stem + ".summary.json")
    write_bytes_atomic(summary, json.dumps(gsb_results(labels), indent=2).encode())
    return target, len(lines)
