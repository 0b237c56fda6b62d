"""Curation: probes, malformed inputs, kill-and-resume exactly once, dedup, report."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from libragen.core.files import sha256_file
from libragen.core.video import read_video, write_video
from libragen.curate.config import CurateConfig
from libragen.curate.dedup import duplicate_groups
from libragen.curate.inputs import list_inputs
from libragen.curate.pipeline import run_curation
from libragen.curate.probes import (
    find_cuts,
    hsv_changes,
    judge,
    letterbox,
    luma,
    phash,
    size_floor,
    size_relative_scores,
    text_fraction,
)
from libragen.curate.process import process_item
from libragen.curate.report import write_report
from libragen.curate.schema import CURATED_NAME


def _records(out: Path) -> list[dict]:
    return pq.read_table(out / CURATED_NAME).to_pylist()


def test_probes_see_cuts_bars_text_and_duplicates(world) -> None:
    config = CurateConfig()
    row, _ = world.of_kind("cut")[0]
    frames = read_video(world.path(row))
    assert find_cuts(hsv_changes(frames), config) == [json.loads(row["defect_params"])["cut_frame"]]
    clean_row, _ = world.of_kind(None)[0]
    clean = read_video(world.path(clean_row))
    assert find_cuts(hsv_changes(clean), config) == []
    boxed = read_video(world.path(world.of_kind("letterbox")[0][0]))
    assert letterbox(boxed, config.letterbox_max_luma) > 0.09 and letterbox(clean, config.letterbox_max_luma) == 0
    texted = read_video(world.path(world.of_kind("text_overlay")[0][0]))
    assert text_fraction(luma(texted)) > 2 * config.text_min_fraction > text_fraction(luma(clean))
    brighter = np.clip(clean.astype(int) + 12, 0, 255).astype(np.uint8)
    assert np.count_nonzero(phash(clean) != phash(brighter)) < 12


def test_duplicate_groups_link_close_hashes_only() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2, 192).astype(bool)
    near = base.copy()
    near[rng.choice(192, 20, replace=False)] ^= True
    far = rng.integers(0, 2, 192).astype(bool)
    hexes = [np.packbits(h).tobytes().hex() for h in (base, far, near)]
    assert duplicate_groups([*hexes, None], max_distance=30) == [[0, 2]]
    assert duplicate_groups(hexes, max_distance=10) == []


def test_judge_reports_reasons_by_priority_and_near_misses() -> None:
    config = CurateConfig()
    scores = {
        "num_frames": 16.0,
        "short_side": 64.0,
        "fps": 8.0,
        "motion": 0.1,
        "sharpness": 50.0,
        "intra_bits_vs_floor": 0.3,
        "mean_luma": 120.0,
        "letterbox": 0.0,
        "text_fraction": 0.0,
        "flicker": 0.99,
    }
    reasons, _ = judge(scores, config)
    assert reasons == ["low_bitrate", "static"]
    near_scores = {
        **scores,
        "motion": config.static_max_motion * 1.05,
        "sharpness": 5000.0,
        "intra_bits_vs_floor": 3.0,
    }
    reasons, near = judge(near_scores, config)
    assert reasons == [] and near == ["static"]


def _malformed_folder(root: Path, good_frames: np.ndarray) -> dict[str, str]:
    """Files that must each become a rejected record, and the reason each must get."""
    root.mkdir(parents=True)
    expected = {}
    (root / "zero.mp4").write_bytes(b"")
    expected["zero.mp4"] = "empty_file"
    (root / "notes.mp4").write_text("this is a text file pretending to be a video\n" * 20)
    expected["notes.mp4"] = "not_video"
    whole = write_video(root / "whole.mp4", good_frames, fps=8).read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 3])
    expected["truncated.mp4"] = "corrupt_video"
    with av.open(str(root / "sound only.m4a"), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 44100
        for _ in range(4):
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    expected["sound only.m4a"] = "no_video_stream"
    write_video(root / "one frame.mp4", good_frames[:1], fps=8)
    expected["one frame.mp4"] = "too_short"
    (root / "ünïcode [odd] name ;$.mp4").write_bytes(whole)  # a good clip under an awkward name
    expected["ünïcode [odd] name ;$.mp4"] = ""
    big = root / "huge.mp4"
    big.write_bytes(whole + b"\0" * 4096)
    expected["huge.mp4"] = "too_large"
    return expected


def test_malformed_inputs_each_get_a_reason(world, tmp_path: Path) -> None:
    good = read_video(world.path(world.of_kind(None)[0][0]))
    expected = _malformed_folder(tmp_path / "raw", good)
    config = CurateConfig(max_file_bytes=len((tmp_path / "raw" / "whole.mp4").read_bytes()) + 1024)
    summary = run_curation(tmp_path / "raw", tmp_path / "out", config, workers=2)
    records = {Path(r["source_path"]).name: r for r in _records(tmp_path / "out")}
    assert summary.inputs == len(expected) + 1  # + whole.mp4
    for name, reason in expected.items():
        got = records[name]["reasons"]
        assert (got[:1] == [reason]) if reason else (got == [] and records[name]["keep"]), (name, got)


def _settled_record_count(out: Path, quiet_seconds: float = 2.0, limit_seconds: float = 20.0) -> int:
    """Records on disk once no new one has appeared for ``quiet_seconds``.

    A Ray worker of the killed run can sit outside its process group and finish the clip it holds
    after the kill; counting too early would then miss that record.
    """
    count, changed, deadline = -1, time.time(), time.time() + limit_seconds
    while time.time() < deadline:
        now = len(list((out / "records").glob("*.json")))
        if now != count:
            count, changed = now, time.time()
        elif time.time() - changed >= quiet_seconds:
            break
        time.sleep(0.2)
    return count


def test_kill_and_resume_processes_every_clip_exactly_once(world, tmp_path: Path) -> None:
    inputs = tmp_path / "raw"
    inputs.mkdir()
    for row, _ in world.of_kind(None)[:40]:
        (inputs / f"{row['clip_id']}.mp4").write_bytes(world.path(row).read_bytes())
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "libragen",
        "curate",
        "run",
        "--input",
        str(inputs),
        "--out",
        str(out),
        "--workers",
        "1",
    ]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "records").glob("*.json"))) < 8:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = _settled_record_count(out)
    assert 8 <= done_before < 40, "the run must be killed part-way"
    assert not (out / CURATED_NAME).exists()

    summary = run_curation(inputs, out, CurateConfig(), workers=2)
    assert summary.processed_now == 40 - done_before
    records = _records(out)
    sources = [Path(r["source_path"]).name for r in records]
    assert sorted(sources) == sorted(p.name for p in inputs.iterdir())  # none lost, none duplicated
    again = run_curation(inputs, out, CurateConfig(), workers=1)
    assert again.processed_now == 0 and len(_records(out)) == 40


def test_curating_a_world_manifest_keeps_clean_clips_and_reports(world, tmp_path: Path) -> None:
    summary = run_curation(world.root / "manifest.parquet", tmp_path, CurateConfig(), workers=2, keep=100)
    records = _records(tmp_path)
    assert summary.kept == 100 == sum(r["keep"] for r in records)
    by_id = {r["clip_id"]: r for r in records}
    clean_ids = [row["clip_id"] for row, _ in world.of_kind(None)]
    rejected_for_defects = [
        c for c in clean_ids if by_id[c]["reasons"] and by_id[c]["reasons"][0] not in ("not_in_top_n", "near_duplicate")
    ]
    assert len(rejected_for_defects) <= 0.05 * len(clean_ids)
    for kind in ("static", "blur", "letterbox", "text_overlay", "low_bitrate", "occluded", "subject_too_small"):
        for row, _ in world.of_kind(kind):
            assert by_id[row["clip_id"]]["reasons"][0] == kind, (kind, by_id[row["clip_id"]]["reasons"])
    assert all(r["config_hash"] and r["code_version"] for r in records)
    page = write_report(tmp_path / CURATED_NAME, tmp_path / "report.html").read_text()
    assert "Primary reject reasons" in page and page.count("data:image/png;base64,") >= 3
    assert "<script" not in page


@pytest.mark.parametrize("bad", ["missing-folder", "notes.txt"])
def test_bad_input_argument_is_a_clear_error(tmp_path: Path, bad: str) -> None:
    target = tmp_path / bad
    if bad.endswith(".txt"):
        target.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "libragen", "curate", "run", "--input", str(target), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and str(target) in proc.stderr


def _cut_source(tmp_path: Path) -> tuple[np.ndarray, Path]:
    """A 24 fps source with a hard cut at 1.0 s and a band that tells each frame's index."""
    frames = np.empty((44, 48, 64, 3), np.uint8)
    frames[:24], frames[24:] = (30, 60, 200), (220, 140, 30)  # two scenes
    frames[:, 10:20, :] = (np.arange(44) % 24 * 10 + 10)[:, None, None, None]
    return frames, write_video(tmp_path / "src" / "cut.mp4", frames, fps=24, crf=10)


# Flat test frames compress to almost nothing: without the bitrate floors both shots can be kept.
NO_BITRATE_FLOOR = {"min_intra_bits_per_pixel": (0.0, 0.0), "min_bits_per_pixel": 0.0}


def test_cut_source_is_split_into_shot_files_with_the_right_frames(tmp_path: Path) -> None:
    frames, source = _cut_source(tmp_path)
    item = list_inputs(tmp_path / "src")[0]
    config = CurateConfig(**NO_BITRATE_FLOOR, min_frames=4)
    records = process_item(item, config, tmp_path / "out", {"config_hash": "t", "code_version": "t"})
    assert [r["clip_id"] for r in records] == ["cut.mp4#shot0", "cut.mp4#shot1"]
    assert [(r["start_frame"], r["end_frame"]) for r in records] == [(0, 24), (24, 44)]
    assert all(r["keep"] for r in records), [r["reasons"] for r in records]
    for record, (first, last) in zip(records, [(0, 24), (24, 44)], strict=True):
        shot = read_video(tmp_path / "out" / record["path"])
        assert len(shot) == last - first
        assert np.abs(shot[:, 12:18].mean(axis=(1, 2, 3)) - (np.arange(first, last) % 24 * 10 + 10)).max() < 4
        assert np.abs(shot[:, 30:].astype(int) - frames[first:last, 30:]).mean() < 3
        assert record["content_hash"] == sha256_file(tmp_path / "out" / record["path"])
    assert read_video(source).shape == frames.shape  # the source is left as it was


def test_rejected_shots_are_not_encoded_and_still_show_in_the_report(tmp_path: Path) -> None:
    """Shot 1 (20 source frames, 7 at the analysis rate) is too short: only shot 0 becomes a file."""
    _cut_source(tmp_path)
    item = list_inputs(tmp_path / "src")[0]
    out = tmp_path / "out"
    records = process_item(item, CurateConfig(**NO_BITRATE_FLOOR), out, {"config_hash": "t", "code_version": "t"})
    assert [r["keep"] for r in records] == [True, False] and records[1]["reasons"][0] == "too_short"
    assert records[1]["path"] is None and records[1]["content_hash"] is None
    assert [p.name for p in (out / "clips").iterdir()] == [Path(records[0]["path"]).name]
    assert len(read_video(out / records[0]["path"])) == 24
    from libragen.curate.report import _thumbnail

    thumb = np.asarray(_thumbnail(out, {**records[1], "source_path": item.path}))
    assert np.abs(thumb[60:].reshape(-1, 3).mean(0) - (220, 140, 30)).max() < 12  # shot 1's scene, from the source


def test_bitrate_is_judged_on_a_frame_size_independent_scale() -> None:
    from libragen.curate.process import scaled_bits_per_pixel

    assert scaled_bits_per_pixel(4096, 64, 64, 8) == pytest.approx(1.0)  # 64x64: raw bits per pixel
    raw_720p = 8 * 100_000 / (1280 * 720 * 48)
    assert scaled_bits_per_pixel(100_000, 1280, 720, 48) == pytest.approx(raw_720p * 15.0)  # sqrt(225)


def test_size_dependent_thresholds_interpolate_between_64px_and_360p() -> None:
    config = CurateConfig()
    assert size_floor(64 * 64, (31.0, 15.0)) == pytest.approx(31.0)
    assert size_floor(32 * 32, (31.0, 15.0)) == pytest.approx(31.0)  # constant outside the two anchors
    assert size_floor(640 * 360, (31.0, 15.0)) == pytest.approx(15.0)
    assert size_floor(3840 * 2160, (31.0, 15.0)) == pytest.approx(15.0)
    middle = size_floor(round((64 * 64 * 640 * 360) ** 0.5), (31.0, 15.0))
    assert middle == pytest.approx((31.0 * 15.0) ** 0.5, rel=1e-3)  # geometric halfway
    edge = 20.0  # blurred for a 64-px source, crisp enough for a 720p one shrunk to the analysis size
    small = size_relative_scores({"edge_strength": edge, "intra_bits_per_pixel": 1.0}, 64 * 64, config)
    large = size_relative_scores({"edge_strength": edge, "intra_bits_per_pixel": 1.0}, 1280 * 720, config)
    assert small["edge_strength_vs_floor"] < 1 < large["edge_strength_vs_floor"]
    assert small["intra_bits_vs_floor"] < 1 < large["intra_bits_vs_floor"]


def test_still_clips_are_not_starved_when_their_keyframes_carry_the_bits(tmp_path: Path) -> None:
    """A still 640x360 clip costs almost nothing after its first frame; judged by keyframe bits it is not
    starved (all-frame bits per pixel called such clips low_bitrate before), while a QP-50 encode is."""
    rng = np.random.default_rng(4)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), (0, 0), 2.0)
    still = np.repeat(scene[None], 96, axis=0)  # 4 s
    source = tmp_path / "src"
    write_video(source / "still.mp4", still, fps=24)
    write_video(source / "starved.mp4", still, fps=24, qp=50)
    context = {"config_hash": "t", "code_version": "t"}
    by_name = {}
    for item in list_inputs(source):
        (record,) = process_item(item, CurateConfig(), tmp_path / "out", context)
        by_name[Path(item.path).name] = record
    assert by_name["still.mp4"]["scores"]["bits_per_pixel_at_64"] < CurateConfig().min_bits_per_pixel
    assert "low_bitrate" not in by_name["still.mp4"]["reasons"] and "static" in by_name["still.mp4"]["reasons"]
    assert by_name["starved.mp4"]["reasons"][0] == "low_bitrate"


def test_blur_and_starved_encode_explain_each_other() -> None:
    """A soft 720p picture needs few bits (blur, not starved); a starved 64-px encode looks soft (starved); for
    a source larger than the analysis size, its native block grid decides whatever the bits."""
    config = CurateConfig()
    scores = {"edge_strength_vs_floor": 0.2, "intra_bits_vs_floor": 0.3, "motion": 1.0, "flicker": 0.99}
    starved, _ = judge({**scores, "bits_per_analysis_pixel": 0.1}, config)
    soft, _ = judge({**scores, "bits_per_analysis_pixel": 20.0}, config)
    assert starved == ["low_bitrate"] and soft == ["blur"]
    sharp_but_starved, _ = judge({**scores, "edge_strength_vs_floor": 2.0, "bits_per_analysis_pixel": 20.0}, config)
    assert sharp_but_starved == ["low_bitrate"]
    soft_few_bits, _ = judge({**scores, "bits_per_analysis_pixel": 0.1, "detail_blockiness": 1.8}, config)
    gridded, _ = judge({**scores, "bits_per_analysis_pixel": 20.0, "detail_blockiness": 6.0}, config)
    assert soft_few_bits == ["blur"] and gridded == ["low_bitrate"]


def _subtitled(path: Path, text: str | None, size: tuple[int, int] = (512, 288)) -> Path:
    """A panning textured scene at ``size`` with (or without) a white, thinly outlined subtitle."""
    width, height = size
    rng = np.random.default_rng(3)
    coarse = rng.integers(40, 200, (height // 8, width // 8 + 16, 3)).astype(np.uint8)
    texture = cv2.resize(coarse, (width + 128, height), interpolation=cv2.INTER_CUBIC)
    frames = np.stack([texture[:, 3 * t : 3 * t + width] for t in range(16)])
    if text is not None:
        layer = Image.new("RGB", (width, height))
        mask = Image.new("L", (width, height))
        font = ImageFont.load_default(size=height // 12)
        for image, fill in ((layer, (255, 255, 255)), (mask, 255)):
            ImageDraw.Draw(image).text(
                (width // 4, height - height // 6), text, fill=fill, font=font, stroke_width=1, stroke_fill=0
            )
        inside = np.asarray(mask) > 0
        outline = np.asarray(mask.filter(ImageFilter.MaxFilter(3))) > 0  # a 1-px dark rim
        frames[:, outline] = 0
        frames[:, inside] = np.asarray(layer)[inside]
    return write_video(path, frames, fps=8)


def test_thin_subtitles_on_large_frames_are_read_on_detail_frames(tmp_path: Path) -> None:
    """At 288p a subtitle's 1-px outline vanishes in the 64-px analysis frames; the detail luma keeps it."""
    config = CurateConfig()
    context = {"config_hash": "t", "code_version": "t"}
    _subtitled(tmp_path / "src" / "sub.mp4", "an example subtitle")
    _subtitled(tmp_path / "src" / "plain.mp4", None)
    items = {item.source_id: item for item in list_inputs(tmp_path / "src")}
    texted = process_item(items["sub.mp4"], config, tmp_path / "out", context)[0]
    plain = process_item(items["plain.mp4"], config, tmp_path / "out", context)[0]
    assert texted["reasons"] == ["text_overlay"] and plain["keep"]
    assert texted["scores"]["text_fraction"] > 2 * config.text_min_fraction
    blind = process_item(items["sub.mp4"], config.model_copy(update={"detail_frames": 0}), tmp_path / "o2", context)
    assert blind[0]["scores"]["text_fraction"] < config.text_min_fraction  # what the analysis frames alone see


def test_duplicate_check_uses_the_keyframes_workers_saved(world, tmp_path: Path, monkeypatch) -> None:
    """The pool-wide dedup compares keyframes each worker stored beside its marker: no clip is decoded again
    (and results of older versions without them are still deduplicated, by decoding)."""
    import shutil

    from libragen.curate import pipeline

    source = tmp_path / "src"
    source.mkdir()
    copies = []
    for row, _ in world.of_kind("near_duplicate")[:2]:
        original = next(r for r in world.rows if r["clip_id"] == json.loads(row["defect_params"])["duplicate_of"])
        for clip in (row, original):
            shutil.copy(world.path(clip), source / Path(clip["path"]).name)
        copies.append(Path(row["path"]).name)
    out = tmp_path / "out"

    def no_decoding(*args, **kwargs):
        raise AssertionError("dedup decoded a clip")

    monkeypatch.setattr(pipeline, "read_video", no_decoding)
    run_curation(source, out, CurateConfig(), workers=1)
    dropped = sorted(r["clip_id"] for r in _records(out) if "near_duplicate" in r["reasons"])
    assert dropped == sorted(copies)
    assert len(list((out / "records").glob("*.keyframes.npz"))) == 4  # one per item with a kept clip
    monkeypatch.undo()
    for saved in (out / "records").glob("*.keyframes.npz"):
        saved.unlink()  # as a run of an older version left it
    run_curation(source, out, CurateConfig(), workers=1)
    assert sorted(r["clip_id"] for r in _records(out) if "near_duplicate" in r["reasons"]) == dropped


def test_guided_chunks_cover_every_input_once_and_end_with_single_files() -> None:
    from libragen.curate.pipeline import guided_chunks

    for count, workers in ((240, 1), (240, 2), (7, 4), (1, 2), (100_000, 8)):
        chunks = guided_chunks(count, workers, max_chunk=64)
        assert chunks[0][0] == 0 and chunks[-1][1] == count
        assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))  # contiguous, no overlap
        sizes = [stop - start for start, stop in chunks]
        assert sizes == sorted(sizes, reverse=True) and max(sizes) <= 64 and sizes[-1] == 1
    assert len(guided_chunks(240, 2)) < 24  # a few dozen Ray tasks, not one per file


def _tiny_vision_folder(folder: Path) -> Path:
    """A randomly initialised ViT saved as a local transformers folder (stands in for DINOv2)."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_learned_scorers_score_kept_clips_and_their_thresholds_reject(world, tmp_path: Path) -> None:
    from libragen.curate.learned import learned_scores
    from libragen.eval.scorers import ScorerPaths

    dino = _tiny_vision_folder(tmp_path / "dino")
    row, _ = world.of_kind(None)[0]
    item = next(i for i in list_inputs(world.root / "manifest.parquet") if i.source_id == row["clip_id"])
    context = {"config_hash": "t", "code_version": "t"}
    scored = CurateConfig(scorers=ScorerPaths(dino=dino))
    [record] = process_item(item, scored, tmp_path / "a", context)
    assert record["keep"] and 0.0 < record["scores"]["dino_consistency"] <= 1.0 + 1e-6
    direct = learned_scores(item.path, 0.0, record["end_frame"] / record["fps"], None, scored)
    assert direct["dino_consistency"] == pytest.approx(record["scores"]["dino_consistency"], abs=1e-6)
    strict = scored.model_copy(update={"min_dino_consistency": 1.5})
    [rejected] = process_item(item, strict, tmp_path / "b", context)
    assert rejected["reasons"] == ["inconsistent"] and not rejected["keep"]
    [plain] = process_item(item, CurateConfig(), tmp_path / "c", context)  # no path: skipped, never judged
    assert "dino_consistency" not in plain["scores"] and plain["keep"]
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "clip.mp4").write_bytes(Path(item.path).read_bytes())
    run_curation(tmp_path / "raw", tmp_path / "run", scored, workers=1)
    assert "dino_consistency" in dict(_records(tmp_path / "run")[0]["scores"])
    page = write_report(tmp_path / "run" / CURATED_NAME, tmp_path / "report.html", scored).read_text()
    assert page.count("data:image/png;base64,") >= 2  # histograms (dino_consistency's without a threshold line)


def test_a_missing_scorer_path_stops_the_run_before_any_work(world, tmp_path: Path) -> None:
    from libragen.eval.scorers import ScorerPaths, skipped_notices

    config = CurateConfig(scorers=ScorerPaths(dino=tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run_curation(world.root / "manifest.parquet", tmp_path / "out", config)
    assert not (tmp_path / "out").exists()
    assert len(skipped_notices(ScorerPaths())) == 3


class CentreBoxDetector:
    """A stand-in SubjectDetector: one subject of a fixed share of the frame, or none."""

    def __init__(self, share: float) -> None:
        self.name, self.share = "centre-box", share

    def detect(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.share == 0:
            return np.zeros((0, len(frames), 4)), np.zeros((0, len(frames)))
        height, width = frames.shape[1:3]
        side = np.sqrt(self.share * height * width)
        box = [(width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2]
        return np.tile(box, (1, len(frames), 1)), np.ones((1, len(frames)))


@pytest.mark.parametrize(("share", "reason"), [(0.25, None), (0.005, "subject_too_small"), (0.0, "no_subject")])
def test_a_configured_detector_judges_subjects_of_footage_without_ground_truth(
    world, tmp_path: Path, share: float, reason: str | None
) -> None:
    row, _ = world.of_kind(None)[0]
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "clip.mp4").write_bytes(world.path(row).read_bytes())  # a folder input: no ground truth
    [item] = list_inputs(tmp_path / "raw")
    config = CurateConfig(subject_detector=f"{__name__}:CentreBoxDetector", subject_detector_options={"share": share})
    [record] = process_item(item, config, tmp_path / "out", {"config_hash": "t", "code_version": "t"})
    assert record["scores"]["detected_subjects"] == (1 if share else 0)
    assert record["scores"].get("subject_fraction", 0.0) == pytest.approx(share, rel=1e-6)
    assert record["reasons"][:1] == ([reason] if reason else [])
    [unjudged] = process_item(item, CurateConfig(), tmp_path / "plain", {"config_hash": "t", "code_version": "t"})
    assert "subject_fraction" not in unjudged["scores"]


def test_a_detector_that_cannot_be_imported_stops_the_run(tmp_path: Path) -> None:
    config = CurateConfig(subject_detector="no_such_package.detectors:Nothing")
    with pytest.raises(ValueError, match="cannot be imported"):
        run_curation(tmp_path, tmp_path / "out", config)


def test_ocr_backend_reads_burned_in_text_and_not_the_subjects(tmp_path: Path, monkeypatch) -> None:
    """RapidOCR judges text_overlay on its own (the weight-free text check switched off): the two clips with a
    caption burned in are flagged, the clean ones — whose subjects carry glyphs OCR may misread — are not."""
    from libragen.world.config import WorldConfig
    from libragen.world.generate import make_world

    small = {"width": 320, "height": 180, "frames": 24, "fps": 12.0}
    make_world(WorldConfig(**small, defect_rate=1.0, defect_kinds=["text_overlay"]), 2, tmp_path / "text", seed=3)
    make_world(WorldConfig(**small), 3, tmp_path / "clean", seed=4)
    context = {"config_hash": "t", "code_version": "t"}
    ocr_only = CurateConfig(text_min_fraction=1.0, text_backend="rapidocr")
    for pool, texted in (("text", True), ("clean", False)):
        for item in list_inputs(tmp_path / pool / "manifest.parquet"):
            [record] = process_item(item, ocr_only, tmp_path / "out", context)
            assert ("text_overlay" in record["reasons"]) == texted, (pool, record["reasons"])
            fraction = record["scores"]["ocr_text_fraction"]  # OCR ran: every other check kept the clip
            assert fraction > 20 * ocr_only.max_ocr_text_fraction if texted else (fraction == 0.0 and record["keep"])

    from libragen.curate import ocr, process

    monkeypatch.setattr(ocr, "ocr_available", lambda: False)
    monkeypatch.setattr(process, "ocr_available", lambda: False)
    assert "not installed" in ocr.skipped_notice(ocr_only) and ocr.skipped_notice(CurateConfig()) is None
    [item] = list_inputs(tmp_path / "text" / "manifest.parquet")[:1]
    [record] = process_item(item, ocr_only, tmp_path / "out2", context)
    assert record["keep"] and "ocr_text_fraction" not in record["scores"]  # skipped, not a failure


class BrightnessScorer:
    """A stand-in ClipScorer plug-in (a face detector would look the same): one named score per clip."""

    def __init__(self, scale: float = 1.0) -> None:
        self.name, self.scale = "brightness", scale

    def score(self, frames: np.ndarray, caption: str | None) -> dict[str, float]:
        assert frames.dtype == np.uint8 and min(frames.shape[1:3]) == 224  # the scorer frames, not analysis ones
        return {"mean_brightness": self.scale * float(frames.mean()) / 255, "has_caption": float(bool(caption))}


def test_plug_in_model_scorers_score_kept_clips_and_their_bounds_reject(world, tmp_path: Path) -> None:
    row, _ = world.of_kind(None)[0]
    item = next(i for i in list_inputs(world.root / "manifest.parquet") if i.source_id == row["clip_id"])
    target = f"{__name__}:BrightnessScorer"
    config = CurateConfig(model_scorers=[target], model_scorer_options={target: {"scale": 2.0}})
    context = {"config_hash": "t", "code_version": "t"}
    [record] = process_item(item, config, tmp_path / "a", context)
    assert record["keep"] and 0 < record["scores"]["mean_brightness"] <= 2.0 and record["scores"]["has_caption"] == 1
    bounded = config.model_copy(update={"min_model_scores": {"mean_brightness": 2.5}})
    [rejected] = process_item(item, bounded, tmp_path / "b", context)
    assert rejected["reasons"] == ["low_model_score"]
    with pytest.raises(ValueError, match="cannot be imported"):
        run_curation(tmp_path, tmp_path / "out", CurateConfig(model_scorers=["nowhere.at_all:Scorer"]))
