"""Weight-free visual-quality proxies: sharpness, noise, colourfulness, exposure, and their combination.

* Sharpness: variance of the Laplacian of luma (blur lowers it).
* Noise: Immerkær's fast estimate of the standard deviation of additive noise (grey levels).
* Colourfulness: Hasler & Süsstrunk's metric on RGB.
* Exposure: 1 - |mean luma - 118| / 118, minus the share of clipped (< 4 or > 251) pixels.

``visual_quality`` folds them into [0, 1]: ``sharp / (sharp + SHARPNESS_REF)`` rewards detail,
``exp(-noise / NOISE_REF)`` penalises noise, colourfulness saturates at ``COLOURFUL_REF``; the mean of the
four terms is the score. The constants come from 40 real held-out LibraWorld clips at 64 px (medians:
sharpness 2700, noise 3.3, colourfulness 48.5): ``SHARPNESS_REF`` is the median, so a typical real clip gets
0.5 on that term; a real clip's combined score is about 0.65-0.83 (10th-90th percentile). They are fixed
constants, never tuned per method.
Learned scorers (LAION aesthetic, MUSIQ, …) plug in through :mod:`libragen.eval.scorers`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

SHARPNESS_REF = 2700.0
NOISE_REF = 6.0
COLOURFUL_REF = 60.0
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def _luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def sharpness(frames: np.ndarray) -> float:
    """Mean over frames of the variance of the luma Laplacian."""
    return float(np.mean([cv2.Laplacian(y, cv2.CV_32F).var() for y in _luma(frames)]))


def noise_sigma(frames: np.ndarray) -> float:
    """Immerkær (1996) noise standard deviation estimate, averaged over frames."""
    values = []
    for y in _luma(frames):
        height, width = y.shape
        response = np.abs(cv2.filter2D(y, -1, _IMMERKAER))[1:-1, 1:-1]
        values.append(np.sqrt(np.pi / 2) * response.sum() / (6.0 * (width - 2) * (height - 2)))
    return float(np.mean(values))


def colourfulness(frames: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness of the frames taken together."""
    rgb = frames.astype(np.float32)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def exposure(frames: np.ndarray) -> float:
    """1 at a mid-grey mean with nothing clipped; lower when too dark, too bright or clipped."""
    y = _luma(frames)
    clipped = float(((y < 4) | (y > 251)).mean())
    return float(max(0.0, 1.0 - abs(float(y.mean()) - 118.0) / 118.0 - clipped))


@dataclass(frozen=True)
class QualityScores:
    sharpness: float
    noise: float
    colourfulness: float
    exposure: float
    visual_quality: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def quality_scores(frames: np.ndarray) -> QualityScores:
    """All weight-free quality proxies of one video, and their [0, 1] combination."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected (T, H, W, 3) frames, got {frames.shape}")
    sharp, noise, colour, expo = sharpness(frames), noise_sigma(frames), colourfulness(frames), exposure(frames)
    combined = np.mean(
        [
            sharp / (sharp + SHARPNESS_REF),
            np.exp(-noise / NOISE_REF),
            min(1.0, colour / COLOURFUL_REF),
            expo,
        ]
    )
    return QualityScores(sharp, noise, colour, expo, float(combined))
