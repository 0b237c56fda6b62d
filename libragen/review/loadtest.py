"""Loopback load test of the review server: N concurrent reviewers x M decisions, then audit the database.

Used by ``tests/test_review_load.py`` and ``benchmarks/review_load.py``. It starts ``libragen review serve``
as a child process on 127.0.0.1 (never any other address), drives it with one keep-alive HTTP connection
per reviewer thread, re-sends every ``retry_every``-th decision with the same ``event_uuid`` (a client
retry), stops the server, and then counts, straight from SQLite, that every acknowledged decision is
stored exactly once. Every request has a timeout and the whole run a deadline, so it always ends.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from libragen.curate.schema import CURATED_SCHEMA
from libragen.review.config import ReviewConfig
from libragen.review.importer import import_curated, import_gold
from libragen.review.store import Store

HOST = "127.0.0.1"


@dataclass
class LoadResult:
    """What a load run measured and what the database audit found."""

    reviewers: int
    decisions_per_reviewer: int
    items: int
    decisions_sent: int = 0
    retries_sent: int = 0
    acknowledged: int = 0
    duplicate_acks: int = 0
    errors: list[str] = field(default_factory=list)
    decision_events_in_db: int = 0
    distinct_uuids_in_db: int = 0
    lost: int = 0
    duplicated: int = 0
    reviewer_item_repeats: int = 0
    over_assigned_items: int = 0
    wall_s: float = 0.0
    decisions_per_s: float = 0.0
    latency_ms_p50: float = 0.0
    latency_ms_p95: float = 0.0
    latency_ms_max: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


def free_port() -> int:
    """A TCP port on the loopback address that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def write_synthetic_curated(folder: Path, n: int) -> Path:
    """A ``curated.parquet`` of ``n`` kept clips with made-up paths (the load test never fetches video)."""
    rows = []
    for i in range(n):
        clip_id = f"load-{i:05d}"
        rows.append(
            {
                "clip_id": clip_id,
                "path": f"clips/{clip_id}.mp4",
                "source_path": f"raw/{clip_id}.mp4",
                "start_frame": 0,
                "end_frame": 16,
                "content_hash": hashlib.sha256(clip_id.encode()).hexdigest(),
                "keep": True,
                "reasons": [],
                "near_reasons": ["blur"] if i % 7 == 0 else [],
                "scores": [("sharpness", (i % 100) / 100.0), ("motion", 0.5)],
                "quality_score": 0.5,
                "width": 64,
                "height": 64,
                "fps": 8.0,
                "num_frames": 16,
                "caption": f"Ref 1[a test creature] hops to the left (clip {i}).",
                "subjects": [],
                "config_hash": "load",
                "code_version": "load",
            }
        )
    path = folder / "curated.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=CURATED_SCHEMA), path)
    return path


def start_server(db: Path, config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m libragen.review.cli serve`` on 127.0.0.1:port; return once /healthz answers."""
    handle = log.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "libragen.review.cli",
            "serve",
            "--db",
            str(db),
            "--config",
            str(config),
            "--host",
            HOST,
            "--port",
            str(port),
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"review server exited early: {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return process
        except OSError:
            time.sleep(0.2)
    stop_server(process)
    raise RuntimeError("review server did not start within 60 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started by :func:`start_server` (terminate, then kill after 10 s)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class _Client:
    """One reviewer's keep-alive connection; a dropped connection is reopened and the request re-sent."""

    def __init__(self, port: int, token: str, deadline: float) -> None:
        self.port, self.token, self.deadline = port, token, deadline
        self.conn = http.client.HTTPConnection(HOST, port, timeout=30)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        payload = None if body is None else json.dumps(body)
        for attempt in range(3):
            if time.monotonic() > self.deadline:
                raise TimeoutError("load test deadline passed")
            try:
                self.conn.request(method, path, body=payload, headers=headers)
                response = self.conn.getresponse()
                return response.status, json.loads(response.read() or b"{}")
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _reviewer(
    client: _Client,
    decisions: int,
    retry_every: int,
    sent: list[str],
    acked: dict[str, int],
    latencies: list[float],
    stats: Counter[str],
    errors: list[str],
) -> None:
    try:
        status, data = client.call("GET", "/api/queue?mode=clip")
        if status != 200:
            errors.append(f"queue: HTTP {status} {data}")
            return
        pending = [item for item in data["items"] if item["label"] is None]
        for k in range(decisions):
            if not pending:
                errors.append(f"queue ran dry after {k} decisions")
                return
            item = pending[0]
            reject = k % 3 == 0
            body = {
                "event_uuid": uuid.uuid4().hex,
                "mode": "clip",
                "item_id": item["item_id"],
                "content_hash": item["content_hash"],
                "decision": "reject" if reject else "accept",
                "reasons": ["blur"] if reject else [],
                "time_spent_ms": 1500,
            }
            sent.append(body["event_uuid"])
            started = time.perf_counter()
            status, result = client.call("POST", "/api/decisions", body)
            latencies.append((time.perf_counter() - started) * 1000)
            stats["sent"] += 1
            if status != 200 or result.get("status") != "recorded":
                errors.append(f"decision {body['event_uuid']}: HTTP {status} {result}")
                return
            acked[body["event_uuid"]] = result["event_id"]
            if retry_every and k % retry_every == 0:
                stats["retries"] += 1
                status, again = client.call("POST", "/api/decisions", body)
                if status != 200 or again.get("status") != "duplicate" or again.get("event_id") != result["event_id"]:
                    errors.append(f"retry of {body['event_uuid']}: HTTP {status} {again}")
                    return
                stats["duplicate_acks"] += 1
            pending = result["pending"]
    except Exception as err:  # report, never hang the run
        errors.append(f"{type(err).__name__}: {err}")


def run_load(
    workdir: str | os.PathLike[str],
    *,
    reviewers: int = 8,
    decisions: int = 250,
    overlap: float = 0.10,
    gold_items: int = 10,
    gold_every: int = 20,
    retry_every: int = 25,
    deadline_s: float = 240.0,
) -> LoadResult:
    """Run the load test in ``workdir`` (database, config, server log go there) and audit the result."""
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    n_items = int(reviewers * decisions * 1.25) + gold_items
    curated = write_synthetic_curated(root, n_items)
    config_path = root / "review.yaml"
    config_path.write_text(yaml.safe_dump({"overlap": overlap, "gold_every": gold_every, "lookahead": 3}))
    config = ReviewConfig(overlap=overlap, gold_every=gold_every, lookahead=3)
    db = root / "review.db"
    store = Store(db)
    import_curated(store, curated, config)
    gold_path = root / "gold.jsonl"
    gold_path.write_text(
        "".join(json.dumps({"item_id": f"load-{i:05d}", "answer": "accept"}) + "\n" for i in range(gold_items))
    )
    import_gold(store, gold_path)
    tokens = [store.add_user(f"reviewer{k}") for k in range(reviewers)]
    result = LoadResult(reviewers=reviewers, decisions_per_reviewer=decisions, items=n_items)
    port = free_port()
    server = start_server(db, config_path, port, root / "server.log")
    sent: list[list[str]] = [[] for _ in range(reviewers)]
    acked: dict[str, int] = {}
    latencies: list[float] = []
    stats: Counter[str] = Counter()
    errors: list[str] = []
    deadline = time.monotonic() + deadline_s
    try:
        threads = [
            threading.Thread(
                target=_reviewer,
                args=(
                    _Client(port, tokens[k], deadline),
                    decisions,
                    retry_every,
                    sent[k],
                    acked,
                    latencies,
                    stats,
                    errors,
                ),
                daemon=True,
            )
            for k in range(reviewers)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic()))
        result.wall_s = round(time.perf_counter() - started, 2)
        if any(thread.is_alive() for thread in threads):
            errors.append("reviewer threads still running at the deadline")
    finally:
        stop_server(server)
    all_sent = [u for per in sent for u in per]
    result.decisions_sent = stats["sent"]
    result.retries_sent = stats["retries"]
    result.acknowledged = len(acked)
    result.duplicate_acks = stats["duplicate_acks"]
    result.errors = errors
    _audit(db, all_sent, acked, overlap, result)
    if latencies:
        ordered = sorted(latencies)
        result.latency_ms_p50 = round(statistics.median(ordered), 1)
        result.latency_ms_p95 = round(ordered[int(0.95 * (len(ordered) - 1))], 1)
        result.latency_ms_max = round(ordered[-1], 1)
    result.decisions_per_s = round(result.acknowledged / result.wall_s, 1) if result.wall_s else 0.0
    return result


def _audit(db: Path, sent: list[str], acked: dict[str, int], overlap: float, result: LoadResult) -> None:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT id, event_uuid, reviewer_id, item_id FROM events WHERE kind = 'decision'"
        ).fetchall()
        gold = {r[0] for r in conn.execute("SELECT item_id FROM gold WHERE mode = 'clip'")}
        draws = dict(conn.execute("SELECT item_id, u FROM items WHERE mode = 'clip'").fetchall())
    finally:
        conn.close()
    by_uuid = Counter(r[1] for r in rows)
    stored = {r[1]: r[0] for r in rows}
    result.decision_events_in_db = len(rows)
    result.distinct_uuids_in_db = len(by_uuid)
    result.lost = sum(1 for u, event_id in acked.items() if stored.get(u) != event_id)
    result.duplicated = sum(count - 1 for count in by_uuid.values()) + len(set(stored) - set(sent))
    result.reviewer_item_repeats = sum(c - 1 for c in Counter((r[2], r[3]) for r in rows).values())
    reviewers_per_item = Counter(r[3] for r in rows)
    result.over_assigned_items = sum(
        1
        for item, count in reviewers_per_item.items()
        if item not in gold and count > (2 if draws[item] < overlap else 1)
    )
