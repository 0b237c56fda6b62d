"""Pool-wide near-duplicate search over perceptual hashes, with LSH banding so it scales past O(n^2).

Hashes are split into bands; two clips become candidates when any band is identical, and candidates
within ``max_distance`` bits are linked. Connected groups keep their best clip (highest quality score);
the others are rejected as near-duplicates. Hashes only propose candidates: on small frames, different clips of
similar smooth scenes can hash close, so each candidate pair is confirmed by :func:`aligned_correlation` of the
actual keyframes. With 24 bands of 8 bits, two 192-bit hashes at distance <= 23
always share a band (pigeonhole); pairs further apart (up to ``max_distance``) are found when they share one,
which near-duplicates (few, clustered bit flips) almost always do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import cv2
import numpy as np


def _bits(hex_hash: str) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_hash), np.uint8))


def aligned_correlation(a: np.ndarray, b: np.ndarray, max_shift: int, smooth: float = 1.0) -> float:
    """Best mean normalised correlation of two (K, H, W) keyframe stacks over shifts up to ``max_shift`` px.

    Brightness and contrast changes do not matter (zero-mean, unit-norm); a re-crop by a few pixels does not
    either (the shift search). Both stacks are first smoothed by a Gaussian of ``smooth`` px: a source larger
    than the analysis size re-cropped by a few of *its* pixels is shifted by a fraction of an analysis pixel,
    which no integer shift undoes — on LibraWorld at 640x360, copies fell to 0.87 unsmoothed and are >= 0.97
    smoothed, while different clips of the same kind of scene stay <= 0.90 at any size.
    """
    if a.shape != b.shape:
        b = np.stack([cv2.resize(frame, (a.shape[2], a.shape[1]), interpolation=cv2.INTER_AREA) for frame in b])
    if smooth > 0:
        a, b = (np.stack([cv2.GaussianBlur(frame, (0, 0), smooth) for frame in stack]) for stack in (a, b))
    height, width = a.shape[1:]
    best = -1.0
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            part_a = a[:, max(0, dy) : height + min(0, dy), max(0, dx) : width + min(0, dx)]
            part_b = b[:, max(0, -dy) : height + min(0, -dy), max(0, -dx) : width + min(0, -dx)]
            part_a = part_a - part_a.mean(axis=(1, 2), keepdims=True)
            part_b = part_b - part_b.mean(axis=(1, 2), keepdims=True)
            norm = np.sqrt((part_a**2).sum(axis=(1, 2)) * (part_b**2).sum(axis=(1, 2))) + 1e-6
            best = max(best, float(((part_a * part_b).sum(axis=(1, 2)) / norm).mean()))
    return best


def duplicate_groups(
    hashes: list[str | None],
    max_distance: int,
    bands: int = 24,
    verify: Callable[[int, int], bool] | None = None,
) -> list[list[int]]:
    """Groups (lists of indices, size >= 2) of hashes within ``max_distance`` bits of each other.

    ``verify(i, j)``, when given, must also confirm a candidate pair (indices into ``hashes``).
    """
    valid = [i for i, h in enumerate(hashes) if h]
    if not valid:
        return []
    bits = np.stack([_bits(hashes[i]) for i in valid])
    width = bits.shape[1] // bands
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for row, bit_row in enumerate(bits):
        for band in range(bands):
            buckets[(band, np.packbits(bit_row[band * width : (band + 1) * width]).tobytes())].append(row)
    parent = list(range(len(valid)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    checked: set[tuple[int, int]] = set()
    for members in buckets.values():
        for a_pos, a in enumerate(members):
            for b in members[a_pos + 1 :]:
                pair = (a, b) if a < b else (b, a)
                if pair in checked:
                    continue
                checked.add(pair)
                if int(np.count_nonzero(bits[a] != bits[b])) > max_distance:
                    continue
                if verify is None or verify(valid[a], valid[b]):
                    parent[find(a)] = find(b)
    groups: dict[int, list[int]] = defaultdict(list)
    for row in range(len(valid)):
        groups[find(row)].append(valid[row])
    return [sorted(g) for g in groups.values() if len(g) > 1]
