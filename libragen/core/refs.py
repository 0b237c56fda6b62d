"""Reference-image preprocessing shared by pairs, training, inference and evaluation.

One function turns "a subject in a frame" into the square reference image every model and probe
sees: crop around the subject's box (with a margin), paint everything outside its mask white,
resize keeping the aspect ratio, and pad with white to a square (Phantom's convention). A user's
reference image (no box, no mask) goes through the same resize-and-pad.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

WHITE = 255


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) or (H, W, 4) image, got shape {array.shape}")
    if array.shape[-1] == 4:  # composite RGBA on white
        alpha = array[..., 3:].astype(np.float32) / 255.0
        array = (array[..., :3].astype(np.float32) * alpha + WHITE * (1 - alpha)).round()
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return array


def pad_to_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize ``image`` so its longer side is ``size`` (aspect kept) and centre it on a white square."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    rgb = _as_rgb_uint8(image)
    height, width = rgb.shape[:2]
    if height == 0 or width == 0:
        raise ValueError("empty image")
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BICUBIC if scale > 1 else Image.BOX))
    canvas = np.full((size, size, 3), WHITE, np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def crop_box(
    box: tuple[float, float, float, float] | np.ndarray, frame_shape: tuple[int, ...], margin: float = 0.1
) -> tuple[int, int, int, int]:
    """Integer crop window (x0, y0, x1, y1) around ``box`` grown by ``margin`` of its size, inside the frame."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not np.all(np.isfinite([x0, y0, x1, y1])) or x1 <= x0 or y1 <= y0:
        raise ValueError(f"invalid box {box}")
    grow_x, grow_y = (x1 - x0) * margin, (y1 - y0) * margin
    height, width = frame_shape[:2]
    return (
        max(0, int(np.floor(x0 - grow_x))),
        max(0, int(np.floor(y0 - grow_y))),
        min(width, int(np.ceil(x1 + grow_x))),
        min(height, int(np.ceil(y1 + grow_y))),
    )


def prepare_reference(
    image: np.ndarray,
    *,
    box: tuple[float, float, float, float] | np.ndarray | None = None,
    mask: np.ndarray | None = None,
    size: int = 64,
    margin: float = 0.1,
) -> np.ndarray:
    """The canonical (size, size, 3) uint8 reference image of a subject.

    ``image`` is a frame or a user's picture; ``box`` (x0, y0, x1, y1, pixels) selects the subject,
    ``mask`` (H, W bool, same size as ``image``) whitens everything that is not the subject. With
    neither, the whole image is resized and padded.
    """
    rgb = _as_rgb_uint8(image)
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match image {rgb.shape[:2]}")
        rgb = np.where(mask[..., None], rgb, np.uint8(WHITE))
        if box is None:
            ys, xs = np.nonzero(mask)
            if len(xs) == 0:
                raise ValueError("mask is empty: the subject is not visible")
            box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    if box is not None:
        x0, y0, x1, y1 = crop_box(box, rgb.shape, margin)
        rgb = rgb[y0:y1, x0:x1]
    return pad_to_square(rgb, size)
