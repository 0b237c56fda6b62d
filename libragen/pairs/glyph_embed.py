"""A weight-free identity embedder for LibraWorld references: body hue, shape family and glyph layout.

It reads what makes a LibraWorld identity from a prepared reference (a subject on white, see
:mod:`libragen.core.refs`) with no training and no per-clip ground truth. It does know LibraWorld's
rendering model — the 8 star-convex shape families (:func:`libragen.world.sprite.shape_radius`) and
that a 4x4 glyph sits on the body's centre — the way a detector knows its categories:

1. **Silhouette fit.** The foreground is everything but the white padding connected to the
   border (pixels less than half as far from white as the body count as padding, so the resize's
   blended rim does not inflate the outline). Its outer contour gives a boundary radius per
   2-degree polar bin; every shape family at every distinct rotation is fitted by least squares
   (radius = the scale), with the centre refined on a shrinking 3x3 grid. Light markings that
   touch the outline merge with the padding and cut notches, so bins more than 10 % inside the
   first fit are left out of a second one. The best fit gives the family, the body radius and the
   rotation up to the family's symmetry (round bodies give none).
2. **Glyph grid.** Contrast is |luma - body luma| inside the fitted outline (minus a rim), the
   body luma being the median of an outer annulus. Among the rotations the outline allows (taken
   modulo 90 degrees, +-6 deg around each; a 3-degree search for round bodies) the one whose 4x4
   cell grid best explains the contrast (between-cell minus within-cell variance) is kept. A
   square and a diamond have the same outline; both are tried and the glyph grid decides. Each
   cell's mean contrast, centred at the mid level and squashed to +-1, is the soft glyph (dark and
   light markings alike); the markings' mean colour is the accent.
3. **Features**, each block L2-normalised and weighted (squared weights in brackets, sum 1):
   * hue (0.2): the body's median colour as radial-basis responses over the hue circle
     (sigma 10 deg: the 8 palette colours are near-orthogonal, lighting tints move hue a few deg);
   * shape (0.1): one-hot of the shape family;
   * accent (0.2): the markings' CIE Lab colour as radial-basis responses on a Lab grid
     (sigma 12); it separates black, white, navy and maroon markings, but not well the darkened
     ones LibraWorld uses when an accent would not stand out from the body;
   * glyph (0.5): ``sum_k vec(R^k G) vec(R^k G)^T`` over the four quarter turns ``R^k`` of the
     soft glyph ``G``. A quarter turn of the body cannot be told from the picture for 4-fold
     bodies (the shading cue is too weak after H.264), so the glyph block is made invariant to
     it; the price is that glyphs that are quarter turns of one another look alike.

What it cannot do: it is built for LibraWorld's renderer and is not an image embedder for real
footage (plug in DINO/face weights there, :mod:`libragen.pairs.embedders`). Glyph cells are about
2 px in 64 px clips, so single views are noisy; retrieval aggregates several views per subject
(:mod:`libragen.pairs.retrieval`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from libragen.world.identity import SHAPES
from libragen.world.sprite import shape_radius

#: Working resolution: prepared references are resampled to this side before reading them.
WORK_SIZE = 64
_PAD_LEVEL = 248  # pixels at least this bright in all channels may be padding
_BINS = 180  # polar bins of the silhouette (2 degrees)
_HUE_CENTRES = np.deg2rad(np.arange(0, 360, 15, dtype=np.float32))
_HUE_SIGMA = np.deg2rad(10.0)
_OUTLINE_TWINS: dict[str, tuple[str, ...]] = {"square": ("diamond",), "diamond": ("square",)}
#: Rotational symmetry order of each shape family (0: round, any rotation).
SYMMETRY: dict[str, int] = {
    "round": 0,
    "square": 4,
    "triangular": 3,
    "diamond": 4,
    "hexagonal": 6,
    "star-shaped": 5,
    "cross-shaped": 4,
    "oval": 2,
}
_CELL_SUB = 3  # samples per cell side when averaging a glyph cell
_CELL_CENTRES = np.array([-0.3, -0.1, 0.1, 0.3])  # in radii, see libragen.world.sprite (+-0.4 square)

_LAB_ANCHORS = np.stack(
    np.meshgrid(np.arange(0, 101, 20), np.arange(-60, 61, 20), np.arange(-60, 61, 20), indexing="ij"), axis=-1
).reshape(-1, 3)
_LAB_SIGMA = 12.0
_SQUARED_WEIGHTS = {"hue": 0.2, "shape": 0.1, "accent": 0.2, "glyph": 0.5}
#: Block weights; squared weights sum to 1, so a block's cosine counts by its squared weight.
WEIGHTS: dict[str, float] = {name: float(np.sqrt(w)) for name, w in _SQUARED_WEIGHTS.items()}
EMBED_DIM = len(_HUE_CENTRES) + len(SHAPES) + len(_LAB_ANCHORS) + 16 * 16


@dataclass(frozen=True)
class GlyphReading:
    """What the embedder read from one reference (exposed for tests and diagnostics)."""

    centre: tuple[float, float]  # x, y in work pixels
    radius: float  # body radius in work pixels
    angle: float  # body rotation in radians, modulo 90 degrees (see module docstring)
    family: int  # index into SHAPES of the chosen shape family
    shape_errors: np.ndarray  # (8,) relative silhouette fit error per family, in SHAPES order
    hue: float  # radians
    accent_lab: np.ndarray  # (3,) CIE Lab of the markings
    glyph: np.ndarray  # (4, 4) float in [-1, 1], +1 = marking, rows = body v, columns = body u

    @property
    def shape(self) -> str:
        return SHAPES[self.family]


@cache
def _templates() -> np.ndarray:
    """(shapes, rotations, bins) boundary radii of every family at every rotation (unit radius)."""
    psi = (np.arange(_BINS) + 0.5) * 2 * np.pi / _BINS
    rotations = np.arange(_BINS) * 2 * np.pi / _BINS
    table = np.empty((len(SHAPES), _BINS, _BINS), np.float64)
    for k, shape in enumerate(SHAPES):
        table[k] = shape_radius(shape, psi[None, :] - rotations[:, None])
    return table


@cache
def _distinct_templates() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rotations that differ per family (a family of order n repeats every 1/n turn).

    Returns the (M, bins) templates, their squares, each row's rotation bin, and the (F + 1,)
    row offsets of each family.
    """
    rows, rotation_bins, offsets = [], [], [0]
    for k, shape in enumerate(SHAPES):
        order = SYMMETRY[shape]
        distinct = 1 if order == 0 else _BINS // order
        rows.append(_templates()[k, :distinct])
        rotation_bins.append(np.arange(distinct))
        offsets.append(offsets[-1] + distinct)
    table = np.concatenate(rows)
    return table, table**2, np.concatenate(rotation_bins), np.array(offsets)


def _foreground(image: np.ndarray) -> np.ndarray:
    """Subject pixels: everything but the white padding connected to the border.

    Padding is first everything near-white; then, so that the anti-aliased rim (subject blended
    with white by the resize) does not inflate the outline, pixels less than half as far from
    white as the subject's typical pixel also count as padding when they touch it.
    """
    distance = 255.0 - image.min(axis=-1).astype(np.float32)  # how far from white, worst channel
    loose = _padding(distance <= 255 - _PAD_LEVEL)
    if loose.all():
        return ~loose
    level = 0.5 * float(np.median(distance[~loose]))
    return ~_padding(distance < level)


def _padding(bright: np.ndarray) -> np.ndarray:
    """The parts of a boolean "bright" map that touch the image border."""
    _, labels = cv2.connectedComponents(bright.astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, border[border > 0])


def _contour_points(visible: np.ndarray) -> np.ndarray:
    """(N, 2) outer-contour pixel centres (x, y) of the visible subject."""
    contours, _ = cv2.findContours(visible.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float64) + 0.5


def _polar_bins(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return (np.mod(np.arctan2(dy, dx), 2 * np.pi) / (2 * np.pi) * _BINS).astype(int) % _BINS


def _boundary_profile(points: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """(bins,) distance from (cx, cy) to the outer boundary per polar angle (gaps interpolated)."""
    dx, dy = points[:, 0] - cx, points[:, 1] - cy
    dist = np.hypot(dx, dy) + 0.5  # contour pixel centres lie half a pixel inside the edge
    profile = np.full(_BINS, -1.0)
    np.maximum.at(profile, _polar_bins(dx, dy), dist)
    known = profile >= 0
    if known.sum() < _BINS // 4:
        raise ValueError("subject outline too small to read")
    idx = np.arange(_BINS)
    return np.interp(idx, idx[known], profile[known], period=_BINS)


def _fit_profiles(profiles: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares of every family and rotation to K profiles (K, bins).

    Returns per profile and family (K, F): relative error, best rotation bin, radius there.
    """
    table, squared, rotation_bins, offsets = _distinct_templates()
    weighted = weights * profiles
    # einsum, not BLAS: these products are small, and a multi-threaded BLAS spends ~10x longer on
    # thread hand-off than on the arithmetic when the cores are busy.
    dot = np.einsum("kb,mb->km", weighted, table)  # (K, M)
    scale = dot / np.maximum(np.einsum("kb,mb->km", weights, squared), 1e-9)
    total = np.maximum(np.sum(weighted * profiles, axis=1), 1e-9)[:, None]
    relative = (total - dot * scale) / total
    count, families = len(profiles), len(SHAPES)
    errors = np.empty((count, families))
    rotations = np.empty((count, families), np.int64)
    scales = np.empty((count, families))
    rows = np.arange(count)
    for k in range(families):
        lo, hi = offsets[k], offsets[k + 1]
        best = lo + relative[:, lo:hi].argmin(axis=1)
        errors[:, k] = relative[rows, best]
        rotations[:, k] = rotation_bins[best]
        scales[:, k] = scale[rows, best]
    return errors, rotations, scales


@dataclass(frozen=True)
class _Outline:
    cx: float
    cy: float
    errors: np.ndarray  # (F,) relative fit error per family
    rotations: np.ndarray  # (F,) best rotation bin per family
    scales: np.ndarray  # (F,) radius per family at that rotation

    def model(self, family: int, shrink: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) distance to the centre and (H, W) boundary radius of ``family``'s fitted outline."""
        ys, xs = np.mgrid[0:WORK_SIZE, 0:WORK_SIZE].astype(np.float64) + 0.5
        dx, dy = xs - self.cx, ys - self.cy
        boundary = _templates()[family, self.rotations[family]] * self.scales[family]
        return np.hypot(dx, dy), boundary[_polar_bins(dx, dy)] - shrink


def _fit_outline(visible: np.ndarray) -> _Outline:
    """Fit every family's outline to the subject, refining the centre on a shrinking 3x3 grid.

    Light markings that touch the outline merge with the white padding and cut notches into the
    visible silhouette; bins more than 10 % inside the first fit are left out of the second.
    """
    points = _contour_points(visible)
    ys, xs = np.nonzero(visible)
    cx, cy = float(xs.mean()) + 0.5, float(ys.mean()) + 0.5
    for step in (1.0, 0.5):
        offsets = np.array([(ox, oy) for ox in (-step, 0.0, step) for oy in (-step, 0.0, step)])
        centres = np.array([cx, cy]) + offsets
        profiles = np.stack([_boundary_profile(points, x, y) for x, y in centres])
        errors, rotations, scales = _fit_profiles(profiles, np.ones_like(profiles))
        family = errors.argmin(axis=1)
        rows = np.arange(len(centres))
        model = _templates()[family, rotations[rows, family]] * scales[rows, family][:, None]
        weights = (profiles >= 0.9 * model).astype(np.float64)
        errors, rotations, scales = _fit_profiles(profiles, weights)
        # Bins left out count as misfit, so that dropping bins is never free.
        score = errors.min(axis=1) + 0.02 * (1.0 - weights.mean(axis=1))
        k = int(score.argmin())
        cx, cy = float(centres[k, 0]), float(centres[k, 1])
    return _Outline(cx, cy, errors[k].astype(np.float32), rotations[k], scales[k])


def _grid_offsets() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sub = (np.arange(_CELL_SUB) + 0.5) / _CELL_SUB * 0.2 - 0.1
    along = (_CELL_CENTRES[:, None] + sub[None, :]).ravel()
    uu, vv = np.meshgrid(along, along)  # rows: v, columns: u
    cell = np.arange(len(along)) // _CELL_SUB
    cell_of = (cell[:, None] * 4 + cell[None, :]).ravel()
    return uu.ravel(), vv.ravel(), cell_of


def _glyph_cells(
    contrast: np.ndarray, cx: float, cy: float, radius: float, angles: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cell means (A, 16) of ``contrast`` under each candidate angle, and each angle's grid score."""
    uu, vv, cell_of = _grid_offsets()
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    xs = cx + (uu[None] * cos - vv[None] * sin) * radius
    ys = cy + (uu[None] * sin + vv[None] * cos) * radius
    map_x = (xs - 0.5).astype(np.float32)
    map_y = (ys - 0.5).astype(np.float32)
    values = cv2.remap(contrast, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    values = values.astype(np.float64)
    means = np.zeros((len(angles), 16))
    np.add.at(means.T, cell_of, values.T)
    means /= _CELL_SUB**2
    between = ((means - means.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    within = ((values - means[:, cell_of]) ** 2).sum(axis=1) / _CELL_SUB**2
    return means, between - within


def _accent_colour(
    smooth: np.ndarray, cells: np.ndarray, cx: float, cy: float, radius: float, angle: float
) -> np.ndarray:
    """Mean RGB at the centres of the most contrasting glyph cells (the markings)."""
    marked = np.argsort(cells)[-max(2, int((cells > 0.5 * (cells.min() + cells.max())).sum())) :]
    u = _CELL_CENTRES[marked % 4]
    v = _CELL_CENTRES[marked // 4]
    xs = cx + (u * np.cos(angle) - v * np.sin(angle)) * radius
    ys = cy + (u * np.sin(angle) + v * np.cos(angle)) * radius
    map_x, map_y = (xs - 0.5).astype(np.float32)[None], (ys - 0.5).astype(np.float32)[None]
    samples = cv2.remap(smooth, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return samples.reshape(-1, 3).mean(axis=0)


def _lab(rgb: np.ndarray) -> np.ndarray:
    pixel = (np.clip(rgb, 0, 255) / 255.0).astype(np.float32).reshape(1, 1, 3)
    return cv2.cvtColor(pixel, cv2.COLOR_RGB2Lab).reshape(3)


def _hue_of(rgb: np.ndarray) -> float:
    pixel = np.clip(rgb, 0, 255).astype(np.uint8).reshape(1, 1, 3)
    hsv = cv2.cvtColor(pixel, cv2.COLOR_RGB2HSV_FULL)
    return float(hsv[0, 0, 0]) / 256.0 * 2 * np.pi


def read_reference(image: np.ndarray) -> GlyphReading:
    """Read pose, hue, shape family and glyph from one prepared reference (S, S, 3) uint8."""
    image = np.asarray(image, np.uint8)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (S, S, 3) image, got shape {image.shape}")
    if image.shape[:2] != (WORK_SIZE, WORK_SIZE):
        image = cv2.resize(image, (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_AREA)
    visible = _foreground(image)
    if visible.sum() < 32:
        raise ValueError("reference has (almost) no subject pixels")
    outline = _fit_outline(visible)
    cx, cy, errors = outline.cx, outline.cy, outline.errors
    best = int(errors.argmin())

    smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.7)
    luma = 0.299 * smooth[..., 0] + 0.587 * smooth[..., 1] + 0.114 * smooth[..., 2]
    dist, boundary = outline.model(best, shrink=max(1.0, 0.12 * float(outline.scales[best])))
    inner = dist <= boundary
    annulus = inner & visible & (dist >= 0.7 * boundary)
    if annulus.sum() < 8:
        annulus = inner & visible
    if annulus.sum() < 8:
        raise ValueError("subject too small to read")
    body_rgb = np.median(smooth[annulus], axis=0)
    contrast = np.abs(luma - np.median(luma[annulus])).astype(np.float32)
    contrast[~inner] = 0.0

    # Hypotheses: the best-fitting family, plus its twin when the outline cannot tell them apart
    # (a square and a diamond have the same outline; only the glyph grid's orientation differs).
    families = [best] + [SHAPES.index(t) for t in _OUTLINE_TWINS.get(SHAPES[best], ())]
    hypotheses = []  # (score, family, angle, radius, cell means)
    for family in families:
        radius = float(outline.scales[family])
        order = SYMMETRY[SHAPES[family]]
        if order == 0:
            coarse = np.deg2rad(np.arange(0.0, 90.0, 3.0))
            _, scores = _glyph_cells(contrast, cx, cy, radius, coarse)
            fine = coarse[int(scores.argmax())] + np.deg2rad(np.arange(-2.0, 2.5, 1.0))
        else:
            base = outline.rotations[family] * 2 * np.pi / _BINS
            orbit = np.unique(np.round(np.mod(base + 2 * np.pi * np.arange(order) / order, np.pi / 2), 6))
            fine = (orbit[:, None] + np.deg2rad(np.arange(-6.0, 6.5, 1.5))[None, :]).ravel()
        means, scores = _glyph_cells(contrast, cx, cy, radius, fine)
        k = int(scores.argmax())
        hypotheses.append((float(scores[k]), family, float(fine[k]), radius, means[k]))
    _, family, angle, radius, cells = max(hypotheses, key=lambda h: h[0])
    accent = _accent_colour(smooth, cells, cx, cy, radius, angle)
    low, high = np.percentile(cells, 10), np.percentile(cells, 90)
    spread = max(float(high - low), 12.0)
    glyph = np.tanh((cells - 0.5 * (low + high)) / (0.2 * spread)).reshape(4, 4)
    return GlyphReading(
        centre=(cx, cy),
        radius=radius,
        angle=float(np.mod(angle, np.pi / 2)),
        family=family,
        shape_errors=errors,
        hue=_hue_of(body_rgb),
        accent_lab=_lab(accent),
        glyph=glyph.astype(np.float32),
    )


def glyph_invariant(glyph: np.ndarray) -> np.ndarray:
    """(256,) quarter-turn invariant second-order features of a (4, 4) soft glyph."""
    turns = np.stack([np.rot90(glyph, k).ravel() for k in range(4)])  # (4, 16)
    return np.einsum("ki,kj->ij", turns, turns).ravel()


def reading_vector(reading: GlyphReading) -> np.ndarray:
    """The weighted, L2-normalised feature vector (:data:`EMBED_DIM`) of a reading."""
    delta = np.angle(np.exp(1j * (_HUE_CENTRES - reading.hue)))
    hue = np.exp(-0.5 * (delta / _HUE_SIGMA) ** 2)
    shape = np.zeros(len(SHAPES))
    shape[reading.family] = 1.0
    accent = np.exp(-0.5 * (np.linalg.norm(_LAB_ANCHORS - reading.accent_lab, axis=1) / _LAB_SIGMA) ** 2)
    glyph = glyph_invariant(reading.glyph)
    blocks = []
    for name, block in (("hue", hue), ("shape", shape), ("accent", accent), ("glyph", glyph)):
        norm = float(np.linalg.norm(block))
        blocks.append(WEIGHTS[name] * (block / norm if norm > 1e-9 else block))
    vector = np.concatenate(blocks).astype(np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


class LibraWorldGlyphEmbedder:
    """:class:`~libragen.core.embed.ImageEmbedder` reading hue, shape family and glyph (no weights)."""

    name = "libraworld-glyph"

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 prepared references -> (N, EMBED_DIM) unit vectors (zero for blank ones)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (N, S, S, 3) images, got shape {images.shape}")
        out = np.zeros((len(images), EMBED_DIM), np.float32)
        for k, image in enumerate(images):
            try:
                out[k] = reading_vector(read_reference(image))
            except ValueError:
                continue  # blank or unreadable reference: zero vector, cosine 0 with everything
        return out
