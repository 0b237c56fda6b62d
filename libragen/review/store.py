"""The review database (SQLite in WAL mode): users, sessions, items, assignments and the append-only event log.

Every human action is one row of ``events`` (a decision, or an undo that points at the decision it takes
back); triggers refuse UPDATE and DELETE on that table, and a UNIQUE ``event_uuid`` (made by the client)
makes a retried request a no-op instead of a second decision. A reviewer's current label for an item is
derived: their latest decision on the item's *current* content hash that no undo points at. Re-importing
curation output updates ``items`` but never touches ``events``, so no human decision is ever lost; a
decision made on different bytes (a changed content hash) stays in the log but no longer labels the clip.

Login tokens are ``selector.verifier``: the selector finds the user, the verifier is stored only as a
SHA-256 hash and compared in constant time. Browser sessions work the same way (hashed cookie secret) and
carry a CSRF token that every cookie-authenticated write must echo in a header.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from libragen.review.reasons import MODES, validate_decision

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TIME_SPENT_MAX_MS = 3_600_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users(
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    selector TEXT UNIQUE NOT NULL,
    token_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions(
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS imports(
    seq INTEGER PRIMARY KEY,
    mode TEXT NOT NULL,
    set_name TEXT NOT NULL,
    source TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    table_ipc BLOB,
    imported_at TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items(
    mode TEXT NOT NULL,
    item_id TEXT NOT NULL,
    set_name TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    media TEXT NOT NULL,
    view TEXT NOT NULL,
    context TEXT NOT NULL DEFAULT '{}',
    row_index INTEGER,
    import_seq INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    rank TEXT NOT NULL,
    u REAL NOT NULL,
    need INTEGER NOT NULL DEFAULT 1,
    taken INTEGER NOT NULL DEFAULT 0,
    is_gold INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(mode, item_id)
);
CREATE INDEX IF NOT EXISTS items_open ON items(mode, rank) WHERE active = 1 AND taken < need AND is_gold = 0;
CREATE INDEX IF NOT EXISTS items_gold ON items(mode, rank) WHERE active = 1 AND is_gold = 1;
CREATE TABLE IF NOT EXISTS gold(
    mode TEXT NOT NULL,
    item_id TEXT NOT NULL,
    answer TEXT NOT NULL,
    reasons TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY(mode, item_id)
);
CREATE TABLE IF NOT EXISTS assignments(
    id INTEGER PRIMARY KEY,
    mode TEXT NOT NULL,
    item_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    reviewer_id INTEGER NOT NULL REFERENCES users(id),
    is_gold INTEGER NOT NULL,
    assigned_at TEXT NOT NULL,
    settled INTEGER NOT NULL DEFAULT 0,
    released INTEGER NOT NULL DEFAULT 0,
    UNIQUE(mode, item_id, content_hash, reviewer_id)
);
CREATE INDEX IF NOT EXISTS assignments_reviewer ON assignments(reviewer_id, mode, settled, id);
CREATE INDEX IF NOT EXISTS assignments_open ON assignments(assigned_at) WHERE settled = 0 AND released = 0;
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_uuid TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('decision', 'undo')),
    reviewer_id INTEGER NOT NULL REFERENCES users(id),
    reviewer TEXT NOT NULL,
    ts_utc TEXT NOT NULL,
    mode TEXT NOT NULL,
    item_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    decision TEXT,
    reasons TEXT NOT NULL DEFAULT '[]',
    note TEXT,
    time_spent_ms INTEGER,
    context TEXT NOT NULL DEFAULT '{}',
    undoes INTEGER REFERENCES events(id)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_undo_once ON events(undoes) WHERE undoes IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_item ON events(mode, item_id, reviewer_id);
CREATE INDEX IF NOT EXISTS events_reviewer ON events(reviewer_id, mode, id);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE VIEW IF NOT EXISTS live_decisions AS
SELECT e.* FROM events e
WHERE e.kind = 'decision' AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id);
CREATE VIEW IF NOT EXISTS current_labels AS
SELECT d.* FROM live_decisions d
JOIN items i ON i.mode = d.mode AND i.item_id = d.item_id AND i.content_hash = d.content_hash
WHERE d.id = (
    SELECT MAX(d2.id) FROM live_decisions d2
    WHERE d2.mode = d.mode AND d2.item_id = d.item_id AND d2.reviewer_id = d.reviewer_id
      AND d2.content_hash = d.content_hash
);
"""


def utc_now() -> str:
    """The current UTC time as a fixed-width ISO string (sorts as text)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def utc_ago(minutes: float) -> str:
    """UTC time ``minutes`` ago, same format as :func:`utc_now`."""
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ReviewError(ValueError):
    """A request the store refuses; ``status`` is the HTTP status the web app answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class User:
    """A reviewer."""

    id: int
    name: str
    is_admin: bool


@dataclass(frozen=True)
class Session:
    """A logged-in browser: its user and the CSRF token its writes must echo."""

    user: User
    csrf: str


@dataclass(frozen=True)
class EventResult:
    """What appending an event did: ``duplicate`` is True when the event_uuid was already recorded."""

    event_id: int
    duplicate: bool
    item_id: str
    mode: str
    undoes: int | None = None


_WRITE_LOCKS: dict[Path, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


class Store:
    """Opens short-lived connections to one SQLite file; every write is one ``BEGIN IMMEDIATE`` transaction.

    Writers in one process also queue on a lock (waiting threads wake as soon as it is free, instead of
    SQLite's sleeping busy handler); ``BEGIN IMMEDIATE`` still serialises writers of other processes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _WRITE_LOCKS_GUARD:
            self._lock = _WRITE_LOCKS.setdefault(self.path.resolve(), threading.Lock())
        self._local = threading.local()
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
            if has_meta:
                found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if found is not None and found["value"] != str(SCHEMA_VERSION):
                    raise ReviewError(
                        f"{self.path}: review database schema {found['value']}, this code needs {SCHEMA_VERSION}"
                    )
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, in autocommit mode (use :meth:`write` for transactions).

        Connections stay open per thread: closing the last connection of a WAL database checkpoints it,
        which would cost a few milliseconds on every request.
        """
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        yield conn

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end or the store is dropped)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before reading so concurrent writers serialise (no lost updates)."""
        with self._lock, self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection | None) -> Iterator[sqlite3.Connection]:
        if conn is not None:
            yield conn
        else:
            with self.write() as own:
                yield own

    @contextmanager
    def _reading(self, conn: sqlite3.Connection | None) -> Iterator[sqlite3.Connection]:
        if conn is not None:
            yield conn
        else:
            with self.connect() as own:
                yield own

    # ---- users and sessions -------------------------------------------------------------------------

    def add_user(self, name: str, *, admin: bool = False, rotate: bool = False) -> str:
        """Create reviewer ``name`` (or, with ``rotate``, replace their token); return the new login token."""
        if not NAME_RE.match(name):
            raise ReviewError(f"user name {name!r} must be 1-64 characters of letters, digits, '_', '.', '-'")
        selector, verifier = secrets.token_hex(8), secrets.token_urlsafe(32)
        with self.write() as conn:
            row = conn.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
            if row is not None and not rotate:
                raise ReviewError(f"user {name!r} already exists (use --rotate to issue a new token)", 409)
            if row is None:
                conn.execute(
                    "INSERT INTO users(name, selector, token_hash, is_admin, created_at) VALUES (?, ?, ?, ?, ?)",
                    (name, selector, _sha256(verifier), int(admin), utc_now()),
                )
            else:
                conn.execute(
                    "UPDATE users SET selector = ?, token_hash = ?, is_admin = ? WHERE id = ?",
                    (selector, _sha256(verifier), int(admin), row["id"]),
                )
                conn.execute("DELETE FROM sessions WHERE user_id = ?", (row["id"],))
        return f"{selector}.{verifier}"

    def authenticate(self, token: str) -> User | None:
        """The user a login token belongs to, or None (hash compared in constant time)."""
        selector, _, verifier = (token or "").strip().partition(".")
        with self.connect() as conn:
            row = conn.execute(
                "SELECT id, name, is_admin, token_hash FROM users WHERE selector = ?", (selector,)
            ).fetchone()
        stored = row["token_hash"] if row is not None else _sha256("no such user")
        ok = hmac.compare_digest(stored, _sha256(verifier))
        if row is None or not ok or not verifier:
            return None
        return User(row["id"], row["name"], bool(row["is_admin"]))

    def users(self) -> list[User]:
        """Every reviewer, by id."""
        with self.connect() as conn:
            rows = conn.execute("SELECT id, name, is_admin FROM users ORDER BY id").fetchall()
        return [User(r["id"], r["name"], bool(r["is_admin"])) for r in rows]

    def open_session(self, user: User, hours: float) -> tuple[str, str]:
        """Start a browser session; return (cookie secret, CSRF token). Only the secret's hash is stored."""
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        expires = (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        with self.write() as conn:
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (utc_now(),))
            conn.execute(
                "INSERT INTO sessions(id_hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (_sha256(secret), user.id, csrf, utc_now(), expires),
            )
        return secret, csrf

    def session(self, secret: str) -> Session | None:
        """The live session a cookie secret belongs to, or None."""
        if not secret:
            return None
        digest = _sha256(secret)
        with self.connect() as conn:
            row = conn.execute(
                "SELECT s.id_hash, s.csrf, s.expires_at, u.id, u.name, u.is_admin FROM sessions s "
                "JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
                (digest,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row["id_hash"], digest) or row["expires_at"] < utc_now():
            return None
        return Session(User(row["id"], row["name"], bool(row["is_admin"])), row["csrf"])

    def close_session(self, secret: str) -> None:
        """Log a browser out."""
        with self.write() as conn:
            conn.execute("DELETE FROM sessions WHERE id_hash = ?", (_sha256(secret),))

    # ---- events -------------------------------------------------------------------------------------

    def _existing(self, conn: sqlite3.Connection, event_uuid: str, user: User) -> EventResult | None:
        row = conn.execute(
            "SELECT id, reviewer_id, item_id, mode, undoes FROM events WHERE event_uuid = ?", (event_uuid,)
        ).fetchone()
        if row is None:
            return None
        if row["reviewer_id"] != user.id:
            raise ReviewError("event_uuid already used by another reviewer", 409)
        return EventResult(row["id"], True, row["item_id"], row["mode"], row["undoes"])

    def record_decision(
        self,
        user: User,
        *,
        event_uuid: str,
        mode: str,
        item_id: str,
        content_hash: str,
        decision: str,
        reasons: list[str] | None = None,
        note: str | None = None,
        time_spent_ms: int | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> EventResult:
        """Append one decision event; a repeated ``event_uuid`` returns the first one (``duplicate``).

        ``conn``: run inside the caller's write transaction instead of a new one.
        """
        reasons = list(reasons or [])
        _check_uuid(event_uuid)
        if mode not in MODES:
            raise ReviewError(f"unknown mode {mode!r}")
        try:
            validate_decision(mode, decision, reasons, note)
        except ValueError as err:
            raise ReviewError(str(err)) from err
        spent = None if time_spent_ms is None else max(0, min(int(time_spent_ms), TIME_SPENT_MAX_MS))
        with self._transaction(conn) as conn:
            existing = self._existing(conn, event_uuid, user)
            if existing is not None:
                return existing
            item = conn.execute(
                "SELECT content_hash, active, context FROM items WHERE mode = ? AND item_id = ?", (mode, item_id)
            ).fetchone()
            if item is None:
                raise ReviewError(f"no {mode} item {item_id!r}", 404)
            if item["content_hash"] != content_hash:
                raise ReviewError(f"{item_id}: the item changed since it was shown (content hash differs)", 409)
            assigned = conn.execute(
                "SELECT id, released FROM assignments WHERE mode = ? AND item_id = ? AND content_hash = ?"
                " AND reviewer_id = ?",
                (mode, item_id, content_hash, user.id),
            ).fetchone()
            if assigned is None:
                raise ReviewError(f"{item_id} is not assigned to {user.name}", 403)
            conn.execute("UPDATE assignments SET settled = 1, released = 0 WHERE id = ?", (assigned["id"],))
            if assigned["released"]:  # decided after its lease ran out: it holds the item again
                conn.execute("UPDATE items SET taken = taken + 1 WHERE mode = ? AND item_id = ?", (mode, item_id))
            cursor = conn.execute(
                "INSERT INTO events(event_uuid, kind, reviewer_id, reviewer, ts_utc, mode, item_id, content_hash,"
                " decision, reasons, note, time_spent_ms, context) VALUES (?, 'decision', ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?)",
                (
                    event_uuid,
                    user.id,
                    user.name,
                    utc_now(),
                    mode,
                    item_id,
                    content_hash,
                    decision,
                    json.dumps(reasons),
                    (note or None),
                    spent,
                    item["context"],
                ),
            )
            return EventResult(int(cursor.lastrowid or 0), False, item_id, mode)

    def undo_last(
        self, user: User, *, event_uuid: str, mode: str, conn: sqlite3.Connection | None = None
    ) -> EventResult:
        """Append an undo of the reviewer's latest live decision in ``mode`` (``undoes`` names it)."""
        _check_uuid(event_uuid)
        if mode not in MODES:
            raise ReviewError(f"unknown mode {mode!r}")
        with self._transaction(conn) as conn:
            existing = self._existing(conn, event_uuid, user)
            if existing is not None:
                return existing
            target = conn.execute(
                "SELECT id, item_id, content_hash FROM live_decisions WHERE reviewer_id = ? AND mode = ?"
                " ORDER BY id DESC LIMIT 1",
                (user.id, mode),
            ).fetchone()
            if target is None:
                raise ReviewError("nothing to undo", 409)
            cursor = conn.execute(
                "INSERT INTO events(event_uuid, kind, reviewer_id, reviewer, ts_utc, mode, item_id, content_hash,"
                " undoes) VALUES (?, 'undo', ?, ?, ?, ?, ?, ?, ?)",
                (
                    event_uuid,
                    user.id,
                    user.name,
                    utc_now(),
                    mode,
                    target["item_id"],
                    target["content_hash"],
                    target["id"],
                ),
            )
            still = conn.execute(
                "SELECT 1 FROM live_decisions WHERE reviewer_id = ? AND mode = ? AND item_id = ? AND content_hash = ?",
                (user.id, mode, target["item_id"], target["content_hash"]),
            ).fetchone()
            if still is None:  # the item is undecided again for this reviewer
                conn.execute(
                    "UPDATE assignments SET settled = 0 WHERE reviewer_id = ? AND mode = ? AND item_id = ?"
                    " AND content_hash = ?",
                    (user.id, mode, target["item_id"], target["content_hash"]),
                )
            return EventResult(int(cursor.lastrowid or 0), False, target["item_id"], mode, int(target["id"]))

    def label_of(
        self, user: User, mode: str, item_id: str, conn: sqlite3.Connection | None = None
    ) -> dict[str, Any] | None:
        """The reviewer's current label of an item (None when undecided or undone)."""
        with self._reading(conn) as conn:
            row = conn.execute(
                "SELECT * FROM current_labels WHERE reviewer_id = ? AND mode = ? AND item_id = ?",
                (user.id, mode, item_id),
            ).fetchone()
        return label_dict(row) if row is not None else None

    def events(self, mode: str | None = None, item_id: str | None = None) -> list[dict[str, Any]]:
        """The audit log (oldest first), optionally for one mode / item."""
        query, args = "SELECT * FROM events WHERE 1=1", []
        if mode is not None:
            query, args = query + " AND mode = ?", [*args, mode]
        if item_id is not None:
            query, args = query + " AND item_id = ?", [*args, item_id]
        with self.connect() as conn:
            rows = conn.execute(query + " ORDER BY id", args).fetchall()
        return [{**dict(r), "reasons": json.loads(r["reasons"]), "context": json.loads(r["context"])} for r in rows]

    def current_labels(self, mode: str) -> list[dict[str, Any]]:
        """Every reviewer's current label in ``mode`` (on active items' current content)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT c.* FROM current_labels c JOIN items i ON i.mode = c.mode AND i.item_id = c.item_id"
                " WHERE c.mode = ? AND i.active = 1 ORDER BY c.id",
                (mode,),
            ).fetchall()
        return [label_dict(r) for r in rows]

    def gold(self, mode: str) -> dict[str, dict[str, Any]]:
        """Gold answers of ``mode``: item id -> {answer, reasons}."""
        with self.connect() as conn:
            rows = conn.execute("SELECT item_id, answer, reasons FROM gold WHERE mode = ?", (mode,)).fetchall()
        return {r["item_id"]: {"answer": r["answer"], "reasons": json.loads(r["reasons"])} for r in rows}


def label_dict(row: sqlite3.Row) -> dict[str, Any]:
    """A current-label row as a plain dict."""
    return {
        "event_id": row["id"],
        "reviewer_id": row["reviewer_id"],
        "reviewer": row["reviewer"],
        "item_id": row["item_id"],
        "mode": row["mode"],
        "content_hash": row["content_hash"],
        "decision": row["decision"],
        "reasons": json.loads(row["reasons"]),
        "note": row["note"],
        "ts_utc": row["ts_utc"],
        "time_spent_ms": row["time_spent_ms"],
        "context": json.loads(row["context"]),
    }


_UUID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def _check_uuid(event_uuid: str) -> None:
    if not isinstance(event_uuid, str) or not _UUID_RE.match(event_uuid):
        raise ReviewError("event_uuid must be 8-64 characters of letters, digits, '-' or '_'")
