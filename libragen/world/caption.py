"""Captions in the paper's Ref-tag style, written from a clip's specification.

Video caption: ``Ref 1[a red round creature] hops quickly to the left and Ref 2[a blue oval
creature] glides slowly upward on a brick wall, while the camera pans right.``
Reference descriptions: ``Ref 1: a red round creature with black markings``.
Captions say what the rendered clip shows: a static clip says the subjects stay still.
"""

from __future__ import annotations

import re

from libragen.world.identity import COLOUR_NAMES, identity
from libragen.world.spec import ClipSpec, SubjectSpec

DIRECTION_PHRASES = {"left": "to the left", "right": "to the right", "up": "upward", "down": "downward"}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
REVERSED_PHRASE = {
    **{DIRECTION_PHRASES[d]: DIRECTION_PHRASES[OPPOSITE[d]] for d in OPPOSITE},
    **{f"pans {d}": f"pans {OPPOSITE[d]}" for d in OPPOSITE},
}
_DIRECTION = re.compile(r"\b(" + "|".join(REVERSED_PHRASE) + r")\b")
_SUBJECT_COLOUR = re.compile(r"\b(?:a|an) (" + "|".join(COLOUR_NAMES) + r") (?=[\w-]+ creature)")


def subject_clause(ref_index: int, subject: SubjectSpec) -> str:
    """``Ref k[phrase] verb adverb direction[, while growing]`` for one subject."""
    tag = f"Ref {ref_index}[{identity(subject.identity_id).phrase}]"
    if subject.direction == "none" or subject.speed_px == 0:
        action = "spins in place" if subject.rotation_deg else "stays still"
    else:
        action = f"{subject.style} {subject.speed} {DIRECTION_PHRASES[subject.direction]}"
    if subject.scale_change != "none":
        action += ", growing" if subject.scale_change == "grows" else ", shrinking"
    return f"{tag} {action}"


def join_clauses(parts: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(spec: ClipSpec) -> str:
    """The video caption of ``spec``."""
    clauses = [subject_clause(k + 1, s) for k, s in enumerate(spec.subjects)]
    text = f"{join_clauses(clauses)} on {spec.scene}"
    if spec.pan is not None:
        text += f", while the camera pans {spec.pan.direction}"
    return text + "."


def ref_descriptions(spec: ClipSpec) -> list[str]:
    """One ``Ref k: description`` line per subject."""
    return [f"Ref {k + 1}: {identity(s.identity_id).description}" for k, s in enumerate(spec.subjects)]


def direction_phrases(text: str, pans: bool = True) -> list[re.Match[str]]:
    """The direction phrases of a caption in order: each subject's ("to the left", "upward", ...) and, with
    ``pans``, the camera's ("pans right")."""
    return [m for m in _DIRECTION.finditer(text) if pans or not m[0].startswith("pans")]


def colour_phrases(text: str) -> list[re.Match[str]]:
    """Each subject's article and colour word in order ("a red " of "a red round creature"); group 1 is the colour."""
    return list(_SUBJECT_COLOUR.finditer(text))


def reverse_directions(text: str, pans: bool = True) -> str | None:
    """``text`` with all its direction phrases reversed ("hops to the left ... pans up" -> "hops to the right ...
    pans down"); None when it names no direction."""
    found = direction_phrases(text, pans)
    if not found:
        return None
    for match in reversed(found):  # right to left, so earlier spans keep their offsets
        text = text[: match.start()] + REVERSED_PHRASE[match[0]] + text[match.end() :]
    return text


_REF_TAG = re.compile(r"(Ref \d+)\[([^\]]*)\]")


def plain_caption(text: str) -> str:
    """A Ref-tagged caption as plain text-to-video prose.

    ``Ref 1[a red round creature] hops`` -> ``a red round creature hops``.
    """
    return _REF_TAG.sub(r"\2", text)


def generic_ref_tags(text: str, description: str) -> str:
    """Every Ref tag's description replaced: ``Ref 1[a red round creature] hops`` -> ``Ref 1[<description>] hops``."""
    return _REF_TAG.sub(lambda match: f"{match.group(1)}[{description}]", text)
