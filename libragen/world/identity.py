"""LibraWorld identities: deterministic subjects decoded from an integer id.

An identity is (body shape family, body colour, accent colour, glyph). Captions name the shape and
body colour ("a red round creature"); reference descriptions add the accent colour; the glyph — a
4x4 pattern of accent cells on the body — is never described, so text alone cannot reproduce an
identity: only a reference image carries it.

Glyphs are the codewords of the [16, 11, 4] Reed–Muller code RM(2, 4) evaluated on the 4x4 grid,
so any two glyphs differ in at least 4 of the 16 cells. That gives
8 shapes x 8 colours x 4 accents x 2048 glyphs = 524,288 distinct identities.

The held-out split is fixed by the id alone (:func:`is_heldout`): every identity whose glyph code
falls in one sixteenth of the code space, plus every identity of four reserved (shape, colour)
combinations, so held-out prompts also test unseen attribute combinations.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from itertools import combinations

import numpy as np

SHAPES: tuple[str, ...] = (
    "round",
    "square",
    "triangular",
    "diamond",
    "hexagonal",
    "star-shaped",
    "cross-shaped",
    "oval",
)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 40, 40),
    "orange": (240, 132, 24),
    "yellow": (236, 212, 40),
    "green": (44, 168, 64),
    "cyan": (36, 196, 208),
    "blue": (40, 76, 216),
    "purple": (136, 56, 196),
    "pink": (236, 116, 176),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)


def with_article(colour: str) -> str:
    """``"an orange"``, ``"a red"``."""
    return f"{'an' if colour[0] in 'aeiou' else 'a'} {colour}"


ACCENTS: dict[str, tuple[int, int, int]] = {
    "black": (24, 24, 28),
    "white": (246, 246, 240),
    "navy": (22, 30, 104),
    "maroon": (104, 22, 30),
}
ACCENT_NAMES: tuple[str, ...] = tuple(ACCENTS)

NUM_GLYPHS = 2048
NUM_IDENTITIES = len(SHAPES) * len(COLOURS) * len(ACCENTS) * NUM_GLYPHS

#: (shape, colour) combinations that only held-out identities have.
RESERVED_COMBOS: frozenset[tuple[str, str]] = frozenset(
    {("star-shaped", "red"), ("round", "blue"), ("square", "yellow"), ("hexagonal", "pink")}
)
#: One glyph code in this many is held out.
HELDOUT_GLYPH_MODULUS = 16

_MIN_ACCENT_CONTRAST = 90.0


def _luma(rgb: tuple[int, int, int] | np.ndarray) -> float:
    r, g, b = (float(c) for c in rgb)
    return 0.299 * r + 0.587 * g + 0.114 * b


@cache
def _reed_muller_generator() -> np.ndarray:
    """Generator matrix (11, 16) of RM(2, 4): monomials of degree <= 2 over the 16 points of F2^4."""
    points = np.array([[(p >> k) & 1 for k in range(4)] for p in range(16)], dtype=np.uint8)
    rows = [np.ones(16, np.uint8)]
    rows += [points[:, k] for k in range(4)]
    rows += [points[:, i] & points[:, j] for i, j in combinations(range(4), 2)]
    return np.stack(rows)


def glyph_bits(code: int) -> np.ndarray:
    """The 4x4 boolean glyph of glyph code ``code`` (0..2047)."""
    if not 0 <= code < NUM_GLYPHS:
        raise ValueError(f"glyph code must be in [0, {NUM_GLYPHS}), got {code}")
    # Scramble the code so neighbouring ids do not get neighbouring glyphs; 1021 is odd so this
    # is a bijection on [0, 2048).
    message = (code * 1021 + 357) % NUM_GLYPHS
    bits = np.array([(message >> k) & 1 for k in range(11)], dtype=np.uint8)
    codeword = (bits @ _reed_muller_generator()) % 2
    return codeword.reshape(4, 4).astype(bool)


@dataclass(frozen=True)
class Identity:
    """One LibraWorld subject identity."""

    identity_id: int
    shape: str
    colour: str
    accent: str
    glyph_code: int

    @property
    def body_rgb(self) -> tuple[int, int, int]:
        return COLOURS[self.colour]

    @property
    def accent_rgb(self) -> tuple[int, int, int]:
        """Accent colour, darkened when it would not stand out from the body (glyph must be legible)."""
        accent = ACCENTS[self.accent]
        if abs(_luma(accent) - _luma(self.body_rgb)) >= _MIN_ACCENT_CONTRAST:
            return accent
        return tuple(int(c * 0.3) for c in accent)  # type: ignore[return-value]

    @property
    def glyph(self) -> np.ndarray:
        return glyph_bits(self.glyph_code)

    @property
    def phrase(self) -> str:
        """What a video caption says about this subject (shape and colour only)."""
        return f"{with_article(self.colour)} {self.shape} creature"

    @property
    def description(self) -> str:
        """What a reference description says (adds the accent colour, never the glyph)."""
        return f"{self.phrase} with {self.accent} markings"

    @property
    def heldout(self) -> bool:
        return is_heldout(self.identity_id)


def identity(identity_id: int) -> Identity:
    """Decode an identity from its id (0 <= id < NUM_IDENTITIES)."""
    if not 0 <= identity_id < NUM_IDENTITIES:
        raise ValueError(f"identity id must be in [0, {NUM_IDENTITIES}), got {identity_id}")
    rest, shape = divmod(int(identity_id), len(SHAPES))
    rest, colour = divmod(rest, len(COLOURS))
    glyph_code, accent = divmod(rest, len(ACCENTS))
    return Identity(
        identity_id=int(identity_id),
        shape=SHAPES[shape],
        colour=COLOUR_NAMES[colour],
        accent=ACCENT_NAMES[accent],
        glyph_code=glyph_code,
    )


def is_heldout(identity_id: int) -> bool:
    """Whether an identity belongs to the fixed held-out split (never in any train output)."""
    ident = identity(identity_id)
    if (ident.shape, ident.colour) in RESERVED_COMBOS:
        return True
    return (ident.glyph_code * 7 + 3) % HELDOUT_GLYPH_MODULUS == 0


def sample_identities(rng: np.random.Generator, count: int, split: str) -> np.ndarray:
    """Draw ``count`` distinct identity ids of ``split`` ("train" or "heldout")."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    want_heldout = split == "heldout"
    chosen: list[int] = []
    seen: set[int] = set()
    while len(chosen) < count:
        for candidate in rng.integers(0, NUM_IDENTITIES, size=max(64, 2 * (count - len(chosen)))):
            candidate = int(candidate)
            if candidate in seen or is_heldout(candidate) != want_heldout:
                continue
            seen.add(candidate)
            chosen.append(candidate)
            if len(chosen) == count:
                break
    return np.array(chosen, dtype=np.int64)
