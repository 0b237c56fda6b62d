"""The ``libragen`` command: one subcommand group per stage of the recipe.

Stages that are not built yet are registered as stubs that say so and exit with status 3, so a
script can never mistake them for work done.
"""

from __future__ import annotations

import sys

import typer

from libragen import __version__
from libragen.core.config import ConfigError
from libragen.core.video import VideoReadError
from libragen.curate.cli import curate_app
from libragen.eval.cli import eval_app
from libragen.eval.scorers import ScorerLoadError
from libragen.infer.cli import demo, generate
from libragen.pairs.cli import pairs_app
from libragen.review.cli import review_app
from libragen.train.cli import dpo_app, train_app
from libragen.train.loop import TrainingDiverged
from libragen.train.merge_cli import merge
from libragen.world.cli import world_app

NOT_IMPLEMENTED_EXIT = 3

app = typer.Typer(
    name="libragen",
    help="LibraGen: subject-to-video generation on open video foundation models (arXiv 2603.13506).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(world_app, name="world")
app.add_typer(eval_app, name="eval")
app.add_typer(curate_app, name="curate")
app.add_typer(review_app, name="review")
app.add_typer(pairs_app, name="pairs")
app.add_typer(train_app, name="train")
app.add_typer(dpo_app, name="dpo")
app.command("generate")(generate)
app.command("demo")(demo)
app.command("merge")(merge)

# (group, command or None for a top-level command, issue that builds it, what it will do)
PLANNED: list[tuple[str, str | None, int, str]] = [
    ("reproduce", None, 11, "rerun the paper's claims end to end on LibraWorld"),
]


def _stub(label: str, issue: int, purpose: str):
    def command(ctx: typer.Context) -> None:
        typer.echo(f"libragen {label}: not implemented yet ({purpose}; tracked in issue #{issue}).", err=True)
        raise typer.Exit(NOT_IMPLEMENTED_EXIT)

    command.__doc__ = f"(not implemented yet) {purpose} (issue #{issue})."
    return command


def _register_stubs() -> None:
    stub_settings = {"allow_extra_args": True, "ignore_unknown_options": True}
    groups: dict[str, typer.Typer] = {}
    for group, name, issue, purpose in PLANNED:
        if name is None:
            app.command(group, context_settings=stub_settings)(_stub(group, issue, purpose))
            continue
        if group not in groups:
            existing = {"train": train_app}.get(group)
            groups[group] = existing or typer.Typer(help=f"{group} stage (not implemented yet).", no_args_is_help=True)
            if existing is None:
                app.add_typer(groups[group], name=group)
        groups[group].command(name, context_settings=stub_settings)(_stub(f"{group} {name}", issue, purpose))


_register_stubs()


@app.command("version")
def version() -> None:
    """Print the LibraGen version."""
    typer.echo(__version__)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except (ConfigError, VideoReadError, ValueError, FileNotFoundError, ScorerLoadError, TrainingDiverged) as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
