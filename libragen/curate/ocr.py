"""The optional OCR backend of the text-overlay check (RapidOCR on ONNX Runtime, models in its wheel).

Burned-in text (subtitles, watermarks, channel logos) stays at one place while the picture changes; text that
a subject carries moves with it, and OCR misreads some shapes as characters. So a text line counts only when
it is read with ``ocr_min_confidence`` in at least two of ``ocr_frames`` detail frames at boxes overlapping by
IoU >= 0.5; ``ocr_text_fraction`` is the share of the frame those steady lines cover. OCR is slow (~0.3 s a
720p frame on one core), so it reads only clips every other check kept.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np

from libragen.curate.config import CurateConfig

STEADY_IOU = 0.5


@functools.cache
def ocr_available() -> bool:
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


def skipped_notice(config: CurateConfig) -> str | None:
    """Why the configured OCR backend will not run, if it will not."""
    if config.text_backend == "rapidocr" and not ocr_available():
        return "OCR text check skipped: rapidocr_onnxruntime is not installed (pip install 'libragen[ocr]')"
    return None


@functools.cache
def _engine():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def _boxes(luma: np.ndarray, min_confidence: float) -> np.ndarray:
    """Axis-aligned boxes (N, 4) x0, y0, x1, y1 of the text lines read in one luma frame."""
    gray = np.clip(luma, 0, 255).astype(np.uint8)
    found, _ = _engine()(np.repeat(gray[..., None], 3, axis=2))
    quads = [np.asarray(points, dtype=np.float64) for points, _text, score in (found or []) if score >= min_confidence]
    return np.array([[*q.min(0), *q.max(0)] for q in quads]).reshape(-1, 4)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of boxes."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area = lambda boxes: np.prod(boxes[:, 2:] - boxes[:, :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def steady_text_fraction(luma: np.ndarray, config: CurateConfig) -> float:
    """Share of the frame covered by text read at the same place in >= 2 of ``ocr_frames`` frames of ``luma``
    (K, H, W) uint8, evenly spaced."""
    picks = np.linspace(0, len(luma) - 1, min(config.ocr_frames, len(luma))).round().astype(int)
    per_frame = [_boxes(luma[i], config.ocr_min_confidence) for i in picks]
    steady = []
    for index, boxes in enumerate(per_frame):
        others = [b for j, b in enumerate(per_frame) if j != index and len(b)]
        for box in boxes:
            if any(_iou(box[None], other).max() >= STEADY_IOU for other in others):
                steady.append(box)
    if not steady:
        return 0.0
    height, width = luma.shape[1:]
    mask = np.zeros((height, width), bool)  # the union of the steady boxes, each line counted once
    for x0, y0, x1, y1 in np.array(steady).round().astype(int):
        mask[max(y0, 0) : y1, max(x0, 0) : x1] = True
    return float(mask.mean())
