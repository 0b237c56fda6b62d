"""``python -m libragen`` runs the CLI."""

from libragen.cli import main

main()
