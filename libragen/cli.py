"""The ``libragen`` command: one subcommand group per stage of the recipe.

Every stage of the recipe has its subcommand; ``libragen reproduce`` runs them all end to end on LibraWorld.
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
from libragen.reproduce.cli import reproduce
from libragen.review.cli import review_app
from libragen.train.cli import dpo_app, train_app
from libragen.train.loop import TrainingDiverged
from libragen.train.merge_cli import merge
from libragen.world.cli import world_app

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
app.command("reproduce")(reproduce)


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
