"""Video I/O on PyAV: probe, decode with frame sampling, encode H.264 mp4.

Every stage reads and writes video through this module so that decoding rules (which frames a
target fps picks, how frames are resized, what counts as unreadable) are the same everywhere.

* :func:`probe_video` reads container metadata without decoding pixels.
* :func:`read_video` decodes frames at a target fps and size, stopping as soon as it has what was
  asked for; resizing happens in libswscale on the decoded picture, not in numpy afterwards.
* :func:`decode_for_analysis` is probe + read in one open, plus a few frames' luma at a larger size.
* :func:`write_video` encodes RGB frames to H.264 (yuv420p) and writes the file atomically.
* Any unreadable input raises :class:`VideoReadError` carrying the path and a short reason.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from libragen.core.files import atomic_path


class VideoReadError(Exception):
    """A video file could not be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """Container metadata of one video stream."""

    path: str
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    codec: str


def _open_container(path: str | os.PathLike[str]) -> av.container.InputContainer:
    p = Path(path)
    if not p.exists():
        raise VideoReadError(p, "file not found")
    if p.is_dir():
        raise VideoReadError(p, "is a directory, not a video file")
    if p.stat().st_size == 0:
        raise VideoReadError(p, "empty file (0 bytes)")
    try:
        return av.open(str(p), mode="r")
    except av.error.FFmpegError as err:
        raise VideoReadError(p, f"not a readable media file ({_short(err)})") from err
    except (OSError, UnicodeError, ValueError) as err:
        raise VideoReadError(p, f"cannot open ({_short(err)})") from err


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]


def _video_stream(container: av.container.InputContainer, path: str | os.PathLike[str]):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise VideoReadError(path, f"no video stream (found: {', '.join(kinds)})")
    return container.streams.video[0]


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


def _info(container: av.container.InputContainer, stream, path: str | os.PathLike[str]) -> VideoInfo:
    fps = _stream_fps(stream)
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    num_frames = int(stream.frames or 0)
    if num_frames == 0 and fps > 0:
        num_frames = round(duration * fps)
    codec = stream.codec_context.name if stream.codec_context else "unknown"
    return VideoInfo(
        path=str(path),
        width=int(stream.codec_context.width),
        height=int(stream.codec_context.height),
        fps=fps,
        num_frames=num_frames,
        duration=duration,
        codec=codec,
    )


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read size, fps, frame count and duration from the container, without decoding pixels."""
    with _open_container(path) as container:
        return _info(container, _video_stream(container, path), path)


def _target_size(width: int, height: int, size: int | tuple[int, int] | None) -> tuple[int, int]:
    """``size`` is None (keep), an int (short side, aspect kept, even numbers) or (width, height)."""
    if size is None:
        return width, height
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        scale = size / min(width, height)
        return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))
    out_w, out_h = size
    if out_w <= 0 or out_h <= 0:
        raise ValueError(f"size must be positive, got {size}")
    return int(out_w), int(out_h)


def iter_frames(
    path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    max_frames: int | None = None,
    start: float = 0.0,
    threads: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames (H, W, 3), sampled at ``fps`` (None: every frame) from ``start`` s.

    Frame sampling picks, for each target time ``start + k / fps``, the decoded frame nearest to it
    (never a frame before ``start``); decoding stops once ``max_frames`` frames were yielded.
    ``threads`` caps the decoder's threads (None: one per core this process may use) — a worker that was given
    one CPU (a Ray task) passes 1 so that N workers do not run N x cores decoder threads.
    """
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if max_frames is not None and max_frames <= 0:
        return
    container = _open_container(path)
    try:
        stream = _video_stream(container, path)
        yield from _decode(container, stream, path, fps, size, max_frames, start, threads)
    finally:
        container.close()


def iter_decoded(path: str | os.PathLike[str], *, threads: int | None = None) -> Iterator[av.VideoFrame]:
    """Yield every frame as the decoder gives it (no conversion): for re-encoding, see ``VideoWriter.write_frame``."""
    container = _open_container(path)
    try:
        stream = _video_stream(container, path)
        yield from _select_frames(container, stream, path, None, None, 0.0, threads)
    finally:
        container.close()


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _select_frames(
    container: av.container.InputContainer,
    stream,
    path: str | os.PathLike[str],
    fps: float | None,
    max_frames: int | None,
    start: float,
    threads: int | None,
    skip_deblocking: bool = False,
    keyframe_bytes: list[int] | None = None,
) -> Iterator[av.VideoFrame]:
    """The decoded frames nearest to the target times ``start + k / fps`` (all frames when ``fps`` is None).

    When ``fps`` is well below the source's, frames near no target time are not decoded if no other frame
    depends on them (the codec's ``skip_frame = NONREF``, set per packet from its timestamp): the frames
    returned are exactly those of a full decode, for ~40 % fewer decoded frames on H.264 with B-frames.
    ``skip_deblocking`` turns the codec's in-loop deblocking filter off (H.264/HEVC ``skip_loop_filter``):
    a quarter or more of the decoding time, for pixels that differ by about one level at native size.
    ``keyframe_bytes``, when given, receives the size of every keyframe packet demuxed on the way.
    """
    stream.thread_type = "AUTO"
    if skip_deblocking:
        stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": "all"}
    # FFmpeg's own count (0) starts cores + 1 threads; as many as this process may run on is faster here.
    stream.thread_count = max(1, threads) if threads is not None else _usable_cores()
    src_fps = _stream_fps(stream) or 25.0
    if start > 0 and stream.time_base is not None:
        container.seek(int(start / stream.time_base), stream=stream, backward=True)
    half_period = 0.5 / src_fps
    next_time = start
    emitted = 0
    decoded = 0
    skip_unwanted = fps is not None and fps * 1.5 < src_fps and stream.time_base is not None

    def wanted(packet: av.Packet) -> bool:
        """Whether the packet's frame may be the nearest to a target time (with half a period to spare)."""
        if packet.pts is None:
            return True
        t = float(packet.pts * stream.time_base)
        nearest = start + max(0, round((t - start) * fps)) / fps
        return abs(t - nearest) <= 1.5 * half_period

    try:
        for packet in container.demux(stream):
            if keyframe_bytes is not None and packet.is_keyframe and packet.size:
                keyframe_bytes.append(packet.size)
            if skip_unwanted:
                stream.codec_context.skip_frame = "DEFAULT" if wanted(packet) else "NONREF"
            for frame in packet.decode():
                decoded += 1
                t = frame.time if frame.time is not None else (decoded - 1) / src_fps
                if t + half_period <= start:
                    continue
                if fps is not None and t + half_period <= next_time:
                    continue
                yield frame
                emitted += 1
                if max_frames is not None and emitted >= max_frames:
                    return
                if fps is not None:
                    # Skip target times this frame already covers (source slower than target).
                    next_time += 1.0 / fps
                    while next_time + 1.0 / fps <= t + half_period:
                        next_time += 1.0 / fps
    except av.error.FFmpegError as err:
        raise VideoReadError(path, f"decode failed after {decoded} frames ({_short(err)})") from err
    if emitted == 0:
        raise VideoReadError(path, "no decodable video frames")


def _decode(
    container: av.container.InputContainer,
    stream,
    path: str | os.PathLike[str],
    fps: float | None,
    size: int | tuple[int, int] | None,
    max_frames: int | None,
    start: float,
    threads: int | None,
) -> Iterator[np.ndarray]:
    out_w = out_h = None
    reformatter = VideoReformatter()  # one scaler for the whole clip (a new one per frame costs ~0.7 ms)
    for frame in _select_frames(container, stream, path, fps, max_frames, start, threads):
        if out_w is None:
            out_w, out_h = _target_size(frame.width, frame.height, size)
        yield reformatter.reformat(frame, width=out_w, height=out_h, format="rgb24").to_ndarray()


def read_video(
    path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    max_frames: int | None = None,
    start: float = 0.0,
    threads: int | None = None,
) -> np.ndarray:
    """Decode a video into a (T, H, W, 3) uint8 array; see :func:`iter_frames` for the sampling."""
    frames = list(iter_frames(path, fps=fps, size=size, max_frames=max_frames, start=start, threads=threads))
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


@dataclass(frozen=True)
class AnalysisDecode:
    """What a per-file analysis wants from one open and one decoding pass of a video.

    ``frames`` (T, h, w, 3) RGB at the analysis size and fps; ``detail_luma`` (K, H, W) uint8 luma of K of
    those frames at a larger size (the source's, capped), for probes whose evidence is too fine for the
    analysis size — a subtitle's 2-px outline vanishes when 1080p is shrunk to 64 px; ``detail_index`` (K,)
    the analysis-frame index of each. K is 0 when no detail was asked for. ``keyframe_bytes``: the encoded
    size of each keyframe (intra-coded) packet read, whose bits depend on picture and quality, not on motion.
    """

    info: VideoInfo
    frames: np.ndarray
    detail_luma: np.ndarray
    detail_index: np.ndarray
    keyframe_bytes: tuple[int, ...] = ()


#: 8-bit formats whose first plane is the full-size luma.
_LUMA_PLANE_FORMATS = frozenset({"yuv420p", "yuv422p", "yuv444p", "yuvj420p", "yuvj422p", "yuvj444p", "nv12", "gray"})
#: Limited-range luma (16-235) to full range, rounded as libswscale's conversion to gray rounds it.
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_scalers = threading.local()  # per thread: a scaler reused across clips keeps its set-up while sizes match


def _reformatters() -> tuple[VideoReformatter, VideoReformatter]:
    if not hasattr(_scalers, "pair"):
        _scalers.pair = (VideoReformatter(), VideoReformatter())
    return _scalers.pair


def _gray(frame: av.VideoFrame, size: tuple[int, int], scaler: VideoReformatter) -> np.ndarray:
    """Full-range luma at ``size``; at native size read straight off the decoder's luma plane when it has one."""
    if (frame.width, frame.height) == size and frame.format.name in _LUMA_PLANE_FORMATS:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        full = frame.format.name.startswith("yuvj") or frame.format.name == "gray" or frame.color_range == 2
        return y.copy() if full else cv2.LUT(y, _LIMITED_TO_FULL)
    return scaler.reformat(frame, width=size[0], height=size[1], format="gray").to_ndarray()


#: Analysis frames shrunk at least this many times decode without the codec's deblocking filter.
DEBLOCKING_SHRINK = 4


def decode_for_analysis(
    path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    max_short_side: int | None = None,
    max_frames: int | None = None,
    threads: int | None = None,
    detail_frames: int = 0,
    detail_short_side: int = 720,
) -> AnalysisDecode:
    """Container facts, analysis frames and a few detail frames from one open and one decoding pass.

    ``fps`` is capped at the source's rate (``info.fps``); frames are shrunk (never enlarged) so that their
    short side is at most ``max_short_side``. Between ``detail_frames`` and twice as many of the analysis
    frames, evenly spaced over the decoded span, also come back as luma with the short side at most
    ``detail_short_side``, when the analysis frames were shrunk (no second decode; at native size the
    decoder's luma plane is taken as it is, range-expanded like libswscale's conversion to gray).

    When the analysis frames are shrunk at least :data:`DEBLOCKING_SHRINK` times, the codec's deblocking
    filter is skipped: it smooths 8-px block edges, which the shrink averages away (720p → 64 px: analysis
    pixels change by at most 2 levels of 255). Detail frames then come undeblocked too (~0.6 levels mean).
    """
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if detail_frames < 0:
        raise ValueError(f"detail_frames must be >= 0, got {detail_frames}")
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        info = _info(container, stream, path)
        if fps is not None and info.fps > 0:
            fps = min(fps, info.fps)
        short = min(info.width, info.height)
        small_side = max_short_side if max_short_side is not None and short > max_short_side else None
        detail_side = detail_short_side if short > detail_short_side else None
        skip_deblocking = small_side is not None and short >= DEBLOCKING_SHRINK * small_side
        expected = round(info.duration * fps) if fps is not None and info.duration else info.num_frames
        expected = min(expected, max_frames) if max_frames is not None and expected else expected
        stride = max(1, expected // detail_frames) if detail_frames and expected else 1
        small, detail = _reformatters()
        frames: list[np.ndarray] = []
        luma: list[np.ndarray] = []
        index: list[int] = []
        small_size = detail_size = None
        keyframe_bytes: list[int] = []
        for i, frame in enumerate(
            _select_frames(container, stream, path, fps, max_frames, 0.0, threads, skip_deblocking, keyframe_bytes)
        ):
            if small_size is None:
                small_size = _target_size(frame.width, frame.height, small_side)
                detail_size = _target_size(frame.width, frame.height, detail_side)
            frames.append(small.reformat(frame, width=small_size[0], height=small_size[1], format="rgb24").to_ndarray())
            if detail_frames and small_side is not None and i % stride == 0:  # else analysis frames are native
                luma.append(_gray(frame, detail_size, detail))
                index.append(i)
                if len(luma) > 2 * detail_frames:  # more frames than expected: keep every other one
                    luma, index, stride = luma[::2], index[::2], stride * 2
    detail_shape = (0, *(detail_size or (0, 0))[::-1])
    return AnalysisDecode(
        info,
        np.stack(frames),
        np.stack(luma) if luma else np.zeros(detail_shape, np.uint8),
        np.asarray(index, dtype=np.int64),
        tuple(keyframe_bytes),
    )


@functools.cache
def _deterministic_x264_params() -> dict[str, str]:
    """x264 options that keep "same frames, same bytes" on this CPU.

    On CPUs with AVX-512, x264 (core 165) gives different bitstreams for identical input from run to run, even
    with one thread: 6 different files in 25 encodes of one 64x64 LibraWorld clip on an AMD EPYC. Capping its
    instruction set at AVX2 (which every AVX-512 CPU has) makes it deterministic at the same speed, and gives
    the same bytes as on AVX2-only machines. Other CPUs keep x264's own detection.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    return {"x264-params": "asm=avx2"} if "avx512f" in flags else {}


class VideoWriter:
    """Stream RGB uint8 frames (H, W, 3) into an H.264 mp4 that appears atomically when closed.

    ``with VideoWriter(path, fps) as writer: writer.write(frame)`` — memory stays one frame however long
    the video; an exception inside the block leaves no file (nor a half-written one). The first frame fixes
    the size (even width and height, yuv420p). ``crf``/``preset``/``qp`` as in :func:`write_video`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float,
        *,
        crf: int = 18,
        preset: str = "veryfast",
        qp: int | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self._rate = Fraction(fps).limit_denominator(1001) if not float(fps).is_integer() else int(fps)
        self._options = {
            "preset": preset,
            **({"qp": str(qp)} if qp is not None else {"crf": str(crf)}),
            **_deterministic_x264_params(),
        }
        self._files = ExitStack()
        self._tmp = self._files.enter_context(atomic_path(self.path))
        self._container = self._files.enter_context(av.open(str(self._tmp), mode="w", format="mp4"))
        self._stream = None
        self.frames = 0

    def write(self, array: np.ndarray) -> None:
        array = np.asarray(array)
        if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ValueError(f"a frame must be (H, W, 3) uint8, got {array.shape} {array.dtype}")
        height, width = array.shape[:2]
        self._open_stream(width, height)
        self._encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24"))

    def write_frame(self, frame: av.VideoFrame) -> None:
        """Encode a decoded frame: a yuv420p frame of even size goes in as its own planes, without the two
        colour conversions (and their rounding) of ``write(frame.to_ndarray(format="rgb24"))`` — 48 vs 45 dB
        luma PSNR to the source on a 720p LibraWorld clip; other frames go through RGB, cropped to even."""
        if frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2:
            rgb = frame.to_ndarray(format="rgb24")
            self.write(rgb[: frame.height // 2 * 2, : frame.width // 2 * 2])
            return
        self._open_stream(frame.width, frame.height)
        # A copy of the planes only: the decoded frame's timestamps, frame type and side data would steer the
        # encoder (passed as they are, they cost 3 dB at the same crf).
        self._encode(av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p"))

    def _encode(self, frame: av.VideoFrame) -> None:
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def _open_stream(self, width: int, height: int) -> None:
        if self._stream is None:
            if width % 2 or height % 2:
                raise ValueError(f"H.264 yuv420p needs even width and height, got {width}x{height}")
            self._stream = self._container.add_stream("libx264", rate=self._rate)
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
            self._stream.codec_context.thread_count = 1  # the same frames always give the same bytes
            self._stream.options = self._options
        elif (width, height) != (self._stream.width, self._stream.height):
            raise ValueError(
                f"frame size {width}x{height} differs from the first {self._stream.width}x{self._stream.height}"
            )

    def close(self) -> Path:
        """Flush the encoder and move the file into place."""
        if self._stream is None:
            self.abort()
            raise ValueError(f"{self.path}: no frames were written")
        self._container.mux(self._stream.encode())
        self._files.close()
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        # Unwinding the stack as if an exception passed closes the container and makes atomic_path discard
        # the temporary file instead of moving it into place.
        self._files.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | Sequence[np.ndarray],
    fps: float,
    *,
    crf: int = 18,
    preset: str = "veryfast",
    qp: int | None = None,
) -> Path:
    """Encode RGB uint8 frames (T, H, W, 3) to an H.264 mp4, written atomically.

    ``crf`` sets constant quality (lower is better); ``qp`` forces a constant quantiser instead
    (used to make deliberately blocky files). Width and height must be even (yuv420p).
    Encoding is single-threaded so the same frames always give the same bytes.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must have shape (T, H, W, 3) with T > 0, got {frames.shape}")
    with VideoWriter(path, fps, crf=crf, preset=preset, qp=qp) as writer:
        for array in frames:
            writer.write(array)
    return writer.path
