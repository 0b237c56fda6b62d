"""Weight-free evaluation metrics: motion, quality, copy-paste, realism maths, GSB, prompt parsing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from libragen.core.refs import prepare_reference
from libragen.core.video import read_video, write_video
from libragen.eval.alignment import parse_prompt
from libragen.eval.copypaste import copy_paste_score
from libragen.eval.gsb import automatic_judge, export_side_by_side, gsb_from_choices, gsb_ratio
from libragen.eval.motion import dynamic_threshold, motion_scores, top_flow
from libragen.eval.quality import quality_scores
from libragen.eval.realism import frechet_distance
from libragen.world.manifest import decode_masks


@pytest.fixture(scope="module")
def real_clips(world) -> list[np.ndarray]:
    """Clean single-subject clips that move (what the sanity comparisons start from)."""
    clips = []
    for row, _spec in world.of_kind(None):
        if len(row["subjects"]) == 1 and row["subjects"][0]["speed"] == "quickly" and row["camera_pan"] is None:
            clips.append(read_video(world.path(row)))
    assert len(clips) >= 8
    return clips[:8]


def test_dynamic_threshold_follows_vbench() -> None:
    assert dynamic_threshold(256, 256, 8) == pytest.approx(6.0)
    assert dynamic_threshold(64, 128, 8) == pytest.approx(1.5)
    assert dynamic_threshold(64, 64, 4) == pytest.approx(3.0)  # low fps: larger motion needed


def test_top_flow_pair_step_measures_every_kth_pair(real_clips) -> None:
    every = top_flow(real_clips[0])
    third = top_flow(real_clips[0], pair_step=3)
    assert len(third[0]) == 5 and np.allclose(third[0], every[0][::3]) and np.allclose(third[1], every[1][::3])
    with pytest.raises(ValueError, match="pair_step"):
        top_flow(real_clips[0], pair_step=0)


def test_real_clips_beat_time_shuffled_and_frozen(real_clips) -> None:
    rng = np.random.default_rng(0)
    for clip in real_clips:
        real = motion_scores(clip, fps=8)
        shuffled = motion_scores(clip[rng.permutation(len(clip))], fps=8)
        frozen = motion_scores(np.repeat(clip[:1], len(clip), axis=0), fps=8)
        assert real.smoothness > shuffled.smoothness
        assert real.flicker > shuffled.flicker
        assert real.dynamic_fraction > frozen.dynamic_fraction and frozen.dynamic == 0.0
        assert real.amplitude > 5 * frozen.amplitude


def test_real_clips_beat_blurred_on_quality(real_clips) -> None:
    for clip in real_clips:
        blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in clip])
        real, soft = quality_scores(clip), quality_scores(blurred)
        assert real.visual_quality > soft.visual_quality
        assert real.sharpness > 3 * soft.sharpness
        assert 0.0 <= soft.visual_quality <= real.visual_quality <= 1.0


def test_noise_and_exposure_move_the_right_way(real_clips) -> None:
    clip = real_clips[0]
    noisy = np.clip(clip + np.random.default_rng(1).normal(0, 20, clip.shape), 0, 255).astype(np.uint8)
    dark = (clip * 0.15).astype(np.uint8)
    base = quality_scores(clip)
    assert quality_scores(noisy).noise > 2 * base.noise
    assert quality_scores(dark).exposure < base.exposure


def test_copy_paste_separates_exact_paste_from_rerender(world) -> None:
    row, _ = next((r, s) for r, s in world.of_kind(None) if len(r["subjects"]) == 1)
    frames = read_video(world.path(row))
    box = row["subjects"][0]["boxes"][5]
    with_background = prepare_reference(frames[5], box=box, size=64)
    height = (box[3] - box[1]) * 1.2
    assert copy_paste_score(with_background, frames, reference_height=height) > 0.95
    other = next(r for r, _ in world.of_kind(None) if r["clip_id"] != row["clip_id"] and r["scene"] != row["scene"])
    assert copy_paste_score(with_background, read_video(world.path(other)), reference_height=height) < 0.8
    masked = prepare_reference(frames[5], mask=decode_masks(row)[0, 5], size=64)
    assert copy_paste_score(masked, frames[5:6], reference_height=box[3] - box[1]) > 0.75
    with pytest.raises(ValueError, match="blank"):
        copy_paste_score(np.full((16, 16, 3), 255, np.uint8), frames)


def test_frechet_distance_is_zero_for_same_set_and_grows_with_shift() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    near, far = frechet_distance(a, a + 0.1), frechet_distance(a, a + 1.0)
    assert 0 < near < far
    assert far == pytest.approx(8.0, rel=0.05)  # mean shift of 1 in 8 dims, same covariance
    scaled = frechet_distance(a, a * 2.0)  # covariance 4x: trace term 8 * (1 + 4 - 2 * 2) = 8
    assert scaled == pytest.approx(8.0, rel=0.15)


def test_gsb_ratio_and_side_mapping(tmp_path: Path) -> None:
    assert gsb_ratio(["good", "good", "same", "bad"]).ratio == pytest.approx(0.25)
    with pytest.raises(ValueError):
        gsb_ratio(["great"])
    key = {"x": "A", "y": "B", "z": "A"}
    result = gsb_from_choices(key, {"x": "left", "y": "left", "z": "same"})
    assert (result.good, result.same, result.bad) == (1, 1, 1)
    judged = automatic_judge({"x": 0.9, "y": 0.5, "z": 0.51}, {"x": 0.5, "y": 0.9, "z": 0.5})
    assert (judged.good, judged.same, judged.bad) == (1, 1, 1)


def test_side_by_side_export_hides_and_records_sides(tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    for k in range(4):
        write_video(a_dir / f"v{k}.mp4", np.full((4, 32, 32, 3), 20, np.uint8), fps=8)
        write_video(b_dir / f"v{k}.mp4", np.full((4, 32, 32, 3), 230, np.uint8), fps=8)
    key_path = export_side_by_side(a_dir, b_dir, tmp_path / "sbs", seed=3)
    key = [json.loads(line) for line in key_path.read_text().splitlines()]
    assert len(key) == 4 and {k["left"] for k in key} == {"A", "B"}  # both orders occur
    for entry in key:
        video = read_video(tmp_path / "sbs" / entry["item"])
        left_is_dark = video[0, :, :32].mean() < 128
        assert left_is_dark == (entry["left"] == "A")


def test_prompt_parser_reads_ref_tags_and_free_text() -> None:
    caption = (
        "Ref 1[a red round creature] hops quickly to the left and Ref 2[a blue star-shaped creature] "
        "glides slowly upward on a brick wall, while the camera pans right."
    )
    parsed = parse_prompt(caption)
    assert [(s.colour, s.shape, s.direction) for s in parsed.subjects] == [
        ("red", "round", "left"),
        ("blue", "star-shaped", "up"),
    ]
    assert parsed.scene == "a brick wall" and parsed.count == 2
    free = parse_prompt("A Green star drifting to the right over snowy ground")
    assert [(s.colour, s.shape, s.direction) for s in free.subjects] == [("green", "star-shaped", "right")]
    assert free.scene == "snowy ground"
    assert parse_prompt("a dog runs").subjects == []
