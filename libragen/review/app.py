"""The review web app (FastAPI): login, the keyboard-driven review page, the JSON API, media, stats, audit.

Authentication: a reviewer logs in once with the token ``libragen review add-user`` printed; the browser
then holds an HttpOnly, SameSite=Strict session cookie, and every write it makes must also carry the
session's CSRF token in an ``X-CSRF-Token`` header (a cross-site form cannot set headers). Scripts may
send ``Authorization: Bearer <token>`` instead. Nothing is readable or writable anonymously.

Pages are Jinja templates with autoescaping, and the page script puts every caption and name into the
DOM as text (never as HTML); a Content-Security-Policy allows scripts only from this server.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the Depends(...) annotations that
# name functions local to create_app.
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from pydantic import BaseModel, Field

from libragen.review.assign import apply_overlap, queue, top_up
from libragen.review.config import ReviewConfig
from libragen.review.importer import import_roots
from libragen.review.media import MediaRoots, RefCache
from libragen.review.reasons import CLIP_REASONS, MODES
from libragen.review.stats import review_stats
from libragen.review.store import ReviewError, Store, User, label_dict

HERE = Path(__file__).parent
COOKIE = "libragen_review"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class Auth:
    """Who is calling and how: ``bearer`` (token header) or ``cookie`` (browser session with a CSRF token)."""

    user: User
    via: str
    csrf: str | None


class DecisionIn(BaseModel):
    """A decision as the page (or a script) posts it."""

    event_uuid: str = Field(min_length=8, max_length=64)
    mode: str
    item_id: str = Field(min_length=1, max_length=512)
    content_hash: str = Field(min_length=1, max_length=128)
    decision: str
    reasons: list[str] = Field(default_factory=list, max_length=20)
    note: str | None = Field(None, max_length=500)
    time_spent_ms: int | None = Field(None, ge=0)


class UndoIn(BaseModel):
    """An undo of the caller's latest decision in a mode."""

    event_uuid: str = Field(min_length=8, max_length=64)
    mode: str


def create_app(store: Store, config: ReviewConfig) -> FastAPI:
    """The ASGI app over one review database."""
    fixed_roots = MediaRoots(list(config.data_roots)) if config.data_roots else None

    def media_roots() -> MediaRoots:
        """The configured data roots, or else the folders imports came from (new imports count at once)."""
        return fixed_roots or MediaRoots(import_roots(store))

    with store.write() as conn:
        apply_overlap(conn, config.overlap)
    refs = RefCache(config.ref_size)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    app = FastAPI(title="LibraGen review", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.state.store, app.state.config = store, config

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if request.url.path.startswith(("/api/", "/login", "/review", "/stats", "/audit")):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(ReviewError)
    async def review_error(request: Request, err: ReviewError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status)

    def authenticate(request: Request) -> Auth | None:
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            user = store.authenticate(header[7:])
            return Auth(user, "bearer", None) if user else None
        session = store.session(request.cookies.get(COOKIE, ""))
        return Auth(session.user, "cookie", session.csrf) if session else None

    def reader(request: Request) -> Auth:
        auth = authenticate(request)
        if auth is None:
            raise HTTPException(401, "login required")
        return auth

    def writer(request: Request) -> Auth:
        auth = reader(request)
        if auth.via == "cookie":
            sent = request.headers.get("x-csrf-token", "")
            if not hmac.compare_digest(sent.encode(), (auth.csrf or "").encode()):
                raise HTTPException(403, "missing or wrong CSRF token")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "writes must be application/json")
        return auth

    def admin(auth: Annotated[Auth, Depends(reader)]) -> Auth:
        if not auth.user.is_admin:
            raise HTTPException(403, "admins only")
        return auth

    def check_mode(mode: str) -> str:
        if mode not in MODES:
            raise HTTPException(400, f"mode must be one of {MODES}")
        return mode

    def client_item(row: dict[str, Any], mode: str, label: dict[str, Any] | None, roots: MediaRoots) -> dict[str, Any]:
        media, view = json.loads(row["media"]), json.loads(row["view"])
        urls = [roots.url_for(path) for path in media]
        item: dict[str, Any] = {
            "mode": mode,
            "item_id": row["item_id"],
            "content_hash": row["content_hash"],
            "videos": urls,
            "caption": view.get("caption"),
            "label": None if label is None else {k: label[k] for k in ("decision", "reasons", "note", "event_id")},
        }
        if mode == "clip":
            item.update(
                scores=view.get("scores") or {},
                near_reasons=view.get("near_reasons") or [],
                near_scores=view.get("near_scores") or [],
                auto_reasons=view.get("auto_reasons") or [],
                quality_score=view.get("quality_score"),
                refs=[
                    f"/refs/{k}?item={quote(row['item_id'])}"
                    for k, subject in enumerate(view.get("subjects") or [])
                    if subject.get("boxes")
                ],
            )
        return item

    def my_labels(user: User, mode: str) -> dict[str, dict[str, Any]]:
        with store.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM current_labels WHERE reviewer_id = ? AND mode = ?", (user.id, mode)
            ).fetchall()
        return {r["item_id"]: label_dict(r) for r in rows}

    # ---- pages ----------------------------------------------------------------------------------------

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/", response_class=RedirectResponse)
    def root() -> RedirectResponse:
        return RedirectResponse("/review", status_code=303)

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> HTMLResponse:
        return page("login.html", error=None)

    @app.post("/login")
    async def login(request: Request) -> Response:
        body = (await request.body())[:4096].decode("utf-8", "replace")
        token = (parse_qs(body).get("token") or [""])[0]
        user = store.authenticate(token)
        if user is None:
            return page("login.html", status=401, error="That token is not valid.")
        secret, _ = store.open_session(user, config.session_hours)
        response = RedirectResponse("/review", status_code=303)
        response.set_cookie(
            COOKIE,
            secret,
            max_age=int(config.session_hours * 3600),
            httponly=True,
            samesite="strict",
            secure=config.secure_cookies,
            path="/",
        )
        return response

    @app.post("/api/logout")
    def logout(request: Request, auth: Annotated[Auth, Depends(writer)]) -> Response:
        store.close_session(request.cookies.get(COOKIE, ""))
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/review", response_class=HTMLResponse)
    def review_page(request: Request, mode: str = "clip") -> Response:
        auth = authenticate(request)
        if auth is None:
            return RedirectResponse("/login", status_code=303)
        check_mode(mode)
        return page(
            "review.html",
            user=auth.user,
            mode=mode,
            modes=MODES,
            csrf=auth.csrf or "",
            reasons=[(str((k + 1) % 10), code, text) for k, (code, text) in enumerate(CLIP_REASONS)],
        )

    @app.get("/stats", response_class=HTMLResponse)
    def stats_page(auth: Annotated[Auth, Depends(admin)]) -> HTMLResponse:
        return page("stats.html", user=auth.user, stats=review_stats(store), modes=MODES)

    @app.get("/audit", response_class=HTMLResponse)
    def audit_page(
        auth: Annotated[Auth, Depends(admin)], mode: str = "clip", item: Annotated[str, Query(max_length=512)] = ""
    ) -> HTMLResponse:
        check_mode(mode)
        with store.connect() as conn:
            row = conn.execute("SELECT * FROM items WHERE mode = ? AND item_id = ?", (mode, item)).fetchone()
        if row is None:
            raise HTTPException(404, "no such item")
        events = store.events(mode, item)
        return page(
            "audit.html", user=auth.user, mode=mode, item=dict(row), view=json.loads(row["view"]), events=events
        )

    # ---- JSON API ---------------------------------------------------------------------------------------

    @app.get("/api/queue")
    def api_queue(auth: Annotated[Auth, Depends(reader)], mode: str = "clip") -> dict[str, Any]:
        check_mode(mode)
        with store.write() as conn:
            top_up(conn, auth.user.id, mode, config)
            rows = queue(conn, auth.user.id, mode, config.history)
        labels = my_labels(auth.user, mode)
        roots = media_roots()
        items = [client_item(row, mode, labels.get(row["item_id"]), roots) for row in rows]
        start = next((k for k, item in enumerate(items) if item["label"] is None), max(0, len(items) - 1))
        return {"mode": mode, "user": auth.user.name, "items": items, "start": start}

    def label_out(label: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if label is None else {k: label[k] for k in ("decision", "reasons", "note", "event_id")}

    @app.post("/api/decisions")
    def api_decide(body: DecisionIn, auth: Annotated[Auth, Depends(writer)]) -> dict[str, Any]:
        check_mode(body.mode)
        with store.write() as conn:  # one transaction: the event, then the reviewer's next assignments
            result = store.record_decision(
                auth.user,
                event_uuid=body.event_uuid,
                mode=body.mode,
                item_id=body.item_id,
                content_hash=body.content_hash,
                decision=body.decision,
                reasons=body.reasons,
                note=body.note,
                time_spent_ms=body.time_spent_ms,
                conn=conn,
            )
            label = store.label_of(auth.user, body.mode, body.item_id, conn=conn)
            top_up(conn, auth.user.id, body.mode, config)
            pending = queue(conn, auth.user.id, body.mode, 0)
        roots = media_roots()
        return {
            "status": "duplicate" if result.duplicate else "recorded",
            "event_id": result.event_id,
            "label": label_out(label),
            "pending": [client_item(row, body.mode, None, roots) for row in pending],
        }

    @app.post("/api/undo")
    def api_undo(body: UndoIn, auth: Annotated[Auth, Depends(writer)]) -> dict[str, Any]:
        check_mode(body.mode)
        with store.write() as conn:
            result = store.undo_last(auth.user, event_uuid=body.event_uuid, mode=body.mode, conn=conn)
            label = store.label_of(auth.user, body.mode, result.item_id, conn=conn)
        return {
            "status": "duplicate" if result.duplicate else "recorded",
            "undo_event_id": result.event_id,
            "undone_event_id": result.undoes,
            "item_id": result.item_id,
            "label": label_out(label),
        }

    @app.get("/api/stats")
    def api_stats(auth: Annotated[Auth, Depends(admin)]) -> dict[str, Any]:
        return review_stats(store)

    # ---- files ------------------------------------------------------------------------------------------

    @app.get("/media/{root}/{path:path}")
    def media(root: int, path: str, auth: Annotated[Auth, Depends(reader)]) -> FileResponse:
        target = media_roots().resolve(root, path)
        if target is None:
            raise HTTPException(404, "not found")
        return FileResponse(target, media_type="video/webm" if target.suffix == ".webm" else "video/mp4")

    @app.get("/refs/{k}")
    def reference(k: int, item: str, auth: Annotated[Auth, Depends(reader)]) -> Response:
        with store.connect() as conn:
            row = conn.execute(
                "SELECT content_hash, media, view FROM items WHERE mode = 'clip' AND item_id = ?", (item,)
            ).fetchone()
        if row is None:
            raise HTTPException(404, "no such clip")
        subjects = json.loads(row["view"]).get("subjects") or []
        video = Path(json.loads(row["media"])[0])
        if not 0 <= k < len(subjects) or media_roots().url_for(video) is None or not video.is_file():
            raise HTTPException(404, "no such reference")
        try:
            png = refs.get(video, (item, row["content_hash"], k), subjects[k])
        except Exception as err:  # an unreadable clip: say so instead of a 500
            raise HTTPException(422, f"reference crop failed: {type(err).__name__}") from err
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    return app
