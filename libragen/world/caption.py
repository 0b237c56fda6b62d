"""Captions in the paper's Ref-tag style, written from a clip's specification.

Video caption: ``Ref 1[a red round creature] hops quickly to the left and Ref 2[a blue oval
creature] glides slowly upward on a brick wall, while the camera pans right.``
Reference descriptions: ``Ref 1: a red round creature with black markings``.
Captions say what the rendered clip shows: a static clip says the subjects stay still.
"""

from __future__ import annotations

import re

from libragen.world.identity import identity
from libragen.world.spec import ClipSpec, SubjectSpec

DIRECTION_PHRASES = {"left": "to the left", "right": "to the right", "up": "upward", "down": "downward"}


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


_REF_TAG = re.compile(r"Ref \d+\[([^\]]*)\]")


def plain_caption(text: str) -> str:
    """A Ref-tagged caption as plain text-to-video prose.

    ``Ref 1[a red round creature] hops`` -> ``a red round creature hops``.
    """
    return _REF_TAG.sub(r"\1", text)
