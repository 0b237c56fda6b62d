"""The image-embedder interface shared by identity retrieval (pairs) and subject consistency (eval).

An embedder maps prepared reference-style images (see :mod:`libragen.core.refs`) to L2-normalised
vectors; cosine similarity between two vectors says how alike the two subjects are. LibraWorld ships
a trained identity encoder; real footage plugs in DINO/CLIP/face models loaded from a local path.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ImageEmbedder(Protocol):
    """Maps (N, S, S, 3) uint8 images to (N, D) float32 L2-normalised embeddings."""

    name: str

    def embed(self, images: np.ndarray) -> np.ndarray: ...


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) cosine similarities of two sets of embeddings (normalised here for safety)."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T
