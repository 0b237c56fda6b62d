"""Cross-pair retrieval: same identity, different clip, found by embedding and verified by threshold.

Each subject appearance (a tagged subject in one clip) gets one identity vector: the normalised
mean of the embeddings of up to ``embed_views`` of its views spread over the clip (single views
of small subjects are noisy; the mean is not). For every appearance, the other clips'
appearances are ranked by cosine similarity; those at or above the verification ``threshold``
are the candidates, best first. Appearances of the same clip are never candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libragen.core.embed import ImageEmbedder


def identity_vectors(view_embeddings: list[np.ndarray]) -> np.ndarray:
    """(N, D) unit vectors, one per appearance, from each appearance's (k, D) view embeddings."""
    if not view_embeddings:
        return np.zeros((0, 0), np.float32)
    means = np.stack([np.asarray(e, np.float64).mean(axis=0) for e in view_embeddings])
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return (means / np.maximum(norms, 1e-12)).astype(np.float32)


def embed_views(embedder: ImageEmbedder, views: list[np.ndarray], batch: int = 256) -> list[np.ndarray]:
    """Embed every appearance's (k, S, S, 3) view stack in batches; returns (k, D) per appearance."""
    if not views:
        return []
    flat = np.concatenate(views)
    parts = [embedder.embed(flat[start : start + batch]) for start in range(0, len(flat), batch)]
    embeddings = np.concatenate(parts).astype(np.float32)
    bounds = np.cumsum([0] + [len(v) for v in views])
    return [embeddings[bounds[i] : bounds[i + 1]] for i in range(len(views))]


@dataclass(frozen=True)
class Candidate:
    """One verified retrieval result: appearance ``index`` at cosine ``similarity``."""

    index: int
    similarity: float


def cross_candidates(
    vectors: np.ndarray, groups: np.ndarray, threshold: float, limit: int, chunk: int = 2048
) -> list[list[Candidate]]:
    """Per appearance, up to ``limit`` appearances of other groups (clips) with cosine >= threshold.

    ``groups[i]`` is appearance i's clip; ``vectors`` are unit rows. Work is chunked over queries
    so memory stays O(chunk x N).
    """
    count = len(vectors)
    groups = np.asarray(groups)
    results: list[list[Candidate]] = []
    for start in range(0, count, chunk):
        sims = vectors[start : start + chunk] @ vectors.T
        sims[groups[start : start + chunk, None] == groups[None, :]] = -np.inf
        for row in sims:
            order = np.argsort(-row, kind="stable")[:limit]
            results.append([Candidate(int(j), float(row[j])) for j in order if row[j] >= threshold])
    return results
