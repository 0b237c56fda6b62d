"""Ref-tag captions: find the ``Ref k[phrase]`` tags of a caption and rewrite them for a sample.

A sample keeps the tags of the subjects it has references for, renumbered 1..R in caption order,
so ``Ref j`` always names the j-th reference image; a subject without a reference keeps its
phrase as plain text (the video still shows it, the model just gets no picture of it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

REF_TAG = re.compile(r"Ref (\d+)\[([^\[\]]+)\]")


@dataclass(frozen=True)
class RefTag:
    """One ``Ref k[phrase]`` tag of a caption."""

    index: int
    phrase: str
    start: int
    end: int


def find_tags(caption: str) -> list[RefTag]:
    """The caption's Ref tags in order of appearance (indices are not checked here)."""
    return [RefTag(int(m.group(1)), m.group(2).strip(), m.start(), m.end()) for m in REF_TAG.finditer(caption)]


def tag_phrases(caption: str) -> dict[int, str]:
    """``{k: phrase}`` of a caption; raises ValueError on repeated indices."""
    phrases: dict[int, str] = {}
    for tag in find_tags(caption):
        if tag.index in phrases and phrases[tag.index] != tag.phrase:
            raise ValueError(f"caption tags Ref {tag.index} twice with different phrases: {caption!r}")
        phrases[tag.index] = tag.phrase
    return phrases


def retag(caption: str, keep: Sequence[int]) -> tuple[str, list[int]]:
    """Rewrite ``caption`` keeping the tags whose index is in ``keep``, renumbered 1..R.

    Returns the new caption and the kept source indices in their new order (new tag j names
    source subject ``order[j - 1]``). Dropped tags become their plain phrase.
    """
    wanted = set(keep)
    order: list[int] = []
    pieces: list[str] = []
    cursor = 0
    for tag in find_tags(caption):
        pieces.append(caption[cursor : tag.start])
        if tag.index in wanted:
            if tag.index not in order:
                order.append(tag.index)
            pieces.append(f"Ref {order.index(tag.index) + 1}[{tag.phrase}]")
        else:
            pieces.append(tag.phrase)
        cursor = tag.end
    pieces.append(caption[cursor:])
    text = "".join(pieces)
    tags = find_tags(caption)
    if tags and tags[0].start == 0 and tags[0].index not in wanted and text[:1].islower():
        text = text[0].upper() + text[1:]  # a dropped tag opened the sentence
    return text, order
