"""Review store: append-only events, undo, derived labels, re-import safety, assignment, agreement, export."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from libragen.core.video import write_video
from libragen.curate.schema import CURATED_SCHEMA
from libragen.eval.gsb import export_side_by_side
from libragen.pairs.source import load_clips
from libragen.review.assign import queue, top_up
from libragen.review.cli import review_app
from libragen.review.config import ReviewConfig
from libragen.review.demo import write_curated_from_world
from libragen.review.export import clip_labels, export_clips, export_gsb, export_pairs
from libragen.review.importer import import_curated, import_gold, import_gsb, import_pairs
from libragen.review.loadtest import write_synthetic_curated
from libragen.review.stats import cohen_kappa, review_stats
from libragen.review.store import ReviewError, Store, User
from libragen.world.config import WorldConfig
from libragen.world.generate import make_world

NO_GOLD = ReviewConfig(gold_every=0, overlap=0.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("review_world")
    make_world(WorldConfig(defect_rate=0.3), 16, root, seed=11)
    write_curated_from_world(root)
    return root


def _store(tmp_path: Path, curated: Path, config: ReviewConfig = NO_GOLD) -> tuple[Store, User]:
    store = Store(tmp_path / "review.db")
    import_curated(store, curated, config)
    store.add_user("ann")
    return store, store.users()[0]


def _next(store: Store, user: User, config: ReviewConfig = NO_GOLD, mode: str = "clip") -> dict:
    with store.write() as conn:
        top_up(conn, user.id, mode, config)
        return queue(conn, user.id, mode, 0)[0]


def _decide(store: Store, user: User, item: dict, decision: str, uuid: str, **kw) -> int:
    result = store.record_decision(
        user,
        event_uuid=uuid,
        mode=kw.pop("mode", "clip"),
        item_id=item["item_id"],
        content_hash=item["content_hash"],
        decision=decision,
        **kw,
    )
    return result.event_id


def test_events_are_append_only_and_retries_are_recorded_once(tmp_path: Path, world: Path) -> None:
    store, ann = _store(tmp_path, world / "curated.parquet")
    item = _next(store, ann)
    first = store.record_decision(
        ann,
        event_uuid="uuid-0001",
        mode="clip",
        item_id=item["item_id"],
        content_hash=item["content_hash"],
        decision="accept",
        time_spent_ms=1234,
    )
    again = store.record_decision(
        ann,
        event_uuid="uuid-0001",
        mode="clip",
        item_id=item["item_id"],
        content_hash=item["content_hash"],
        decision="accept",
    )
    assert not first.duplicate and again.duplicate and again.event_id == first.event_id
    events = store.events("clip")
    assert len(events) == 1
    event = events[0]
    assert (event["reviewer"], event["item_id"], event["content_hash"], event["decision"]) == (
        "ann",
        item["item_id"],
        item["content_hash"],
        "accept",
    )
    assert event["time_spent_ms"] == 1234 and event["ts_utc"].endswith("Z")
    with store.connect() as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE events SET decision = 'reject'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM events")
    bob = User(999, "bob", False)
    with pytest.raises(ReviewError):
        store.record_decision(
            bob,
            event_uuid="uuid-0001",
            mode="clip",
            item_id=item["item_id"],
            content_hash=item["content_hash"],
            decision="accept",
        )


def test_undo_takes_back_the_latest_decision_and_labels_are_derived(tmp_path: Path, world: Path) -> None:
    store, ann = _store(tmp_path, world / "curated.parquet")
    item = _next(store, ann)
    _decide(store, ann, item, "accept", "uuid-aaaa")
    _decide(store, ann, item, "reject", "uuid-bbbb", reasons=["blur", "cut"])
    assert store.label_of(ann, "clip", item["item_id"])["decision"] == "reject"
    undo = store.undo_last(ann, event_uuid="uuid-undo1", mode="clip")
    assert undo.undoes == store.events()[1]["id"]
    assert store.label_of(ann, "clip", item["item_id"])["decision"] == "accept"  # the earlier decision shows again
    assert store.undo_last(ann, event_uuid="uuid-undo1", mode="clip").duplicate  # a retried undo is not a second one
    store.undo_last(ann, event_uuid="uuid-undo2", mode="clip")
    assert store.label_of(ann, "clip", item["item_id"]) is None
    assert _next(store, ann)["item_id"] == item["item_id"]  # undecided again: back at the head of the queue
    with pytest.raises(ReviewError, match="nothing to undo"):
        store.undo_last(ann, event_uuid="uuid-undo3", mode="clip")
    kinds = [e["kind"] for e in store.events()]
    assert kinds == ["decision", "decision", "undo", "undo"]


@pytest.mark.parametrize(
    ("decision", "reasons", "note", "message"),
    [
        ("reject", [], None, "at least one reason"),
        ("reject", ["other"], None, "needs a note"),
        ("reject", ["smudge"], None, "unknown reason"),
        ("accept", ["blur"], None, "only go with a reject"),
        ("maybe", [], None, "decision must be one of"),
    ],
)
def test_malformed_decisions_are_refused(
    tmp_path: Path, world: Path, decision: str, reasons: list[str], note: str | None, message: str
) -> None:
    store, ann = _store(tmp_path, world / "curated.parquet")
    item = _next(store, ann)
    with pytest.raises(ReviewError, match=message):
        _decide(store, ann, item, decision, "uuid-bad1", reasons=reasons, note=note)
    assert store.events() == []


def test_decisions_need_an_assignment_and_the_current_content(tmp_path: Path, world: Path) -> None:
    store, ann = _store(tmp_path, world / "curated.parquet")
    item = _next(store, ann)
    with pytest.raises(ReviewError) as stale:
        _decide(store, ann, {**item, "content_hash": "0" * 64}, "accept", "uuid-stale")
    assert stale.value.status == 409
    with store.connect() as conn:
        other = conn.execute(
            "SELECT item_id, content_hash FROM items WHERE item_id != ? LIMIT 1", (item["item_id"],)
        ).fetchone()
    with pytest.raises(ReviewError) as unassigned:
        _decide(store, ann, dict(other), "accept", "uuid-unassigned")
    assert unassigned.value.status == 403


def test_reimport_after_new_curation_keeps_every_human_decision(tmp_path: Path, world: Path) -> None:
    store, ann = _store(tmp_path, world / "curated.parquet")
    config = NO_GOLD.model_copy(update={"lookahead": 4})
    with store.write() as conn:
        top_up(conn, ann.id, "clip", config)
        items = queue(conn, ann.id, "clip", 0)
    for k, item in enumerate(items):
        _decide(
            store,
            ann,
            item,
            "accept" if k % 2 == 0 else "reject",
            f"uuid-r{k:03d}",
            reasons=[] if k % 2 == 0 else ["static"],
        )
    log_before = store.events()
    labels_before = {k: v["human_decision"] for k, v in clip_labels(store).items()}
    # A new curation run: rows in another order, one clip re-encoded (new hash), one now rejected, one new.
    table = pq.read_table(world / "curated.parquet").to_pylist()
    changed, dropped = items[0]["item_id"], items[1]["item_id"]
    rows = []
    for row in reversed(table):
        if row["clip_id"] == changed:
            row["content_hash"] = "f" * 64
        if row["clip_id"] == dropped:
            row["keep"], row["reasons"] = False, ["blur"]
        row["scores"] = list(row["scores"])
        rows.append(row)
    new_row = dict(rows[0], clip_id="brand-new-clip", content_hash="e" * 64, keep=True)
    rows.append(new_row)
    v2 = tmp_path / "v2" / "curated.parquet"
    v2.parent.mkdir()
    (v2.parent / "clips").symlink_to(world / "clips")
    pq.write_table(pa.Table.from_pylist(rows, schema=CURATED_SCHEMA), v2)
    summary = import_curated(store, v2, config)
    assert (summary.added, summary.changed, summary.retired) == (1, 1, 1)
    assert summary.decisions_in_log == len(items)
    assert store.events() == log_before  # the log is untouched
    labels_after = {k: v["human_decision"] for k, v in clip_labels(store).items()}
    assert changed not in labels_after and dropped not in labels_after
    assert labels_after == {k: v for k, v in labels_before.items() if k not in (changed, dropped)}
    with store.write() as conn:  # the re-encoded clip is back in the reviewer's queue
        top_up(conn, ann.id, "clip", config)
        assert changed in {row["item_id"] for row in queue(conn, ann.id, "clip", 0)}
    summary = import_curated(store, world / "curated.parquet", config)  # back to the first run's output
    assert summary.retired == 1 and store.events() == log_before
    assert {k: v["human_decision"] for k, v in clip_labels(store).items()} == labels_before


def test_assignment_gives_distinct_items_with_overlap_and_gold(tmp_path: Path) -> None:
    curated = write_synthetic_curated(tmp_path, 120)
    config = ReviewConfig(overlap=0.2, gold_every=5, lookahead=2)
    store = Store(tmp_path / "review.db")
    import_curated(store, curated, config)
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"item_id": f"load-{i:05d}", "answer": "accept"}) + "\n" for i in range(4)))
    assert import_gold(store, gold) == 4
    for name in ("r1", "r2", "r3"):
        store.add_user(name)
    users = store.users()
    done: dict[str, list[str]] = {u.name: [] for u in users}
    active = list(users)
    step = 0
    while active and step < 1000:  # reviewers take turns until the pool is empty
        user = active[step % len(active)]
        step += 1
        with store.write() as conn:
            top_up(conn, user.id, "clip", config)
            pending = queue(conn, user.id, "clip", 0)
        if not pending:
            active.remove(user)
            continue
        _decide(store, user, pending[0], "accept", f"uuid-{step:05d}")
        done[user.name].append(pending[0]["item_id"])
    with store.connect() as conn:
        draws = dict(conn.execute("SELECT item_id, u FROM items").fetchall())
    gold_ids = {f"load-{i:05d}" for i in range(4)}
    per_item = Counter(item for items in done.values() for item in items)
    assert set(per_item) == set(draws)  # every clip got reviewed
    for item, count in per_item.items():
        expected = 3 if item in gold_ids else (2 if draws[item] < 0.2 else 1)
        assert count == expected, (item, count)
    for items in done.values():
        assert len(items) == len(set(items))
        assert {i for i in items[:15] if i in gold_ids}  # gold shows up early, about every 5th clip
    overlap_share = sum(1 for item, u in draws.items() if u < 0.2 and item not in gold_ids) / (len(draws) - 4)
    assert 0.1 < overlap_share < 0.3
    stats = review_stats(store)["clip"]
    assert stats["agreement"]["items_with_two_or_more"] == sum(1 for c in per_item.values() if c >= 2)
    assert all(r["gold"] == 4 and r["gold_accuracy"] == 1.0 for r in stats["reviewers"])


def test_cohen_kappa_matches_hand_computation() -> None:
    a = ["accept", "accept", "reject", "reject", "accept"]
    b = ["accept", "reject", "reject", "reject", "accept"]
    # p_o = 0.8; p_e = 0.6 * 0.4 + 0.4 * 0.6 = 0.48; kappa = 0.32 / 0.52
    assert cohen_kappa(a, b) == pytest.approx(0.32 / 0.52)
    assert cohen_kappa(a, a) == 1.0
    assert cohen_kappa(["accept", "reject"], ["reject", "accept"]) == pytest.approx(-1.0)
    assert np.isnan(cohen_kappa([], []))


def test_stats_measure_agreement_and_gold_accuracy(tmp_path: Path) -> None:
    curated = write_synthetic_curated(tmp_path, 12)
    config = ReviewConfig(overlap=1.0, gold_every=1, lookahead=12)  # every clip to both, gold first
    store = Store(tmp_path / "review.db")
    import_curated(store, curated, config)
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"clip_id": f"load-{i:05d}", "answer": "reject"}) + "\n" for i in range(4)))
    import_gold(store, gold)
    store.add_user("kim")
    store.add_user("lee")
    kim, lee = store.users()
    verdicts = {}
    for user in (kim, lee):
        with store.write() as conn:
            top_up(conn, user.id, "clip", config)
            items = queue(conn, user.id, "clip", 0)
        for item in items:
            index = int(item["item_id"].split("-")[1])
            reject = index < 4 if user is kim else index < 6  # lee also rejects clips 4 and 5
            verdicts[(user.name, index)] = reject
            _decide(
                store,
                user,
                item,
                "reject" if reject else "accept",
                f"u-{user.name}-{index:05d}",
                reasons=["blur"] if reject else [],
            )
    stats = review_stats(store)["clip"]
    kim_labels = ["reject" if verdicts[("kim", i)] else "accept" for i in range(12)]
    lee_labels = ["reject" if verdicts[("lee", i)] else "accept" for i in range(12)]
    assert stats["agreement"]["kappa"] == pytest.approx(cohen_kappa(kim_labels, lee_labels), abs=1e-4)
    assert stats["agreement"]["pairs"][0]["items"] == 12
    by_name = {r["reviewer"]: r for r in stats["reviewers"]}
    assert by_name["kim"]["gold_accuracy"] == 1.0 and by_name["lee"]["gold_accuracy"] == 1.0
    assert by_name["lee"]["counts"] == {"accept": 6, "reject": 6}


def test_export_is_the_approved_manifest_the_pairs_stage_reads(tmp_path: Path, world: Path) -> None:
    config = NO_GOLD.model_copy(update={"lookahead": 50})
    store, ann = _store(tmp_path, world / "curated.parquet", config)
    with store.write() as conn:
        top_up(conn, ann.id, "clip", config)
        items = queue(conn, ann.id, "clip", 0)
    accepted = set()
    for k, item in enumerate(items):
        if k % 3 == 0:
            _decide(store, ann, item, "reject", f"uuid-e{k:03d}", reasons=["other"], note="odd colours")
        else:
            _decide(store, ann, item, "accept", f"uuid-e{k:03d}")
            accepted.add(item["item_id"])
    out = tmp_path / "elsewhere" / "approved.parquet"
    path, rows = export_clips(store, out)
    table = pq.read_table(path)
    assert rows == len(accepted) and set(table.column("clip_id").to_pylist()) == accepted
    curated = pq.read_table(world / "curated.parquet")
    assert set(CURATED_SCHEMA.names) <= set(table.column_names)
    assert table.schema.field("scores").type == curated.schema.field("scores").type
    assert set(table.column("human_decision").to_pylist()) == {"accept"}
    assert all(r == ["ann"] for r in table.column("human_reviewers").to_pylist())
    clips = load_clips(path)  # what `libragen pairs build --from` does
    assert {c.clip_id for c in clips} == accepted and all(c.video_path.is_file() for c in clips)
    everything, count = export_clips(store, tmp_path / "all.parquet", include_all=True)
    decisions = Counter(pq.read_table(everything).column("human_decision").to_pylist())
    assert count == len(items) and decisions["reject"] == len(items) - len(accepted)
    reasons = pq.read_table(everything).column("human_reasons").to_pylist()
    assert ["other"] in reasons


def test_pair_and_gsb_modes_record_sides_and_reuse_the_gsb_ratio(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for method in ("a", "b"):
        (tmp_path / method).mkdir()
        for k in range(4):
            write_video(tmp_path / method / f"v{k}.mp4", rng.integers(0, 255, (4, 32, 32, 3), np.uint8), 8.0)
    key_path = export_side_by_side(tmp_path / "a", tmp_path / "b", tmp_path / "sbs", seed=3)
    key = {row["item"]: row["left"] for row in map(json.loads, key_path.read_text().splitlines())}
    config = ReviewConfig(gold_every=0, lookahead=10)
    store = Store(tmp_path / "review.db")
    assert import_gsb(store, tmp_path / "sbs", config).queued == 4
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text(
        "".join(
            json.dumps({"pair_id": f"p{k}", "positive": f"a/v{k}.mp4", "negative": f"b/v{k}.mp4", "prompt": "x"}) + "\n"
            for k in range(4)
        )
    )
    assert import_pairs(store, pairs_file, config).queued == 4
    store.add_user("gus")
    gus = store.users()[0]
    with store.write() as conn:
        top_up(conn, gus.id, "gsb", config)
        gsb_items = queue(conn, gus.id, "gsb", 0)
        top_up(conn, gus.id, "pair", config)
        pair_items = queue(conn, gus.id, "pair", 0)
    choices = {}
    for k, item in enumerate(gsb_items):
        choice = ("left", "right", "same", "left")[k]
        choices[item["item_id"].split(":", 1)[1]] = choice
        _decide(store, gus, item, choice, f"uuid-gsb{k}", mode="gsb")
    # by hand: A is preferred when the chosen side is the side A was on
    good = sum(1 for name, c in choices.items() if c != "same" and (c == "left") == (key[name] == "A"))
    bad = sum(1 for name, c in choices.items() if c != "same" and (c == "left") != (key[name] == "A"))
    same = sum(1 for c in choices.values() if c == "same")
    result = review_stats(store)["gsb"]["gsb"][0]
    assert (result["good"], result["same"], result["bad"]) == (good, same, bad)
    assert result["ratio"] == pytest.approx((good - bad) / 4)
    assert all(e["context"]["left"] == key[e["item_id"].split(":", 1)[1]] for e in store.events("gsb"))
    with store.connect() as conn:
        contexts = {
            r[0]: json.loads(r[1]) for r in conn.execute("SELECT item_id, context FROM items WHERE mode = 'pair'")
        }
    for k, item in enumerate(pair_items):
        context = contexts[item["item_id"]]
        positive_side = "left" if context["left"] == "positive" else "right"
        _decide(store, gus, item, positive_side if k < 3 else "same", f"uuid-pair{k}", mode="pair")
    assert review_stats(store)["pair"]["pairs"] == {
        "judgements": 4,
        "positive_better": 3,
        "same": 1,
        "negative_better": 0,
        "confirmed_share": 0.75,
    }
    path, rows = export_pairs(store, tmp_path / "pairs_reviewed.parquet")
    verdicts = pq.read_table(path).column("human_verdict").to_pylist()
    assert rows == 4 and Counter(verdicts) == {"positive_better": 3, "same": 1}
    jsonl, lines = export_gsb(store, tmp_path / "gsb.jsonl")
    assert lines == 4 and json.loads(jsonl.with_name("gsb.summary.json").read_text())[0]["good"] == good


def test_cli_add_user_import_and_export(tmp_path: Path, world: Path) -> None:
    runner = CliRunner()
    db = tmp_path / "review.db"
    result = runner.invoke(review_app, ["add-user", "zoe", "--db", str(db)])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    store = Store(db)
    assert store.authenticate(token).name == "zoe"
    with store.connect() as conn:
        stored = conn.execute("SELECT selector, token_hash FROM users").fetchone()
    assert token.split(".")[1] not in json.dumps(dict(stored))  # only a hash of the secret part is kept
    again = runner.invoke(review_app, ["add-user", "zoe", "--db", str(db)])
    assert again.exit_code != 0
    rotated = runner.invoke(review_app, ["add-user", "zoe", "--rotate", "--db", str(db)])
    assert rotated.exit_code == 0 and store.authenticate(token) is None
    imported = runner.invoke(review_app, ["import", "--from", str(world / "curated.parquet"), "--db", str(db)])
    assert imported.exit_code == 0 and "queued" in imported.stdout
    out = tmp_path / "approved.parquet"
    exported = runner.invoke(review_app, ["export", "--out", str(out), "--db", str(db)])
    assert exported.exit_code == 0 and out.is_file() and "0 rows" in exported.stdout
    stats = runner.invoke(review_app, ["stats", "--db", str(db)])
    assert json.loads(stats.stdout)["clip"]["items"] > 0
