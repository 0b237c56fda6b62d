"""Pool-wide near-duplicate search over perceptual hashes, with LSH banding so it scales past O(n^2).

Hashes are split into bands; two clips become candidates when any band is identical, and candidates
within ``max_distance`` bits are linked. Connected groups keep their best clip (highest quality score);
the others are rejected as near-duplicates. With 24 bands of 8 bits, two 192-bit hashes at distance <= 23
always share a band (pigeonhole); pairs further apart (up to ``max_distance``) are found when they share one,
which near-duplicates (few, clustered bit flips) almost always do.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def _bits(hex_hash: str) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_hash), np.uint8))


def duplicate_groups(hashes: list[str | None], max_distance: int, bands: int = 24) -> list[list[int]]:
    """Groups (lists of indices, size >= 2) of hashes within ``max_distance`` bits of each other."""
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
                if int(np.count_nonzero(bits[a] != bits[b])) <= max_distance:
                    parent[find(a)] = find(b)
    groups: dict[int, list[int]] = defaultdict(list)
    for row in range(len(valid)):
        groups[find(row)].append(valid[row])
    return [sorted(g) for g in groups.values() if len(g) > 1]
