"""``libragen review``: serve the review app, manage reviewers, import work, export results.

Also runnable alone as ``python -m libragen.review.cli`` (the tests start the server this way).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from libragen.core.config import load_config
from libragen.review.config import ReviewConfig
from libragen.review.export import export_clips, export_gsb, export_pairs
from libragen.review.importer import import_curated, import_gold, import_gsb, import_pairs
from libragen.review.reasons import MODES
from libragen.review.stats import review_stats
from libragen.review.store import Store

review_app = typer.Typer(
    help="Manual review: people accept/reject curated clips, judge DPO pairs and give GSB judgements.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

DbOption = Annotated[Path, typer.Option("--db", help="review database (SQLite; created if missing)")]
ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="review YAML config (ReviewConfig)")]


def _config(path: Optional[Path], roots: Optional[list[Path]] = None) -> ReviewConfig:
    return load_config(ReviewConfig, path, data_roots=tuple(roots) if roots else None)


@review_app.command("serve")
def serve(
    db: DbOption = Path("review.db"),
    source: Annotated[
        Optional[Path], typer.Option("--from", help="curated.parquet to import (again) before serving")
    ] = None,
    config: ConfigOption = None,
    root: Annotated[
        Optional[list[Path]], typer.Option("--root", help="data root videos may be served from (repeatable)")
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Serve the review web app (imports --from first; decisions already in the database are kept)."""
    import uvicorn

    from libragen.review.app import create_app

    cfg = _config(config, root)
    store = Store(db)
    if source is not None:
        typer.echo(import_curated(store, source, cfg).line(), err=True)
    if not store.users():
        typer.echo("note: no reviewers yet; add one with `libragen review add-user NAME --db ...`", err=True)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        typer.echo(f"warning: serving on {host}: put HTTPS in front and set secure_cookies: true", err=True)
    typer.echo(f"review app on http://{host}:{port}/ (database {db})", err=True)
    uvicorn.run(create_app(store, cfg), host=host, port=port, log_level="warning")


@review_app.command("add-user")
def add_user(
    name: Annotated[str, typer.Argument(help="reviewer name (letters, digits, _ . -)")],
    db: DbOption = Path("review.db"),
    admin: Annotated[bool, typer.Option("--admin", help="may see stats and the audit log")] = False,
    rotate: Annotated[bool, typer.Option("--rotate", help="issue a new token for an existing user")] = False,
) -> None:
    """Create a reviewer and print their login token (shown once; only its hash is stored)."""
    token = Store(db).add_user(name, admin=admin, rotate=rotate)
    typer.echo(token)


@review_app.command("import")
def import_cmd(
    source: Annotated[Path, typer.Option("--from", help="curated.parquet from `libragen curate run`")],
    db: DbOption = Path("review.db"),
    config: ConfigOption = None,
) -> None:
    """Import (or re-import) a curated manifest; human decisions already made are never lost."""
    typer.echo(import_curated(Store(db), source, _config(config)).line())


@review_app.command("import-gold")
def import_gold_cmd(
    source: Annotated[Path, typer.Argument(help=".jsonl or .parquet with item_id (or clip_id), answer, reasons")],
    db: DbOption = Path("review.db"),
    mode: Annotated[str, typer.Option(help="clip, pair or gsb")] = "clip",
) -> None:
    """Load gold items (known answers) that measure each reviewer."""
    if mode not in MODES:
        raise typer.BadParameter(f"must be one of {MODES}", param_hint="--mode")
    typer.echo(f"{import_gold(Store(db), source, mode)} gold answers loaded for {mode} review")


@review_app.command("import-pairs")
def import_pairs_cmd(
    source: Annotated[Path, typer.Argument(help=".jsonl or .parquet with pair_id, positive, negative, prompt")],
    db: DbOption = Path("review.db"),
    name: Annotated[Optional[str], typer.Option(help="set name (default: the file's stem)")] = None,
    config: ConfigOption = None,
) -> None:
    """Queue DPO preference pairs for review (is the positive really better?)."""
    typer.echo(import_pairs(Store(db), source, _config(config), name).line())


@review_app.command("import-gsb")
def import_gsb_cmd(
    folder: Annotated[Path, typer.Argument(help="side-by-side folder (mp4s + key.jsonl); created with --a/--b")],
    db: DbOption = Path("review.db"),
    a: Annotated[Optional[Path], typer.Option("--a", help="method A's videos: make the set first")] = None,
    b: Annotated[Optional[Path], typer.Option("--b", help="method B's videos (same file names as A)")] = None,
    seed: Annotated[int, typer.Option(help="left/right draw when making the set")] = 0,
    name: Annotated[Optional[str], typer.Option(help="set name (default: the folder's name)")] = None,
    config: ConfigOption = None,
) -> None:
    """Queue a GSB side-by-side set (optionally making it from two methods' videos first)."""
    if (a is None) != (b is None):
        raise typer.BadParameter("give both --a and --b, or neither")
    if a is not None and b is not None:
        from libragen.eval.gsb import export_side_by_side

        export_side_by_side(a, b, folder, seed=seed)
    typer.echo(import_gsb(Store(db), folder, _config(config), name).line())


@review_app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option("--out", help="output file (.parquet; .jsonl for gsb)")],
    db: DbOption = Path("review.db"),
    mode: Annotated[str, typer.Option(help="clip (approved manifest), pair or gsb")] = "clip",
    include_all: Annotated[
        bool, typer.Option("--all", help="clip mode: every labelled clip with its decision, not only accepted")
    ] = False,
) -> None:
    """Export human decisions: the approved manifest for `libragen pairs build`, or pair / GSB results."""
    store = Store(db)
    if mode == "clip":
        path, rows = export_clips(store, out, include_all=include_all)
    elif mode == "pair":
        path, rows = export_pairs(store, out)
    elif mode == "gsb":
        path, rows = export_gsb(store, out)
    else:
        raise typer.BadParameter(f"must be one of {MODES}", param_hint="--mode")
    typer.echo(f"{rows} rows -> {path}")


@review_app.command("stats")
def stats_cmd(db: DbOption = Path("review.db")) -> None:
    """Print agreement (Cohen's kappa), per-reviewer gold accuracy and GSB ratios as JSON."""
    typer.echo(json.dumps(review_stats(Store(db)), indent=2))


@review_app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", help="folder for the demo world, curated.parquet and gold")],
    n: Annotated[int, typer.Option("--n", min=2, help="clips")] = 40,
    seed: Annotated[int, typer.Option(help="world seed")] = 0,
) -> None:
    """Make a small LibraWorld set with a simulated curated.parquet and gold answers to try the app on."""
    from libragen.review.demo import make_demo

    paths = make_demo(out, n, seed=seed)
    db = out / "review.db"
    typer.echo(
        f"curated: {paths['curated']}\n"
        f"try:  libragen review add-user me --admin --db {db}\n"
        f"      libragen review import-gold {paths['gold']} --db {db}\n"
        f"      libragen review serve --db {db} --from {paths['curated']}"
    )


if __name__ == "__main__":
    review_app()
