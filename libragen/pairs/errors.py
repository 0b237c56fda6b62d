"""Errors of the pairs stage; the CLI turns each into one line on stderr (they are ValueError /
FileNotFoundError subclasses, which ``libragen.cli.main`` already reports that way)."""

from __future__ import annotations


class PairsInputError(ValueError):
    """The input manifest, output folder or an option is unusable; the message says why."""


class MissingWeightsError(FileNotFoundError):
    """A model-backed component (detector, segmenter, embedder) has no weights at the given path."""

    def __init__(self, what: str, path: object, hint: str = "") -> None:
        message = f"{what} needs weights at {path} (not found)"
        super().__init__(message + (f"; {hint}" if hint else ""))
