"""Apply a clip's injected defect: pixel-level edits after rendering, and file-level corruption.

Pixel defects (``cut``, ``text_overlay``, ``blur``, ``letterbox``, ``low_resolution``,
``too_short``, ``near_duplicate``) transform a :class:`RenderedClip` and keep its masks and boxes
true to what is shown. Defects decided at planning time (``static``, ``subject_too_small``,
``occluded``) are already in the spec. Encoding defects (``low_bitrate``) change encoder options,
and file defects (``truncated``, ``zero_bytes``, ``not_video``) damage the written file.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from libragen.core.files import write_bytes_atomic
from libragen.world.render import RenderedClip, render_spec
from libragen.world.spec import ClipSpec


@dataclass(frozen=True)
class EncodeOptions:
    crf: int
    qp: int | None = None


def render_with_defect(spec: ClipSpec, crf: int) -> tuple[RenderedClip, EncodeOptions]:
    """Render ``spec`` and apply its pixel/encoding defect, if any."""
    defect = spec.defect
    if defect is not None and defect.kind == "near_duplicate":
        assert defect.source is not None
        clip = render_spec(defect.source)
    else:
        clip = render_spec(spec)
    if defect is None:
        return clip, EncodeOptions(crf=crf)
    kind, params = defect.kind, defect.params
    if kind == "cut":
        assert defect.second_shot is not None
        clip = _splice(clip, render_spec(defect.second_shot), int(params["cut_frame"]))
    elif kind == "text_overlay":
        clip = _overlay_text(clip, str(params["text"]), str(params["placement"]))
    elif kind == "blur":
        clip = _replace_frames(clip, _gaussian_blur(clip.frames, float(params["sigma"])))
    elif kind == "letterbox":
        clip = _bars(clip, str(params["orientation"]), int(params["bar_px"]))
    elif kind == "low_resolution":
        clip = _downscale(clip, int(params["width"]), int(params["height"]))
    elif kind == "too_short":
        keep = int(params["frames"])
        clip = RenderedClip(clip.frames[:keep], clip.masks[:, :keep], clip.boxes[:, :keep], clip.full_area[:, :keep])
    elif kind == "near_duplicate":
        clip = _near_copy(clip, float(params["brightness"]), int(params["shift_px"]))
        return clip, EncodeOptions(crf=int(params["crf"]))
    elif kind == "low_bitrate":
        return clip, EncodeOptions(crf=crf, qp=int(params["qp"]))
    return clip, EncodeOptions(crf=crf)


def damage_file(path: str | os.PathLike[str], spec: ClipSpec) -> None:
    """Corrupt an already written clip according to a file defect (no-op for other kinds)."""
    defect = spec.defect
    if defect is None:
        return
    path = Path(path)
    if defect.kind == "truncated":
        data = path.read_bytes()
        write_bytes_atomic(path, data[: int(len(data) * float(defect.params["keep_fraction"]))])
    elif defect.kind == "zero_bytes":
        write_bytes_atomic(path, b"")
    elif defect.kind == "not_video":
        rng = np.random.default_rng(spec.texture_seed)
        junk = b"This is not a video. " + rng.integers(0, 256, size=2048, dtype=np.uint8).tobytes()
        write_bytes_atomic(path, junk)


def _replace_frames(clip: RenderedClip, frames: np.ndarray) -> RenderedClip:
    return RenderedClip(frames, clip.masks, clip.boxes, clip.full_area)


def _splice(first: RenderedClip, second: RenderedClip, cut: int) -> RenderedClip:
    return RenderedClip(
        frames=np.concatenate([first.frames[:cut], second.frames[cut:]]),
        masks=np.concatenate([first.masks[:, :cut], second.masks[:, cut:]], axis=1),
        boxes=np.concatenate([first.boxes[:, :cut], second.boxes[:, cut:]], axis=1),
        full_area=np.concatenate([first.full_area[:, :cut], second.full_area[:, cut:]], axis=1),
    )


@functools.cache
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def text_box(width: int, height: int, text: str, placement: str) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) that :func:`_overlay_text` fills for this text and placement."""
    size = max(8, round(height * (0.17 if placement == "title" else 0.14)))
    left, top, right, bottom = _font(size).getbbox(text)
    text_w, text_h = right - left, bottom - top
    if placement == "subtitle":
        x, y = (width - text_w) // 2, height - text_h - max(2, height // 16)
    elif placement == "watermark":
        x, y = width - text_w - 2, 2
    else:  # title
        x, y = (width - text_w) // 2, max(2, height // 10)
    return max(0, x), max(0, y), min(width, x + text_w), min(height, y + text_h)


def _overlay_text(clip: RenderedClip, text: str, placement: str) -> RenderedClip:
    """Burn the same white, black-outlined text into every frame."""
    height, width = clip.frames.shape[1:3]
    size = max(8, round(height * (0.17 if placement == "title" else 0.14)))
    x0, y0, _, _ = text_box(width, height, text, placement)
    left, top, _, _ = _font(size).getbbox(text)
    layer = Image.new("L", (width, height), 0)
    outline = Image.new("L", (width, height), 0)
    ImageDraw.Draw(layer).text((x0 - left, y0 - top), text, fill=255, font=_font(size))
    ImageDraw.Draw(outline).text(
        (x0 - left, y0 - top), text, fill=255, font=_font(size), stroke_width=1, stroke_fill=255
    )
    fill = np.asarray(layer, np.float32)[None, ..., None] / 255.0
    ring = np.clip(np.asarray(outline, np.float32)[None, ..., None] / 255.0 - fill, 0, 1)
    frames = clip.frames.astype(np.float32)
    frames = frames * (1 - ring) + 10.0 * ring
    frames = frames * (1 - fill) + 250.0 * fill
    covered = (np.asarray(outline) > 127)[None, None]
    return RenderedClip(
        np.clip(frames + 0.5, 0, 255).astype(np.uint8), clip.masks & ~covered, clip.boxes, clip.full_area
    )


def _gaussian_blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    blur = ImageFilter.GaussianBlur(radius=sigma)  # PIL's radius is the Gaussian's sigma
    return np.stack([np.asarray(Image.fromarray(frame).filter(blur)) for frame in frames])


def _bars(clip: RenderedClip, orientation: str, bar: int) -> RenderedClip:
    frames, masks = clip.frames.copy(), clip.masks.copy()
    if orientation == "letterbox":
        frames[:, :bar], frames[:, -bar:] = 0, 0
        masks[:, :, :bar], masks[:, :, -bar:] = False, False
    else:
        frames[:, :, :bar], frames[:, :, -bar:] = 0, 0
        masks[:, :, :, :bar], masks[:, :, :, -bar:] = False, False
    return RenderedClip(frames, masks, clip.boxes, clip.full_area)


def _downscale(clip: RenderedClip, width: int, height: int) -> RenderedClip:
    src_h, src_w = clip.frames.shape[1:3]
    frames = np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BOX)) for f in clip.frames])
    masks = np.zeros((*clip.masks.shape[:2], height, width), bool)
    for s in range(clip.masks.shape[0]):
        for t in range(clip.masks.shape[1]):
            small = Image.fromarray(clip.masks[s, t].astype(np.uint8) * 255).resize((width, height), Image.BOX)
            masks[s, t] = np.asarray(small) > 127
    factor = np.array([width / src_w, height / src_h] * 2, np.float32)
    area_factor = (width * height) / (src_w * src_h)
    return RenderedClip(frames, masks, clip.boxes * factor, clip.full_area * area_factor)


def _near_copy(clip: RenderedClip, brightness: float, shift: int) -> RenderedClip:
    """A re-edit of a clip: brightness nudged and content shifted right/down by ``shift`` pixels."""
    frames = np.clip(clip.frames.astype(np.float32) + 255.0 * brightness, 0, 255)
    frames = np.pad(frames, ((0, 0), (shift, 0), (shift, 0), (0, 0)), mode="edge")[
        :, : clip.frames.shape[1], : clip.frames.shape[2]
    ]
    masks = np.pad(clip.masks, ((0, 0), (0, 0), (shift, 0), (shift, 0)))[
        :, :, : clip.masks.shape[2], : clip.masks.shape[3]
    ]
    return RenderedClip((frames + 0.5).astype(np.uint8), masks, clip.boxes + shift, clip.full_area)
