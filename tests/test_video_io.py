"""Video I/O: round trip, frame sampling at a target fps/size, lazy decoding, typed errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest

from libragen.core import video
from libragen.core.video import VideoReadError, iter_frames, probe_video, read_video, write_video


def _indexed_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame i is a flat grey of level 8 * i, so a decoded frame tells which frame it was."""
    levels = (np.arange(count) * 8 + 8).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def _frame_index(frame: np.ndarray) -> int:
    return round((float(frame.mean()) - 8) / 8)


@pytest.fixture(scope="module")
def clip24(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "count24.mp4"
    write_video(path, _indexed_frames(30), fps=24, crf=10)
    return path


def test_round_trip_keeps_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    smooth = rng.integers(40, 200, size=(6, 1, 1, 3)).astype(np.uint8)
    frames = np.broadcast_to(smooth, (6, 32, 48, 3)).copy()
    frames[:, 8:24, 10:30] = 230
    path = write_video(tmp_path / "a.mp4", frames, fps=8)
    decoded = read_video(path)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 3.0


def test_probe_reports_stream_facts(clip24: Path) -> None:
    info = probe_video(clip24)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(24)
    assert info.num_frames == 30
    assert info.duration == pytest.approx(30 / 24, abs=0.05)
    assert info.codec == "h264"


def test_fps_sampling_picks_nearest_frames(clip24: Path) -> None:
    frames = read_video(clip24, fps=8)
    assert [_frame_index(f) for f in frames] == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]


def test_fps_above_source_repeats_nothing(clip24: Path) -> None:
    frames = read_video(clip24, fps=48)
    assert [_frame_index(f) for f in frames] == list(range(30))


def test_start_and_max_frames(clip24: Path) -> None:
    frames = read_video(clip24, fps=12, start=0.5, max_frames=4)
    assert [_frame_index(f) for f in frames] == [12, 14, 16, 18]


def test_resize_in_decoder(clip24: Path) -> None:
    assert read_video(clip24, size=(32, 16), max_frames=1).shape == (1, 16, 32, 3)
    assert read_video(clip24, size=24, max_frames=1).shape == (1, 24, 32, 3)  # short side, aspect kept


def test_decoding_stops_once_enough_frames(clip24: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = []
    real_decode = av.Packet.decode

    def counting(packet):
        frames = real_decode(packet)
        decoded.extend(frames)
        return frames

    monkeypatch.setattr(av.Packet, "decode", counting)
    frames = list(iter_frames(clip24, max_frames=3))
    assert len(frames) == 3
    assert len(decoded) == 3


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mp2", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
        frame.sample_rate = 44100
        for _ in range(5):
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p, "file not found"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty file"),
        (lambda p: (p.write_bytes(b"hello, not a video\n" * 50), p)[1], "not a readable media file"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: _audio_only(p.with_suffix(".mp2")), "no video stream"),
    ],
    ids=["missing", "zero-bytes", "text", "directory", "audio-only"],
)
def test_unreadable_inputs_raise_typed_error(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path / "bad name ü.mp4")
    for reader in (read_video, probe_video):
        with pytest.raises(VideoReadError) as caught:
            reader(path)
        assert caught.value.path == str(path)
        assert reason in caught.value.reason


def test_truncated_mp4_raises_typed_error(clip24: Path, tmp_path: Path) -> None:
    data = clip24.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError) as caught:
        read_video(cut)
    assert caught.value.path == str(cut)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((2, 31, 32, 3), np.uint8), "even"),
        (np.zeros((2, 32, 32, 3), np.float32), "uint8"),
        (np.zeros((0, 32, 32, 3), np.uint8), "T > 0"),
    ],
)
def test_write_rejects_bad_frames(tmp_path: Path, frames: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_video(tmp_path / "x.mp4", frames, fps=8)
    assert not (tmp_path / "x.mp4").exists()


def test_write_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"old")

    def explode(*args, **kwargs):
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(video.av.VideoFrame, "from_ndarray", explode)
    with pytest.raises(RuntimeError):
        write_video(target, _indexed_frames(3), fps=8)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_decode_for_analysis_is_probe_plus_read_in_one_open(clip24: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = []
    real_open = av.open
    monkeypatch.setattr(video.av, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    decoded = video.decode_for_analysis(clip24, fps=8, max_short_side=24, threads=1)
    assert len(opened) == 1
    monkeypatch.undo()
    assert decoded.info == probe_video(clip24)
    assert np.array_equal(decoded.frames, read_video(clip24, fps=8, size=24))
    assert decoded.detail_luma.shape[0] == 0 and decoded.detail_index.shape == (0,)
    # never enlarged, fps capped at the source's
    decoded = video.decode_for_analysis(clip24, fps=100, max_short_side=480)
    assert decoded.frames.shape == (30, 48, 64, 3)
    assert np.array_equal(decoded.frames, read_video(clip24))


@pytest.mark.parametrize("detail_frames", [1, 4, 7, 30, 50])
def test_detail_frames_are_evenly_spaced_luma_of_analysis_frames(clip24: Path, detail_frames: int) -> None:
    decoded = video.decode_for_analysis(
        clip24, fps=100, max_short_side=24, detail_frames=detail_frames, detail_short_side=32
    )
    index = decoded.detail_index
    assert detail_frames <= len(index) <= 2 * detail_frames or len(index) == len(decoded.frames)
    assert index[0] == 0 and len(set(np.diff(index).tolist())) <= 1  # one stride from the first frame
    assert decoded.detail_luma.shape == (len(index), 32, 42)  # short side capped, aspect kept (even)
    full = read_video(clip24, size=(42, 32))[index].astype(np.float32) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(decoded.detail_luma.astype(np.float32) - full).mean() < 6  # the same pictures, as luma


def test_detail_frames_stay_bounded_when_the_length_is_unknown(clip24: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_info = video._info
    monkeypatch.setattr(video, "_info", lambda *a: dataclasses.replace(real_info(*a), duration=0.0, num_frames=0))
    decoded = video.decode_for_analysis(clip24, max_short_side=24, detail_frames=4)
    assert 4 <= len(decoded.detail_index) <= 8 and decoded.detail_index[0] == 0
    assert len(set(np.diff(decoded.detail_index).tolist())) == 1


def test_decoder_threads_do_not_change_pixels(clip24: Path) -> None:
    assert np.array_equal(read_video(clip24, size=24, threads=1), read_video(clip24, size=24))


def test_strongly_shrunk_analysis_skips_deblocking_without_changing_the_analysis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    frames = np.concatenate([np.roll(texture, 2 * k, axis=2) for k in range(8)])  # a textured pan
    path = tmp_path / "blocky.mp4"
    write_video(path, frames, fps=8, crf=40)  # coarse quantisation: deblocking has much to smooth

    def analyse() -> video.AnalysisDecode:  # 8x shrink; detail frames at native size show the decoder's pixels
        return video.decode_for_analysis(path, max_short_side=32, detail_frames=8, detail_short_side=256)

    skipped = analyse()
    monkeypatch.setattr(video, "DEBLOCKING_SHRINK", 10**6)
    deblocked = analyse()
    assert np.array_equal(deblocked.detail_index, skipped.detail_index)
    native_change = np.abs(skipped.detail_luma.astype(np.int16) - deblocked.detail_luma)
    assert native_change.mean() > 0.1  # the filter really was off (0.0 with it on)
    assert np.abs(skipped.frames.astype(np.int16) - deblocked.frames).max() <= 4  # the analysis barely moves
    assert np.array_equal(deblocked.frames, read_video(path, size=32))


def test_native_size_detail_luma_is_exactly_libswscales_gray(clip24: Path) -> None:
    decoded = video.decode_for_analysis(clip24, max_short_side=24, detail_frames=30, detail_short_side=720)
    with av.open(str(clip24)) as container:
        gray = np.stack([frame.to_ndarray(format="gray") for frame in container.decode(video=0)])
    assert decoded.detail_luma.shape == (30, 48, 64)
    assert np.array_equal(decoded.detail_luma, gray[decoded.detail_index])


def test_frames_near_no_target_time_are_skipped_without_changing_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 8 of 24 fps, non-reference frames far from every target time are not decoded; the frames returned
    are exactly those of a full decode."""
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 256, (1, 96, 128, 3), dtype=np.uint8)
    frames = np.concatenate([np.roll(texture, 3 * k, axis=2) for k in range(48)])
    path = write_video(tmp_path / "pan24.mp4", frames, fps=24)  # x264 defaults: B-frames, some non-reference
    counts = []
    real_decode = av.Packet.decode

    def counting(packet):
        out = real_decode(packet)
        counts.append(len(out))
        return out

    monkeypatch.setattr(av.Packet, "decode", counting)
    sampled = read_video(path, fps=8)
    decoded_when_sampling = sum(counts)
    counts.clear()
    everything = read_video(path)
    assert sum(counts) == 48
    assert decoded_when_sampling < 40  # some frames were never decoded
    assert np.array_equal(sampled, everything[::3])  # ... and the sampled ones are the full decode's


def test_write_frame_re_encodes_decoded_frames_closer_than_the_rgb_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    frames = np.concatenate(
        [np.roll(rng.integers(0, 256, (1, 64, 96, 3), dtype=np.uint8), k, axis=2) for k in range(6)]
    )
    source = write_video(tmp_path / "src.mp4", frames, fps=8, crf=12)
    with video.VideoWriter(tmp_path / "planes.mp4", 8) as writer:
        for frame in video.iter_decoded(source):
            writer.write_frame(frame)
    with video.VideoWriter(tmp_path / "rgb.mp4", 8) as writer:
        for frame in iter_frames(source):
            writer.write(frame)
    decoded = read_video(source).astype(np.float32)
    planes_error = np.abs(read_video(tmp_path / "planes.mp4") - decoded).mean()
    rgb_error = np.abs(read_video(tmp_path / "rgb.mp4") - decoded).mean()
    assert read_video(tmp_path / "planes.mp4").shape == frames.shape
    assert planes_error < rgb_error
    odd = av.VideoFrame.from_ndarray(np.zeros((33, 47, 3), np.uint8), format="rgb24")
    with video.VideoWriter(tmp_path / "odd.mp4", 8) as writer:
        writer.write_frame(odd)  # not yuv420p of even size: through RGB, cropped to even
    assert read_video(tmp_path / "odd.mp4").shape == (1, 32, 46, 3)
