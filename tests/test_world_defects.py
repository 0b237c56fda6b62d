"""Each injected defect is *measured* in the rendered files, and its label checked.

The set is ``libragen world make --n 200 --defects 0.3`` (see conftest). Where a measurement
needs a reference, it uses the clip's clean twin rendered from the same spec without the defect.
"""

from __future__ import annotations

import numpy as np
import pytest

from libragen.core.video import VideoReadError, probe_video, read_video, write_video
from libragen.world.config import DEFECT_KINDS, FILE_DEFECTS
from libragen.world.defects import text_box
from libragen.world.manifest import decode_masks, defect_params_of
from libragen.world.render import OCCLUDER_RGB, render_spec

from .conftest import WORLD_N


def _luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _frame_diffs(frames: np.ndarray) -> np.ndarray:
    """Mean absolute luma difference between consecutive frames, shape (T - 1,)."""
    luma = _luma(frames)
    return np.abs(np.diff(luma, axis=0)).mean(axis=(1, 2))


def _sharpness(frames: np.ndarray) -> float:
    """Variance of the discrete Laplacian of luma (higher = sharper)."""
    luma = _luma(frames)
    lap = luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:] + luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] - 4 * luma[:, 1:-1, 1:-1]
    return float(lap.var())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-9))


def test_manifest_has_every_clip_and_every_defect_kind(world) -> None:
    assert len(world.rows) == WORLD_N
    assert [row["index"] for row in world.rows] == list(range(WORLD_N))
    kinds = {row["defect"] for row in world.rows if row["defect"]}
    assert kinds == set(DEFECT_KINDS)
    defective = sum(row["defect"] is not None for row in world.rows)
    assert defective == round(0.3 * WORLD_N)
    for row in world.rows:
        assert world.path(row).is_file()


def test_readable_clips_play_and_match_the_manifest(world) -> None:
    for row in world.rows:
        if row["defect"] in FILE_DEFECTS:
            continue
        info = probe_video(world.path(row))
        assert info.codec == "h264"
        frames = read_video(world.path(row))
        assert frames.shape == (row["num_frames"], row["height"], row["width"], 3), row["clip_id"]
        assert info.fps == pytest.approx(row["fps"])


def test_clean_clips_have_none_of_the_defects(world) -> None:
    clean = world.of_kind(None)
    assert len(clean) == WORLD_N - round(0.3 * WORLD_N)
    for row, _spec in clean:
        frames = read_video(world.path(row))
        assert (row["width"], row["height"], row["num_frames"]) == (64, 64, 16)
        diffs = _frame_diffs(frames)
        assert diffs.mean() > 0.5, f"{row['clip_id']} looks static"
        assert _luma(frames[:, :4]).max() > 30 and _luma(frames[:, -4:]).max() > 30  # no black bars
        fractions = np.array([s["visible_fraction"] for s in row["subjects"]])
        assert fractions.mean() > 0.6, f"{row['clip_id']} subjects hidden"
        areas = decode_masks(row).sum(axis=(2, 3))
        assert areas.min() >= 30, f"{row['clip_id']} has a tiny subject"


def test_cut_is_a_frame_discontinuity(world) -> None:
    cases = world.of_kind("cut")
    assert cases
    for row, _spec in cases:
        params = defect_params_of(row)
        cut = params["cut_frame"]
        diffs = _frame_diffs(read_video(world.path(row)))
        others = np.delete(diffs, cut - 1)
        assert int(np.argmax(diffs)) == cut - 1, (row["clip_id"], diffs.round(1))
        assert diffs[cut - 1] > 3 * np.median(others), (row["clip_id"], diffs.round(1))
        assert params["second_scene"] != row["scene"]


def test_static_clip_has_no_frame_difference(world) -> None:
    cases = world.of_kind("static")
    assert cases
    for row, _spec in cases:
        diffs = _frame_diffs(read_video(world.path(row)))
        assert diffs.max() < 0.5, (row["clip_id"], diffs.round(2))
        assert all(s["speed"] == "still" for s in row["subjects"])
        assert "stays still" in row["caption"] or "spins in place" in row["caption"]


def test_text_overlay_is_high_contrast_text_in_its_box(world) -> None:
    cases = world.of_kind("text_overlay")
    assert cases
    for row, spec in cases:
        params = defect_params_of(row)
        frames = read_video(world.path(row))
        twin = render_spec(spec.clean()).frames
        x0, y0, x1, y1 = text_box(row["width"], row["height"], params["text"], params["placement"])
        inside = np.zeros(frames.shape[1:3], bool)
        inside[y0:y1, x0:x1] = True
        change = np.abs(_luma(frames) - _luma(twin))
        assert change[:, inside].mean() > 25, row["clip_id"]
        assert change[:, inside].mean() > 5 * change[:, ~inside].mean(), row["clip_id"]
        box = _luma(frames)[:, inside]
        contrast = np.percentile(box, 97, axis=1) - np.percentile(box, 3, axis=1)  # white text, black rim
        assert contrast.min() > 150, (row["clip_id"], contrast.min())


def test_blur_removes_detail(world) -> None:
    cases = world.of_kind("blur")
    assert cases
    for row, spec in cases:
        blurred = _sharpness(read_video(world.path(row)))
        clean = _sharpness(render_spec(spec.clean()).frames)
        assert blurred < 0.2 * clean, (row["clip_id"], blurred, clean)


def test_low_bitrate_is_blocky(world, tmp_path) -> None:
    cases = world.of_kind("low_bitrate")
    assert cases
    for row, spec in cases:
        rendered = render_spec(spec).frames
        normal = write_video(tmp_path / "normal.mp4", rendered, spec.fps, crf=world.config.crf)
        normal_psnr = _psnr(read_video(normal), rendered)
        psnr = _psnr(read_video(world.path(row)), rendered)
        assert psnr < normal_psnr - 5, (row["clip_id"], psnr, normal_psnr)
        assert row["file_bytes"] < 0.5 * normal.stat().st_size


def test_letterbox_has_black_bars(world) -> None:
    cases = world.of_kind("letterbox")
    assert cases
    for row, _spec in cases:
        params = defect_params_of(row)
        bar = params["bar_px"]
        luma = _luma(read_video(world.path(row)))
        if params["orientation"] == "pillarbox":
            luma = luma.transpose(0, 2, 1)
        bars = np.concatenate([luma[:, : bar - 1], luma[:, -(bar - 1) :]], axis=1)
        assert bars.max() < 24, row["clip_id"]
        assert luma[:, bar + 1 : -bar - 1].mean() > 40, row["clip_id"]


def test_low_resolution_is_small(world) -> None:
    cases = world.of_kind("low_resolution")
    assert cases
    for row, _spec in cases:
        info = probe_video(world.path(row))
        assert max(info.width, info.height) <= 24
        assert (info.width, info.height) == (row["width"], row["height"])


def test_too_short_has_few_frames(world) -> None:
    cases = world.of_kind("too_short")
    assert cases
    for row, _spec in cases:
        assert len(read_video(world.path(row))) == row["num_frames"] <= 4


def test_near_duplicate_matches_its_source(world) -> None:
    cases = world.of_kind("near_duplicate")
    assert cases
    by_id = {row["clip_id"]: row for row in world.rows}
    others = [row for row, _ in world.of_kind(None)[:20]]

    def aligned_gap(copy: np.ndarray, original: np.ndarray, shift: int) -> float:
        """Mean abs luma gap after undoing the shift and the global brightness change."""
        a, b = _luma(copy)[:, shift:, shift:], _luma(original)[:, :-shift, :-shift]
        return float(np.abs((a - a.mean()) - (b - b.mean())).mean())

    for row, _spec in cases:
        params = defect_params_of(row)
        source = by_id[params["duplicate_of"]]
        assert source["clip_id"] != row["clip_id"] and source["defect"] is None
        copy = read_video(world.path(row))
        gap = aligned_gap(copy, read_video(world.path(source)), params["shift_px"])
        gaps_to_others = [
            aligned_gap(copy, read_video(world.path(o)), params["shift_px"])
            for o in others
            if o["clip_id"] != source["clip_id"]
        ]
        assert gap < 4, (row["clip_id"], gap)
        assert gap < 0.3 * min(gaps_to_others), (row["clip_id"], gap, min(gaps_to_others))
        assert row["caption"] == source["caption"] and row["identity_ids"] == source["identity_ids"]


def test_subject_too_small_changes_few_pixels(world) -> None:
    cases = world.of_kind("subject_too_small")
    assert cases
    for row, spec in cases:
        frames = read_video(world.path(row)).astype(np.float32)
        background = render_spec(spec, include_subjects=False).frames.astype(np.float32)
        changed = (np.abs(frames - background).max(axis=-1) > 40).mean(axis=(1, 2))
        per_subject = 0.012 * len(row["subjects"])
        assert changed.max() < per_subject, (row["clip_id"], changed.max())
        assert decode_masks(row).sum(axis=(2, 3)).max() <= 30


def test_occluded_subject_is_mostly_hidden(world) -> None:
    cases = world.of_kind("occluded")
    assert cases
    for row, _spec in cases:
        params = defect_params_of(row)
        hidden_ref = row["subjects"][params["occluded_ref"] - 1]
        assert np.mean(hidden_ref["visible_fraction"]) < 0.35, row["clip_id"]
        x0, y0, x1, y1 = (round(v) for v in params["occluder_box"])
        frames = read_video(world.path(row)).astype(np.float32)
        panel = frames[:, y0 + 2 : y1 - 2, x0 + 2 : x1 - 2]
        light = np.array(OCCLUDER_RGB) * 255
        # Panel pixels are the occluder's grey up to the clip's lighting gain/tint.
        ratio = panel.mean(axis=(0, 1, 2)) / light
        assert np.all((ratio > 0.65) & (ratio < 1.35)), (row["clip_id"], ratio)
        assert panel.std(axis=(1, 2)).mean() < 20


@pytest.mark.parametrize("kind", sorted(FILE_DEFECTS))
def test_corrupt_files_are_unreadable(world, kind: str) -> None:
    cases = world.of_kind(kind)
    assert cases
    for row, _spec in cases:
        path = world.path(row)
        if kind == "zero_bytes":
            assert path.stat().st_size == 0
        with pytest.raises(VideoReadError) as caught:
            read_video(path)
        assert caught.value.path == str(path)
        assert row["file_bytes"] == path.stat().st_size
