"""Files the browser may fetch: videos only from the data roots, and reference crops of a clip's subjects.

A media URL is ``/media/<root number>/<path inside that root>``. :func:`resolve_media` resolves the joined
path (following symlinks) and serves it only when the result is still inside that root, is a regular
file and has a video suffix; anything else (``..``, absolute paths, symlinks out, other files) is refused.
Reference crops come from :func:`libragen.core.refs.prepare_reference` on the frame where the subject
is most visible, cut by its ground-truth box.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from libragen.core.refs import prepare_reference
from libragen.core.video import read_video

VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".m4v"})


class MediaRoots:
    """The data roots, resolved once; maps files to URLs and URLs back to files."""

    def __init__(self, roots: list[Path] | tuple[Path, ...]) -> None:
        resolved: list[Path] = []
        for root in roots:
            path = Path(root).resolve()
            if path not in resolved:
                resolved.append(path)
        self.roots = resolved

    def url_for(self, path: str | os.PathLike[str]) -> str | None:
        """The media URL of a file inside a root, or None when it is outside every root."""
        target = Path(path).resolve()
        for number, root in enumerate(self.roots):
            if target.is_relative_to(root):
                return f"/media/{number}/" + quote(target.relative_to(root).as_posix())
        return None

    def resolve(self, root_number: int, relative: str) -> Path | None:
        """The file a media URL names, or None when it escapes the root or is not a servable video."""
        if not 0 <= root_number < len(self.roots) or not relative or "\x00" in relative:
            return None
        root = self.roots[root_number]
        candidate = Path(relative)
        if candidate.is_absolute():
            return None
        try:
            target = (root / candidate).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not target.is_relative_to(root) or not target.is_file() or target.suffix.lower() not in VIDEO_SUFFIXES:
            return None
        return target


class RefCache:
    """PNG reference crops per (clip, content hash, subject), built on first request, kept in a small LRU."""

    def __init__(self, size: int, capacity: int = 512) -> None:
        self.size = size
        self.capacity = capacity
        self._cache: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, video: Path, key: tuple[str, str, int], subject: dict) -> bytes:
        """PNG bytes of one subject's reference crop."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        png = reference_png(video, subject, self.size)
        with self._lock:
            self._cache[key] = png
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return png


def reference_png(video: Path, subject: dict, size: int) -> bytes:
    """Crop a subject (``boxes`` and ``visible_fraction`` per frame) at its most visible frame; PNG bytes."""
    boxes = subject.get("boxes") or []
    if not boxes:
        raise ValueError("the subject has no boxes")
    visible = subject.get("visible_fraction") or [1.0] * len(boxes)
    frame_index = int(np.argmax(np.asarray(visible[: len(boxes)], dtype=float)))
    frames = read_video(video, max_frames=frame_index + 1)
    frame = frames[min(frame_index, len(frames) - 1)]
    crop = prepare_reference(frame, box=tuple(boxes[min(frame_index, len(boxes) - 1)]), size=size)
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="PNG")
    return buffer.getvalue()
