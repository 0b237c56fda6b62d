"""Views of a subject: which frames show it well, the in-pair frame choice, crops and augmentation.

* A **view** is a frame where the subject's visible area is at least ``min_area_px`` and at least
  ``min_visible_ratio`` of the area its size trend through the clip predicts (so half-hidden or
  clipped frames are not used). A view where the subject touches another subject is a possible
  occlusion the area may not reveal: it is dropped when the area there is below the ratio of the
  subject's largest untouched area, and the reference frames (in-pair, and the view offered as a
  cross-pair reference) prefer untouched views. Everything here works from the masks alone.
* **In-pair frame**: a view at least ``min_frame_gap`` of the clip after the subject's first
  visible frame (the target's first frame is what a copy-pasting model would reproduce), picked at
  random among the ``inpair_top_k`` views whose pose differs most from that first frame (centre
  shift in subject sizes plus log area ratio). If no view is that far, the most changed of the other
  views is used and the build counts an ``inpair_frame_fallbacks``.
* **Augmentation** (in-pair only; cross-pair references already differ in pose and context): a
  random rotation about the subject's centre, a brightness gain, a jittered crop margin and an
  optional horizontal flip (off by default: LibraWorld glyphs are chiral, so a flip changes the
  identity). The reference is then made by :func:`libragen.core.refs.prepare_reference`, the one
  function inference also uses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from libragen.core.refs import crop_box, prepare_reference
from libragen.pairs.config import PairsConfig
from libragen.pairs.subjects import SubjectTrack


def expected_areas(areas: np.ndarray) -> np.ndarray:
    """(T,) the subject's unoccluded area per frame: a log-linear trend through its largest areas.

    Subjects may grow or shrink steadily through a clip; occlusion and clipping show up as dips
    below that trend. The trend is refitted twice without the points well below it.
    """
    frames = np.flatnonzero(areas > 0)
    if len(frames) < 3:
        return np.full(len(areas), float(areas.max(initial=0)))
    keep = frames
    log_area = np.log(areas.astype(np.float64).clip(min=1.0))
    for _ in range(3):
        slope, intercept = np.polyfit(keep, log_area[keep], 1)
        fit = intercept + slope * frames
        keep = frames[log_area[frames] >= fit - 0.05]
        if len(keep) < 2:
            keep = frames
            break
    slope, intercept = np.polyfit(keep, log_area[keep], 1)
    return np.exp(intercept + slope * np.arange(len(areas)))


def contact_pixels(tracks: list[SubjectTrack]) -> list[np.ndarray]:
    """Per track, (T,) pixels where its mask, grown by one pixel, meets another subject's mask.

    Touching another subject is the visible sign of a possible occlusion (of either one) that a
    segmenter's visible masks give away; the area alone does not when a subject is never seen whole.
    """
    if len(tracks) < 2:
        return [np.zeros(len(t.masks), np.int64) for t in tracks]
    stacked = np.stack([t.masks for t in tracks])  # (S, T, H, W)
    kernel = np.ones((3, 3), np.uint8)
    contacts = []
    for k, track in enumerate(tracks):
        others = np.delete(stacked, k, axis=0).any(axis=0)
        grown = np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in track.masks])
        contacts.append((grown & others).reshape(len(others), -1).sum(axis=1))
    return contacts


def usable_views(track: SubjectTrack, config: PairsConfig) -> np.ndarray:
    """Frame indices where the subject is a usable view (may be empty).

    A view shows at least ``min_area_px`` pixels and at least ``min_visible_ratio`` of the area
    the subject's size trend expects in that frame (so partly hidden frames are left out, but a
    subject that grows through the clip still has views at both ends).
    """
    areas = track.areas
    if areas.max(initial=0) < config.min_area_px:
        return np.zeros(0, np.int64)
    floor = np.maximum(config.min_area_px, config.min_visible_ratio * expected_areas(areas))
    return np.flatnonzero(areas >= floor)


def screen_contacts(
    track: SubjectTrack, views: np.ndarray, contact: np.ndarray, config: PairsConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Split views by contact with other subjects (see :func:`contact_pixels`).

    Returns ``(views, clear)``: ``clear`` are the views touching no other subject; a touching
    view is kept only when the subject there is at least ``min_visible_ratio`` of its largest
    clear area (a subject that shrinks while it touches another is taken as being covered).
    """
    clear = views[contact[views] == 0]
    if len(clear) == 0:
        return views, clear
    floor = config.min_visible_ratio * float(track.areas[clear].max())
    keep = (contact[views] == 0) | (track.areas[views] >= floor)
    return views[keep], clear


def spread(views: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` views evenly spread over time."""
    if len(views) <= k:
        return views
    return views[np.linspace(0, len(views) - 1, k).round().astype(int)]


def best_view(track: SubjectTrack, views: np.ndarray) -> int:
    """The view with the largest visible area (ties: nearest the middle of the views)."""
    areas = track.areas[views]
    middle = views[len(views) // 2]
    order = sorted(views[areas == areas.max()], key=lambda t: abs(int(t) - int(middle)))
    return int(order[0])


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)


def inpair_frame(
    track: SubjectTrack,
    views: np.ndarray,
    config: PairsConfig,
    rng: np.random.Generator,
    clear: np.ndarray | None = None,
) -> tuple[int, bool]:
    """The in-pair reference frame and whether the gap rule had to be relaxed.

    Candidates, in order of preference: clear views past the gap, any view past the gap, clear
    views other than the first visible frame, any such view (``clear`` defaults to ``views``).
    """
    areas = track.areas
    anchor = int(np.flatnonzero(areas > 0)[0])
    gap = max(1, math.ceil(config.min_frame_gap * (len(areas) - 1)))
    clear = views if clear is None else clear
    tiers = [clear[clear >= anchor + gap], views[views >= anchor + gap], clear[clear != anchor], views[views != anchor]]
    fallback = len(tiers[0]) == 0 and len(tiers[1]) == 0
    candidates = next((tier for tier in tiers if len(tier)), views)
    size = math.sqrt(max(float(areas[anchor]), 1.0))
    anchor_centre = _centre(track.boxes[anchor])
    change = np.array(
        [
            np.linalg.norm(_centre(track.boxes[t]) - anchor_centre) / size
            + abs(math.log(max(float(areas[t]), 1.0) / max(float(areas[anchor]), 1.0)))
            for t in candidates
        ]
    )
    top = candidates[np.argsort(-change, kind="stable")[: config.inpair_top_k]]
    return int(rng.choice(top)), fallback


def subject_box(track: SubjectTrack, frame: int) -> tuple[float, float, float, float]:
    """The subject's visible box (x0, y0, x1, y1) in ``frame``."""
    x0, y0, x1, y1 = (float(v) for v in track.boxes[frame])
    return x0, y0, x1, y1


def background_crop(image: np.ndarray, box: tuple[float, float, float, float], margin: float) -> np.ndarray:
    """The crop window around ``box`` with its background, at native scale (for copy-paste risk)."""
    x0, y0, x1, y1 = crop_box(box, image.shape, margin)
    return np.ascontiguousarray(image[y0:y1, x0:x1])


@dataclass(frozen=True)
class Augmentation:
    """The random changes applied to one in-pair reference (recorded in the samples manifest)."""

    rotate_deg: float = 0.0
    gain: float = 1.0
    margin: float = 0.1
    hflip: bool = False

    def to_dict(self) -> dict[str, float | bool]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def draw_augmentation(config: PairsConfig, rng: np.random.Generator) -> Augmentation:
    """Draw one augmentation from the config's ranges."""
    return Augmentation(
        rotate_deg=float(rng.uniform(-config.rotate_deg, config.rotate_deg)),
        gain=float(rng.uniform(1 - config.brightness, 1 + config.brightness)),
        margin=float(max(0.0, config.margin + rng.uniform(-config.margin_jitter, config.margin_jitter))),
        hflip=bool(rng.random() < config.hflip),
    )


def augmented_reference(
    image: np.ndarray, mask: np.ndarray, augmentation: Augmentation, size: int
) -> tuple[np.ndarray, Augmentation]:
    """Prepared reference of the subject in ``mask`` after ``augmentation``.

    The rotation is dropped (and reported as 0) when it would push part of the subject out of the
    frame, so the reference always shows the whole subject.
    """
    frame = image.astype(np.float32)
    subject = mask.astype(np.uint8)
    if augmentation.rotate_deg:
        ys, xs = np.nonzero(mask)
        centre = (float(xs.mean()), float(ys.mean()))
        matrix = cv2.getRotationMatrix2D(centre, augmentation.rotate_deg, 1.0)
        height, width = mask.shape
        coverage = cv2.warpAffine(subject.astype(np.float32), matrix, (width, height), flags=cv2.INTER_LINEAR)
        rotated_mask = (coverage > 0.5).astype(np.uint8)
        if rotated_mask.sum() >= 0.95 * subject.sum():
            frame = cv2.warpAffine(
                frame, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
            subject = rotated_mask
        else:
            augmentation = Augmentation(0.0, augmentation.gain, augmentation.margin, augmentation.hflip)
    if augmentation.hflip:
        frame, subject = frame[:, ::-1], subject[:, ::-1]
    frame = np.clip(frame * augmentation.gain, 0, 255).astype(np.uint8)
    reference = prepare_reference(frame, mask=subject.astype(bool), size=size, margin=augmentation.margin)
    return reference, augmentation
