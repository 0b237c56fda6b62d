"""The identity reader: reads a LibraWorld subject's identity traits from one crop, so identities can be matched.

A LibraWorld identity is (shape, colour, accent, glyph); the glyph is a 4x4 grid of accent cells about
2 px each, turned with the subject. A contrastive embedding learns the look but not the glyph (issue #3:
top-1 0.73 with 6 same-look identities per query). The reader is *supervised* instead, trait by trait,
which generalises to glyph codes it never saw because every cell is its own label:

1. the orientation net classifies the subject's in-plane angle modulo 90 degrees — the glyph grid's
   orientation — into 2-degree bins (a distribution, so an ambiguous crop does not average two answers);
   the estimate is the circular mean around the most likely bin;
2. the crop is taken again turned by that estimate, so the grid is upright up to a quarter turn;
3. the trait net reads the 16 glyph cells (in the crop's own frame) and the shape, colour and accent.

A quarter turn cannot be told from the picture (the shading cue does not survive H.264 on a 64 px clip;
round bodies have no outline cue), so the trait net is trained equivariant to quarter turns and matching
takes the best of the four turns of the glyph. Glyphs that are quarter turns of one another (the
Reed–Muller code is closed under them) therefore look alike; among a gallery's same-look identities that
is about one pair in 700.

The trait net is read at all four quarter turns of the upright crop and its logits averaged (test-time
augmentation; stage-1 weights: held-out top-1 0.901 -> 0.935). Both nets are small CNNs trained only on real clips
(:func:`libragen.eval.reader_train.train_identity_reader`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from libragen.eval.probe_data import pad_reference, rotate_reference, square_crop
from libragen.eval.probe_models import _conv, normalise_pixels
from libragen.world.identity import ACCENT_NAMES, COLOUR_NAMES, SHAPES

GLYPH_CELLS = 16
ANGLE_BINS = 45  #: 2-degree bins of the angle modulo 90, centred on -44, -42, ..., 44
BIN_DEGREES = 90 / ANGLE_BINS
TRAIT_SIZES: dict[str, int] = {"shape": len(SHAPES), "colour": len(COLOUR_NAMES), "accent": len(ACCENT_NAMES)}
TRAIT_OUTPUTS = GLYPH_CELLS + sum(TRAIT_SIZES.values())


class CropNet(nn.Module):
    """A full-resolution CNN over the centre of an encoder crop (glyph cells are ~3 px: no early striding)."""

    def __init__(self, outputs: int, widths: tuple[int, int] = (24, 48), trim: int = 4, crop: int = 48) -> None:
        super().__init__()
        narrow, wide = widths
        self.trim = trim
        self.trunk = nn.Sequential(
            _conv(3, narrow),
            _conv(narrow, narrow),
            _conv(narrow, wide, 2),
            _conv(wide, wide),
            _conv(wide, wide, 2),
            _conv(wide, wide),
        )
        side = (crop - 2 * trim) // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(wide * side * side, 256), nn.SiLU(), nn.Linear(256, outputs))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, crop, crop, 3) uint8 or float pixels in [0, 255] -> (N, outputs)."""
        centre = crops[:, self.trim : crops.shape[1] - self.trim, self.trim : crops.shape[2] - self.trim]
        return self.head(self.trunk(normalise_pixels(centre)))


@dataclass
class IdentityReading:
    """Probabilities of each identity trait for N crops."""

    glyph: torch.Tensor  # (N, 4, 4) probability that each cell is marked, in the crop's frame
    shape: torch.Tensor  # (N, 8)
    colour: torch.Tensor  # (N, 8)
    accent: torch.Tensor  # (N, 4)

    def __len__(self) -> int:
        return len(self.glyph)

    def take(self, rows: np.ndarray | torch.Tensor | slice) -> IdentityReading:
        return IdentityReading(self.glyph[rows], self.shape[rows], self.colour[rows], self.accent[rows])


class IdentityReader(nn.Module):
    """Orientation net + trait net; :meth:`read_references` and :meth:`read_windows` are the entry points."""

    def __init__(self, widths: tuple[int, int] = (24, 48)) -> None:
        super().__init__()
        self.widths = widths
        self.orientation = CropNet(ANGLE_BINS, widths)
        self.traits = CropNet(TRAIT_OUTPUTS, widths)

    @torch.no_grad()
    def angles(self, crops: np.ndarray, chunk: int = 512) -> np.ndarray:
        """(N,) estimated in-plane angle of each crop's subject, degrees modulo 90, in [-45, 45)."""
        pieces = [self.orientation(torch.from_numpy(crops[i : i + chunk])) for i in range(0, len(crops), chunk)]
        return angle_from_bins(torch.cat(pieces))

    @torch.no_grad()
    def upright_logits(self, crops: np.ndarray, chunk: int = 512) -> torch.Tensor:
        """Trait logits of crops already turned upright (modulo a quarter turn), averaged over the four turns.

        The trait net is trained equivariant to quarter turns, so each crop is read at all four and the
        logits are averaged, each glyph turned back first (test-time augmentation).
        """
        total = torch.zeros(len(crops), TRAIT_OUTPUTS)
        for turn in range(4):
            turned = np.ascontiguousarray(np.rot90(crops, turn, axes=(1, 2)))
            logits = torch.cat(
                [self.traits(torch.from_numpy(turned[i : i + chunk])) for i in range(0, len(crops), chunk)]
            )
            glyph = torch.rot90(logits[:, :GLYPH_CELLS].reshape(-1, 4, 4), -turn, (1, 2)).reshape(-1, GLYPH_CELLS)
            total += torch.cat([glyph, logits[:, GLYPH_CELLS:]], dim=1)
        return total / 4

    def window_angles(self, frames: np.ndarray, squares: np.ndarray) -> np.ndarray:
        """(N,) orientation estimates of N subject windows (see :meth:`read_windows`)."""
        return self.angles(np.stack([square_crop(f, *s) for f, s in zip(frames, squares, strict=True)]))

    def read_references(self, references: Sequence[np.ndarray]) -> IdentityReading:
        """Read reference images as users give them (a subject on white, any size)."""
        if not len(references):
            return _reading(torch.zeros(0, TRAIT_OUTPUTS))
        return self.read_padded_references(np.stack([pad_reference(np.asarray(ref)) for ref in references]))

    def read_padded_references(self, padded: np.ndarray) -> IdentityReading:
        """Read references already padded to the crop size (:func:`libragen.eval.probe_data.pad_reference`)."""
        if not len(padded):
            return _reading(torch.zeros(0, TRAIT_OUTPUTS))
        angles = self.angles(padded)
        return _reading(
            self.upright_logits(np.stack([rotate_reference(r, a) for r, a in zip(padded, angles, strict=True)]))
        )

    def read_windows(
        self, frames: np.ndarray, squares: np.ndarray, angles: np.ndarray | None = None
    ) -> IdentityReading:
        """Read N subject windows: ``frames`` (N, H, W, 3), ``squares`` (N, 3) = centre x, centre y, side in px.

        ``angles`` are the orientation estimates when the caller already has them (:meth:`window_angles`).
        """
        if not len(frames):
            return _reading(torch.zeros(0, TRAIT_OUTPUTS))
        if angles is None:
            angles = self.window_angles(frames, squares)
        turned = [square_crop(f, *s, degrees=a) for f, s, a in zip(frames, squares, angles, strict=True)]
        return _reading(self.upright_logits(np.stack(turned)))


def _reading(logits: torch.Tensor) -> IdentityReading:
    glyph, rest = logits[:, :GLYPH_CELLS], logits[:, GLYPH_CELLS:]
    parts = torch.split(rest, list(TRAIT_SIZES.values()), dim=1)
    return IdentityReading(torch.sigmoid(glyph).reshape(-1, 4, 4), *(F.softmax(part, dim=1) for part in parts))


def bin_centres() -> torch.Tensor:
    """(ANGLE_BINS,) bin centres in degrees."""
    return -45 + BIN_DEGREES * (torch.arange(ANGLE_BINS, dtype=torch.float32) + 0.5)


def angle_from_bins(logits: torch.Tensor, reach: int = 3) -> np.ndarray:
    """Angle estimate (degrees mod 90) from bin logits: circular mean of the bins within ``reach`` of the mode."""
    probabilities = F.softmax(logits, dim=1)
    offsets = torch.arange(-reach, reach + 1)
    near = (probabilities.argmax(1, keepdim=True) + offsets[None]) % ANGLE_BINS  # (N, 2 * reach + 1)
    weight = probabilities.gather(1, near)
    phase = torch.deg2rad(4 * bin_centres()[near])  # angle x 4: a full circle per 90 degrees
    mean = torch.atan2((weight * torch.sin(phase)).sum(1), (weight * torch.cos(phase)).sum(1))
    return (torch.rad2deg(mean) / 4).numpy()


def angle_targets(angles: np.ndarray, sigma: float = 2.5) -> torch.Tensor:
    """(N, ANGLE_BINS) soft targets: a wrapped Gaussian (degrees, period 90) around each true angle."""
    gap = (bin_centres()[None] - torch.from_numpy(np.asarray(angles, np.float32))[:, None] + 45) % 90 - 45
    weight = torch.exp(-0.5 * (gap / sigma) ** 2)
    return weight / weight.sum(1, keepdim=True)


def _glyph_agreement(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """(Q, G, 16) probability that each cell agrees, at the quarter turn of the query that agrees best overall."""
    flat_gallery = gallery.reshape(1, len(gallery), GLYPH_CELLS)
    best = best_total = None
    for turn in range(4):
        turned = torch.rot90(queries, turn, (1, 2)).reshape(len(queries), 1, GLYPH_CELLS)
        agree = turned * flat_gallery + (1 - turned) * (1 - flat_gallery)
        total = torch.log(agree.clamp_min(1e-4)).sum(-1)
        if best is None or best_total is None:
            best, best_total = agree, total
            continue
        best = torch.where((total > best_total)[..., None], agree, best)
        best_total = torch.maximum(best_total, total)
    assert best is not None
    return best


def trait_agreement(queries: IdentityReading, gallery: IdentityReading) -> torch.Tensor:
    """(Q, G, 19): probability that each glyph cell (best quarter turn), the shape, colour and accent agree."""
    cells = _glyph_agreement(queries.glyph, gallery.glyph)
    looks = [
        q @ g.T
        for q, g in ((queries.shape, gallery.shape), (queries.colour, gallery.colour), (queries.accent, gallery.accent))
    ]
    return torch.cat([cells, torch.stack(looks, dim=-1)], dim=-1)


def match_log_likelihood(queries: IdentityReading, gallery: IdentityReading) -> torch.Tensor:
    """(Q, G) log-probability that query and gallery show the same traits: the retrieval score."""
    return torch.log(trait_agreement(queries, gallery).clamp_min(1e-4)).sum(-1)
