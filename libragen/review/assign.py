"""Who reviews what: distinct items per reviewer, a configurable overlap for agreement, gold items for everyone.

Each item has a fixed pseudo-random ``rank`` (its order in every queue) and a draw ``u`` in [0, 1); an item
with ``u < overlap`` needs two reviewers (``need`` = 2), every other item one. ``taken`` counts the
assignments holding an item; a reviewer asking for work gets, in rank order, the first active non-gold
item with ``taken < need`` they have not had. An undecided assignment older than the lease is released
(it stops holding the item, so a reviewer who walked away does not block it). Every ``gold_every``-th item
a reviewer gets is a gold item (known answer) they have not seen. All of this runs inside the caller's
write transaction, so two reviewers asking at once can never both take a single-review item.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from libragen.review.config import ReviewConfig
from libragen.review.store import utc_ago, utc_now

# ``assignments.settled`` caches "this reviewer has a live decision here": a decision sets it and the undo
# that leaves none clears it, in the same transaction as the event, so it always agrees with the log.
_NOT_MINE = """NOT EXISTS (SELECT 1 FROM assignments m WHERE m.mode = i.mode AND m.item_id = i.item_id
    AND m.content_hash = i.content_hash AND m.reviewer_id = :reviewer)"""


def apply_overlap(conn: sqlite3.Connection, overlap: float) -> None:
    """Set every item's ``need`` from the overlap share (run when the server starts and at import)."""
    conn.execute("UPDATE items SET need = CASE WHEN u < ? THEN 2 ELSE 1 END", (overlap,))


def release_stale(conn: sqlite3.Connection, lease_minutes: float) -> int:
    """Release undecided assignments older than the lease; return how many."""
    stale = conn.execute(
        "SELECT a.id, a.mode, a.item_id FROM assignments a WHERE a.settled = 0 AND a.released = 0"
        " AND a.assigned_at < ?",
        (utc_ago(lease_minutes),),
    ).fetchall()
    for row in stale:
        conn.execute("UPDATE assignments SET released = 1 WHERE id = ?", (row["id"],))
        conn.execute(
            "UPDATE items SET taken = MAX(0, taken - 1) WHERE mode = ? AND item_id = ?", (row["mode"], row["item_id"])
        )
    return len(stale)


def pending_count(conn: sqlite3.Connection, reviewer_id: int, mode: str) -> int:
    """Assigned, still-current items the reviewer has not decided."""
    row = conn.execute(
        "SELECT COUNT(*) FROM assignments a JOIN items i ON i.mode = a.mode AND i.item_id = a.item_id"
        " AND i.content_hash = a.content_hash WHERE a.reviewer_id = ? AND a.mode = ? AND a.settled = 0"
        " AND i.active = 1",
        (reviewer_id, mode),
    ).fetchone()
    return int(row[0])


def _pick(conn: sqlite3.Connection, reviewer_id: int, mode: str, gold: bool) -> sqlite3.Row | None:
    open_items = "i.is_gold = 1" if gold else "i.taken < i.need AND i.is_gold = 0"
    return conn.execute(
        f"SELECT i.item_id, i.content_hash FROM items i WHERE i.mode = :mode AND i.active = 1 AND {open_items}"
        f" AND {_NOT_MINE} ORDER BY i.rank LIMIT 1",
        {"mode": mode, "reviewer": reviewer_id},
    ).fetchone()


def top_up(conn: sqlite3.Connection, reviewer_id: int, mode: str, config: ReviewConfig) -> list[str]:
    """Assign items until the reviewer has ``lookahead`` undecided ones; return the newly assigned ids.

    Must run inside a write transaction (``Store.write``).
    """
    added: list[str] = []
    need = config.lookahead - pending_count(conn, reviewer_id, mode)
    if need > 0:
        release_stale(conn, config.lease_minutes)
    for _ in range(max(0, need)):
        counts = conn.execute(
            "SELECT SUM(is_gold = 0), SUM(is_gold = 1) FROM assignments WHERE reviewer_id = ? AND mode = ?",
            (reviewer_id, mode),
        ).fetchone()
        regular, gold = int(counts[0] or 0), int(counts[1] or 0)
        pick, is_gold = None, False
        if config.gold_every > 0 and regular >= (gold + 1) * (config.gold_every - 1):
            pick, is_gold = _pick(conn, reviewer_id, mode, gold=True), True
        if pick is None:
            pick, is_gold = _pick(conn, reviewer_id, mode, gold=False), False
        if pick is None and config.gold_every > 0:
            pick, is_gold = _pick(conn, reviewer_id, mode, gold=True), True
        if pick is None:
            break
        conn.execute(
            "INSERT INTO assignments(mode, item_id, content_hash, reviewer_id, is_gold, assigned_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (mode, pick["item_id"], pick["content_hash"], reviewer_id, int(is_gold), utc_now()),
        )
        conn.execute("UPDATE items SET taken = taken + 1 WHERE mode = ? AND item_id = ?", (mode, pick["item_id"]))
        added.append(pick["item_id"])
    return added


def queue(conn: sqlite3.Connection, reviewer_id: int, mode: str, history: int) -> list[dict[str, Any]]:
    """The reviewer's queue in order: the last ``history`` decided items, then the undecided ones.

    Each entry is the item row (``item_id``, ``content_hash``, ``media``, ``view``) plus ``decided``.
    """
    base = (
        "SELECT a.id AS assignment_id, i.item_id, i.content_hash, i.media, i.view, {decided} AS decided"
        " FROM assignments a JOIN items i ON i.mode = a.mode AND i.item_id = a.item_id"
        " AND i.content_hash = a.content_hash WHERE a.reviewer_id = ? AND a.mode = ? AND i.active = 1"
    )
    pending = conn.execute(
        base.format(decided="0") + " AND a.settled = 0 ORDER BY a.id", (reviewer_id, mode)
    ).fetchall()
    decided = []
    if history:
        decided = conn.execute(
            base.format(decided="1") + " AND a.settled = 1 ORDER BY a.id DESC LIMIT ?",
            (reviewer_id, mode, history),
        ).fetchall()
    return [dict(r) for r in reversed(decided)] + [dict(r) for r in pending]
