"""Review app in a real browser (Playwright + Debian's Chromium): log in, review with the keyboard, undo, export.

Skipped, with the reason, when the ``playwright`` package or a Chromium binary is missing
(``apt-get install -y chromium``; Playwright's own browser download is not used).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from libragen.core.video import write_video
from libragen.curate.schema import CURATED_SCHEMA
from libragen.eval.gsb import export_side_by_side
from libragen.review.cli import review_app
from libragen.review.demo import write_curated_from_world
from libragen.review.loadtest import free_port, start_server, stop_server
from libragen.review.store import Store
from libragen.world.config import WorldConfig
from libragen.world.generate import make_world

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

CHROMIUM = os.environ.get("LIBRAGEN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set LIBRAGEN_CHROMIUM)", allow_module_level=True
    )

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAYLOAD = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("review_browser")
    world = base / "world"
    make_world(WorldConfig(), 8, world, seed=21)
    curated = write_curated_from_world(world)
    rows = pq.read_table(curated).to_pylist()
    for row in rows:
        row["keep"], row["caption"] = True, f"{row['caption']} {PAYLOAD}"
        row["near_reasons"] = ["blur"]
    pq.write_table(pa.Table.from_pylist(rows, schema=CURATED_SCHEMA), curated)
    config = base / "review.yaml"
    config.write_text("overlap: 0.0\ngold_every: 0\nlookahead: 3\n")
    db = base / "review.db"
    store = Store(db)
    token = store.add_user("eve")
    rng = np.random.default_rng(0)
    for method in ("a", "b"):  # two "methods" for a GSB set and DPO pairs
        (base / method).mkdir()
        for k in range(3):
            write_video(base / method / f"v{k}.mp4", rng.integers(0, 255, (8, 32, 32, 3), np.uint8), 8.0)
    export_side_by_side(base / "a", base / "b", base / "sbs", seed=1)
    pairs = base / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"pair_id": f"p{k}", "positive": f"a/v{k}.mp4", "negative": f"b/v{k}.mp4", "prompt": "a hop"})
            + "\n"
            for k in range(3)
        )
    )
    port = free_port()
    runner = CliRunner()
    assert runner.invoke(review_app, ["import", "--from", str(curated), "--db", str(db)]).exit_code == 0
    assert runner.invoke(review_app, ["import-gsb", str(base / "sbs"), "--db", str(db)]).exit_code == 0
    assert runner.invoke(review_app, ["import-pairs", str(pairs), "--db", str(db)]).exit_code == 0
    server = start_server(db, config, port, base / "server.log")
    try:
        yield {"base": base, "db": db, "token": token, "url": f"http://127.0.0.1:{port}", "store": store}
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_keyboard_review_undo_and_export(served: dict, browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        _review(context.new_page(), served)
    finally:
        context.close()
    _check_log_and_export(served)


def _current(page) -> str:
    return page.get_attribute("#stage", "data-item-id")


def _advance_from(page, item_id: str) -> str:
    page.wait_for_function(
        "(id) => document.getElementById('stage').dataset.itemId !== id", arg=item_id, timeout=10_000
    )
    return _current(page)


def _review(page, served: dict) -> None:
    page.goto(served["url"] + "/review")
    assert page.url.endswith("/login")
    page.fill("#token", "wrong.token")
    page.click("#login")
    assert "not valid" in page.inner_text("#login-error")
    page.fill("#token", served["token"])
    page.click("#login")
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)

    # the clip autoplays and loops; the reference crops and scores are beside it
    assert page.eval_on_selector("#video", "v => v.autoplay && v.loop && v.getAttribute('src')").startswith("/media/")
    page.wait_for_function("() => document.getElementById('video').currentTime > 0", timeout=15_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#refs img')].some((i) => i.complete && i.naturalWidth > 0)",
        timeout=15_000,
    )
    assert "blur" in page.inner_text("#near")
    assert page.locator("#scores tr.near").count() >= 1

    # captions render as text: the payload is visible literally and never runs
    assert PAYLOAD in page.text_content("#caption")
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("#caption script, #caption img").count() == 0

    # the next clip is preloaded
    first = _current(page)
    preload = page.get_attribute("#preload", "src")
    assert preload and preload.startswith("/media/") and first not in preload

    # Space pauses and resumes
    page.keyboard.press("Space")
    assert page.eval_on_selector("#video", "v => v.paused")
    page.keyboard.press("Space")
    page.wait_for_function("() => !document.getElementById('video').paused")

    page.keyboard.press("a")  # accept the first clip
    second = _advance_from(page, first)
    assert second in preload  # the preloaded clip is the one shown next
    page.keyboard.press("3")  # reason 3: blur
    assert "on" in page.get_attribute(".reason[data-code='blur']", "class")
    page.keyboard.press("r")
    third = _advance_from(page, second)
    page.keyboard.press("k")  # back to the rejected clip
    assert _advance_from(page, third) == second
    assert "reject (blur)" in page.inner_text("#status")
    page.keyboard.press("j")
    assert _advance_from(page, second) == third
    page.keyboard.press("a")
    fourth = _advance_from(page, third)
    page.keyboard.press("u")  # undo the last decision: back on the third clip, undecided
    assert _advance_from(page, fourth) == third
    page.wait_for_function("() => document.getElementById('status').textContent === 'undecided'")
    page.keyboard.press("r")  # a reject needs a reason: refused in the page, nothing sent
    assert "Pick at least one reason" in page.inner_text("#message")
    assert _current(page) == third
    page.keyboard.press("0")  # other: the note field takes the focus
    page.keyboard.type("odd shadow <b>bold</b>")
    page.keyboard.press("Enter")
    page.keyboard.press("r")
    _advance_from(page, third)
    served["decided"] = {"accept": [first], "reject": [second, third], "undone": third}


def _check_log_and_export(served: dict) -> None:
    store: Store = served["store"]
    events = store.events("clip")
    summary = [(e["kind"], e["item_id"], e["decision"], e["reasons"], e["note"]) for e in events]
    first, (second, third) = served["decided"]["accept"][0], served["decided"]["reject"]
    assert summary == [
        ("decision", first, "accept", [], None),
        ("decision", second, "reject", ["blur"], None),
        ("decision", third, "accept", [], None),
        ("undo", third, None, [], None),
        ("decision", third, "reject", ["other"], "odd shadow <b>bold</b>"),
    ]
    assert events[3]["undoes"] == events[2]["id"]
    assert all(e["time_spent_ms"] and e["time_spent_ms"] > 0 for e in events if e["kind"] == "decision")
    assert all(e["reviewer"] == "eve" and e["ts_utc"].endswith("Z") for e in events)
    out = served["base"] / "approved.parquet"
    result = CliRunner().invoke(review_app, ["export", "--db", str(served["db"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.column("clip_id").to_pylist() == [first]
    assert table.column("human_decision").to_pylist() == ["accept"]
    assert table.column("human_reviewers").to_pylist() == [["eve"]]


def test_gsb_and_pair_modes_by_keyboard(served: dict, browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(served["url"] + "/login")
        page.fill("#token", served["token"])
        page.click("#login")
        page.wait_for_selector("body[data-ready='1']")
        page.goto(served["url"] + "/review?mode=gsb")
        page.wait_for_selector("body[data-ready='1']")
        first = _current(page)
        assert first.startswith("sbs:") and page.is_hidden("#second")  # one side-by-side video
        page.keyboard.press("ArrowLeft")
        second = _advance_from(page, first)
        page.keyboard.press("2")
        _advance_from(page, second)
        page.goto(served["url"] + "/review?mode=pair")
        page.wait_for_selector("body[data-ready='1']")
        pair = _current(page)
        assert page.is_visible("#video2")  # the two videos of the pair, sides drawn per pair
        left, right = page.get_attribute("#video", "src"), page.get_attribute("#video2", "src")
        assert {left.split("/")[-2], right.split("/")[-2]} == {"a", "b"}
        page.keyboard.press("ArrowRight")
        _advance_from(page, pair)
    finally:
        context.close()
    store: Store = served["store"]
    gsb = [(e["item_id"], e["decision"], e["context"]["left"]) for e in store.events("gsb")]
    assert [(i, d) for i, d, _ in gsb] == [(first, "left"), (second, "same")]
    key = {
        json.loads(line)["item"]: json.loads(line)["left"]
        for line in (served["base"] / "sbs" / "key.jsonl").read_text().splitlines()
    }
    assert all(side == key[item.split(":", 1)[1]] for item, _, side in gsb)  # the recorded key is the real one
    (event,) = store.events("pair")
    right_role = "positive" if right.split("/")[-2] == "a" else "negative"
    assert event["decision"] == "right" and event["context"]["right"] == right_role
