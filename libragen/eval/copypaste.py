"""Copy-paste score: do the frames reproduce a reference image's exact pixels (pose, scale, background)?

A model that learned to re-render a subject shows it in new poses, sizes and surroundings; one that
learned to copy (the failure in-pair training invites) pastes the reference as it was. The score is
the best zero-mean normalised cross-correlation (OpenCV ``matchTemplate``, ``TM_CCOEFF_NORMED``)
of the reference against any frame, at any position, over a few scales: 1.0 is a pixel-exact paste,
values near 0 mean nothing in the video looks like that exact image.

White padding of a prepared reference (see :mod:`libragen.core.refs`) is masked out, so only the
subject (and any background the reference kept) is compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

#: Scale search around the expected size: a 1-pixel size error already costs a lot of NCC on
#: subjects 15-30 px tall, so even a "known" scale is searched +-20 %.
DEFAULT_SCALES: tuple[float, ...] = tuple(float(x) for x in np.geomspace(0.8, 1.25, 11))
_SMOOTH_SIGMA = 0.7  # light blur on both sides makes sub-pixel misalignment cost less
_PAD_THRESHOLD = 250  # pixels at least this bright in every channel count as white padding


def _trim_padding(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop white padding off a reference; return the crop and its mask of non-padding pixels."""
    content = ~np.all(reference >= _PAD_THRESHOLD, axis=-1)
    if not content.any():
        raise ValueError("reference is blank (all white)")
    ys, xs = np.nonzero(content)
    window = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return reference[window], content[window]


def _smooth(image: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), _SMOOTH_SIGMA)


def copy_paste_score(
    reference: np.ndarray,
    frames: np.ndarray,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    reference_height: float | None = None,
) -> float:
    """Highest masked NCC of ``reference`` (h, w, 3) uint8 against ``frames`` (T, H, W, 3) uint8.

    ``reference_height`` (pixels) is the subject's height in frame pixels that the reference should
    be matched at (e.g. the box height it was cropped from); None matches the trimmed reference at
    its own size. ``scales`` multiply that size (use several when the paste scale is unknown).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"frames must be (T, H, W, 3) with T > 0, got {frames.shape}")
    template, mask = _trim_padding(np.asarray(reference, np.uint8))
    base = 1.0 if reference_height is None else reference_height / template.shape[0]
    best = -1.0
    frame_h, frame_w = frames.shape[1:3]
    smoothed = [_smooth(np.ascontiguousarray(frame, dtype=np.uint8)) for frame in frames]
    for scale in scales:
        factor = base * scale
        height, width = round(template.shape[0] * factor), round(template.shape[1] * factor)
        if height < 4 or width < 4 or height > frame_h or width > frame_w:
            continue
        tpl = _smooth(cv2.resize(template, (width, height), interpolation=cv2.INTER_AREA))
        tpl_mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        if not tpl_mask.all():  # drop the outline ring, where subject and padding were blended
            tpl_mask = cv2.erode(tpl_mask, np.ones((3, 3), np.uint8))
        if tpl_mask.sum() < 8 or tpl[tpl_mask > 0].std() < 1.0:
            continue
        tpl_mask3 = np.repeat(tpl_mask[..., None], 3, axis=-1)
        for frame in smoothed:
            response = cv2.matchTemplate(frame, tpl, cv2.TM_CCOEFF_NORMED, mask=tpl_mask3)
            response = np.nan_to_num(response, nan=-1.0, posinf=-1.0, neginf=-1.0)
            best = max(best, float(response.max()))
    return float(np.clip(best, -1.0, 1.0))
