"""Review app security: no anonymous or cross-site writes, no files outside the data roots, inert captions."""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn
from starlette.testclient import TestClient

from libragen.curate.schema import CURATED_SCHEMA
from libragen.review.app import COOKIE, create_app
from libragen.review.config import ReviewConfig
from libragen.review.demo import write_curated_from_world
from libragen.review.importer import import_curated
from libragen.review.loadtest import free_port
from libragen.review.media import MediaRoots
from libragen.review.store import Store
from libragen.world.config import WorldConfig
from libragen.world.generate import make_world

PAYLOAD = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("review_security")
    world = base / "world"
    make_world(WorldConfig(), 6, world, seed=5)
    curated = write_curated_from_world(world)
    rows = pq.read_table(curated).to_pylist()
    for row in rows:
        row["caption"] = f"{row['caption']} {PAYLOAD}"
    pq.write_table(pa.Table.from_pylist(rows, schema=CURATED_SCHEMA), curated)
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"not for reviewers")
    (world / "clips" / "escape.mp4").symlink_to(outside / "secret.mp4")
    (world / "notes.txt").write_text("private")
    store = Store(base / "review.db")
    config = ReviewConfig(gold_every=0)
    import_curated(store, curated, config)
    tokens = {"admin": store.add_user("boss", admin=True), "reviewer": store.add_user("rev")}
    app = create_app(store, config)
    return {"base": base, "world": world, "store": store, "tokens": tokens, "app": app, "rows": rows}


@pytest.fixture
def client(setup: dict) -> Iterator[TestClient]:
    with TestClient(setup["app"]) as c:
        yield c


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _login(client: TestClient, token: str) -> str:
    response = client.post(
        "/login",
        content=f"token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    page = client.get("/review")
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert match
    return match.group(1)


def _decision_body(client: TestClient, headers: dict[str, str], uuid: str) -> dict:
    item = client.get("/api/queue", headers=headers).json()["items"][0]
    return {
        "event_uuid": uuid,
        "mode": "clip",
        "item_id": item["item_id"],
        "content_hash": item["content_hash"],
        "decision": "accept",
    }


def test_nothing_is_readable_or_writable_without_a_valid_token(setup: dict, client: TestClient) -> None:
    store: Store = setup["store"]
    before = len(store.events())
    body = {"event_uuid": "anon-0001", "mode": "clip", "item_id": "x", "content_hash": "y", "decision": "accept"}
    assert client.post("/api/decisions", json=body).status_code == 401
    assert client.post("/api/undo", json={"event_uuid": "anon-0002", "mode": "clip"}).status_code == 401
    assert client.post("/api/decisions", json=body, headers=_bearer("bad.token")).status_code == 401
    forged = setup["tokens"]["reviewer"].split(".")[0] + ".wrong-verifier"
    assert client.post("/api/decisions", json=body, headers=_bearer(forged)).status_code == 401
    assert client.get("/api/queue").status_code == 401
    assert client.get("/media/0/clips/escape.mp4").status_code == 401
    assert client.get("/review", follow_redirects=False).headers["location"] == "/login"
    wrong = client.post(
        "/login", content="token=nope.nope", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    assert len(store.events()) == before
    with store.connect() as conn:
        hashes = [r[0] for r in conn.execute("SELECT token_hash FROM users")]
    for token in setup["tokens"].values():
        assert all(token.split(".")[1] not in h for h in hashes)  # tokens are stored hashed


def test_cookie_writes_need_the_csrf_header_and_json(setup: dict, client: TestClient) -> None:
    csrf = _login(client, setup["tokens"]["reviewer"])
    body = _decision_body(client, {}, "csrf-0001")
    assert client.post("/api/decisions", json=body).status_code == 403  # a cross-site form cannot add the header
    assert client.post("/api/decisions", json=body, headers={"X-CSRF-Token": "guess"}).status_code == 403
    form = client.post(
        "/api/decisions",
        content="event_uuid=csrf-0001",
        headers={"X-CSRF-Token": csrf, "Content-Type": "text/plain"},
    )
    assert form.status_code == 415
    ok = client.post("/api/decisions", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json()["status"] == "recorded"
    assert client.post("/api/undo", json={"event_uuid": "csrf-0002", "mode": "clip"}).status_code == 403
    assert client.post("/api/logout", json={}, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/api/queue").status_code == 401  # the session is gone


def test_admin_pages_are_for_admins(setup: dict, client: TestClient) -> None:
    assert client.get("/stats", headers=_bearer(setup["tokens"]["reviewer"])).status_code == 403
    page = client.get("/stats", headers=_bearer(setup["tokens"]["admin"]))
    assert page.status_code == 200 and "Cohen" in page.text


def test_captions_are_escaped_in_pages_and_json(setup: dict, client: TestClient) -> None:
    admin = _bearer(setup["tokens"]["admin"])
    clip_id = setup["rows"][0]["clip_id"]
    page = client.get("/audit", params={"mode": "clip", "item": clip_id}, headers=admin)
    assert page.status_code == 200
    assert "<script>window.__xss" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page.text
    review = client.get("/review", headers=admin)
    csp = review.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert review.headers["x-content-type-options"] == "nosniff"
    queue = client.get("/api/queue", headers=admin)
    assert queue.headers["content-type"].startswith("application/json")
    assert PAYLOAD in queue.json()["items"][0]["caption"]  # data stays data; the page sets it as text


@pytest.mark.parametrize(
    "url",
    [
        "/media/0/%2e%2e/notes.txt",
        "/media/0/clips/%2e%2e/%2e%2e/outside/secret.mp4",
        "/media/0/..%2f..%2foutside%2fsecret.mp4",
        "/media/0/%2fetc%2fpasswd",
        "/media/0//etc/passwd",
        "/media/0/clips/escape.mp4",  # a symlink inside the root that points outside it
        "/media/0/notes.txt",  # inside the root, but not a video
        "/media/0/curated.parquet",
        "/media/7/clips/x.mp4",
        "/media/0/clips/missing.mp4",
    ],
)
def test_media_outside_the_data_roots_is_refused(setup: dict, client: TestClient, url: str) -> None:
    response = client.get(url, headers=_bearer(setup["tokens"]["reviewer"]))
    assert response.status_code == 404
    assert b"not for reviewers" not in response.content and b"private" not in response.content


def test_media_inside_the_roots_is_served_with_ranges(setup: dict, client: TestClient) -> None:
    headers = _bearer(setup["tokens"]["reviewer"])
    url = client.get("/api/queue", headers=headers).json()["items"][0]["videos"][0]
    assert url.startswith("/media/0/clips/")
    full = client.get(url, headers=headers)
    assert full.status_code == 200 and full.headers["content-type"] == "video/mp4" and len(full.content) > 100
    part = client.get(url, headers={**headers, "Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == full.content[:100]
    ref = client.get(client.get("/api/queue", headers=headers).json()["items"][0]["refs"][0], headers=headers)
    assert ref.status_code == 200 and ref.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_media_roots_resolve_unit(setup: dict, tmp_path: Path) -> None:
    roots = MediaRoots([setup["world"]])
    clip = next((setup["world"] / "clips").glob("lw-*.mp4"))
    assert roots.resolve(0, f"clips/{clip.name}") == clip.resolve()
    for bad in ("../outside/secret.mp4", "/etc/passwd", "clips/escape.mp4", "clips/../../outside/secret.mp4", ""):
        assert roots.resolve(0, bad) is None
    assert roots.url_for(setup["base"] / "outside" / "secret.mp4") is None


def test_raw_traversal_over_real_http_is_refused(setup: dict) -> None:
    """Send un-normalised paths over a real socket (HTTP clients would clean up '..' before sending)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(setup["app"], host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        token = setup["tokens"]["reviewer"]
        for path in (
            "/media/0/../outside/secret.mp4",
            "/media/0/clips/../../outside/secret.mp4",
            "/media/0/../../../../etc/passwd",
            "/media/0/clips/escape.mp4",
        ):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            body = response.read()
            conn.close()
            assert response.status == 404, path
            assert b"not for reviewers" not in body and b"root:" not in body
    finally:
        server.should_exit = True
        thread.join(timeout=10)
