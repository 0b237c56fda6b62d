"""Realism: Fréchet distance between feature sets of real and generated videos.

Features are the attribute probe's global video embedding (trained on real LibraWorld clips only), so
the distance plays the role FVD plays with I3D features. With fewer videos than feature dimensions the
covariances are rank-deficient; the matrix square root is taken through a symmetric eigen-decomposition,
which stays well defined for positive semi-definite matrices.
"""

from __future__ import annotations

import numpy as np
import torch

from libragen.eval.probe_data import sample_frames
from libragen.eval.probe_models import AttributeProbe


@torch.no_grad()
def video_features(probe: AttributeProbe, videos: list[np.ndarray]) -> np.ndarray:
    """(N, D) probe embeddings of videos (each resampled to the probe's frame count)."""
    batch = np.stack([sample_frames(np.asarray(v), probe.frames) for v in videos])
    return probe.pooled(probe.features(torch.from_numpy(batch))).numpy().astype(np.float64)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(real: np.ndarray, generated: np.ndarray) -> float:
    """||mu_r - mu_g||^2 + Tr(C_r + C_g - 2 (C_r^1/2 C_g C_r^1/2)^1/2)."""
    if len(real) < 2 or len(generated) < 2:
        raise ValueError("Fréchet distance needs at least 2 videos on each side")
    mu_r, mu_g = real.mean(0), generated.mean(0)
    cov_r, cov_g = np.cov(real, rowvar=False), np.cov(generated, rowvar=False)
    root_r = _sqrt_psd(cov_r)
    cross = _sqrt_psd(root_r @ cov_g @ root_r)
    return float(np.sum((mu_r - mu_g) ** 2) + np.trace(cov_r) + np.trace(cov_g) - 2 * np.trace(cross))
