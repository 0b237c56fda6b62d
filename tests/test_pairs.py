"""``pairs build`` on the shared LibraWorld fixture: samples, skips, 1-4 references, errors, the dataset.

Ground-truth identities and boxes are read only by these checks, never by the build.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from libragen.core.video import VideoReadError, read_video
from libragen.pairs.build import BuildSummary, build_pairs
from libragen.pairs.captions import tag_phrases
from libragen.pairs.cli import pairs_app
from libragen.pairs.config import PairsConfig
from libragen.pairs.dataset import PairsDataset, TextEncoderCache, make_loader
from libragen.pairs.samples import read_samples
from libragen.world.manifest import decode_masks, encode_masks, write_manifest

SUBSET = 48  # clips of the fixture world used for the main build (keeps the suite fast)
FAST = PairsConfig(embed_views=2)


def _approved(rows: list[dict[str, Any]], world_root: Path, path: Path) -> Path:
    """A manifest of ``rows`` with absolute video paths (what a review export would hand over)."""
    copies = [dict(row, path=str(world_root / row["path"])) for row in rows]
    write_manifest(copies, path)
    return path


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


@pytest.fixture(scope="module")
def built(world, tmp_path_factory: pytest.TempPathFactory) -> tuple[BuildSummary, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("pairs")
    source = _approved(world.rows[:SUBSET], world.root, tmp / "approved.parquet")
    summary = build_pairs(source, tmp / "out", FAST)
    return summary, read_samples(summary.out_dir)


def test_build_writes_tagged_samples_with_reference_images(built) -> None:
    summary, samples = built
    out = summary.out_dir
    assert (out / "summary.json").is_file() and (out / "pairs.yaml").is_file()
    assert json.loads((out / "summary.json").read_text()) == summary.data
    assert summary.samples["in"] > 30 and summary.samples["cross"] > 10
    assert len({s["sample_id"] for s in samples}) == len(samples)
    for sample in samples:
        assert sample["pair_type"] in ("in", "cross")
        assert 1 <= sample["num_refs"] == len(sample["refs"]) <= 4
        phrases = tag_phrases(sample["caption"])
        assert sorted(phrases) == list(range(1, sample["num_refs"] + 1))  # Ref j names reference j
        assert [phrases[r["ref_index"]] for r in sample["refs"]] == [r["phrase"] for r in sample["refs"]]
        assert sample["copy_paste_risk"] == pytest.approx(max(r["copy_paste_risk"] for r in sample["refs"]))
        for ref in sample["refs"]:
            image = np.asarray(Image.open(out / ref["image"]))
            assert image.shape == (64, 64, 3)
            assert (image[0, 0] == 255).all() and (image[-1, -1] == 255).all()  # white padding
            if sample["pair_type"] == "cross":
                assert ref["source_clip_id"] != sample["clip_id"]
                assert ref["similarity"] >= FAST.threshold - 1e-6  # stored as float32
            else:
                assert ref["source_clip_id"] == sample["clip_id"]


def test_unreadable_clips_are_skipped_with_a_count(world, built) -> None:
    summary, samples = built
    unreadable = set()
    for row in world.rows[:SUBSET]:
        if row["defect"] in ("truncated", "zero_bytes", "not_video"):
            try:
                read_video(world.path(row))
            except VideoReadError:
                unreadable.add(row["clip_id"])
    assert unreadable, "the subset should hold unreadable clips"
    assert summary.data["clips_skipped"]["unreadable_video"] == len(unreadable)
    assert not unreadable & {s["clip_id"] for s in samples}


def test_inpair_references_cover_their_subject_away_from_the_first_frame(world, built) -> None:
    _, samples = built
    truth = {row["clip_id"]: row for row in world.rows if row["defect"] is None}
    ious, checked = [], 0
    for sample in samples:
        if sample["pair_type"] != "in" or sample["clip_id"] not in truth:
            continue
        subjects = {s["ref_index"]: s for s in truth[sample["clip_id"]]["subjects"]}
        for ref in sample["refs"]:
            gt_box = subjects[ref["target_ref_index"]]["boxes"][ref["frame_index"]]
            ious.append(_iou(ref["box"], gt_box))
            assert ref["frame_index"] >= math.ceil(FAST.min_frame_gap * (sample["num_frames"] - 1))
            assert json.loads(ref["augmentation"])["margin"] >= 0
            checked += 1
    assert checked > 40
    assert min(ious) >= 0.8


def test_cross_pairs_share_identity_and_risk_less_copy_paste(world, built) -> None:
    _, samples = built
    ids = {row["clip_id"]: {s["ref_index"]: s["identity_id"] for s in row["subjects"]} for row in world.rows}
    cross = [(s, r) for s in samples if s["pair_type"] == "cross" for r in s["refs"]]
    correct = [
        ids[s["clip_id"]][r["target_ref_index"]] == ids[r["source_clip_id"]][r["source_ref_index"]] for s, r in cross
    ]
    assert len(correct) > 15
    assert np.mean(correct) >= 0.95
    in_risk = {
        (s["clip_id"], r["target_ref_index"]): r["copy_paste_risk"]
        for s in samples
        if s["pair_type"] == "in"
        for r in s["refs"]
    }
    pairs = [(in_risk[(s["clip_id"], r["target_ref_index"])], r["copy_paste_risk"]) for s, r in cross]
    assert np.mean([a > b for a, b in pairs]) >= 0.9


@pytest.mark.parametrize("max_refs", [1, 2, 3, 4])
def test_one_to_four_references_per_sample(world, tmp_path: Path, max_refs: int) -> None:
    four = [
        row
        for row in world.rows
        if row["defect"] is None
        and len(row["subjects"]) == 4
        and all(min(s["visible_fraction"]) > 0.95 for s in row["subjects"])  # all four stay in view
    ][:2]
    assert len(four) == 2
    source = _approved(four, world.root, tmp_path / "approved.parquet")
    summary = build_pairs(source, tmp_path / "out", FAST.model_copy(update={"mode": "in", "max_refs": max_refs}))
    samples = read_samples(summary.out_dir)
    assert len(samples) == 2 and summary.samples["cross"] == 0
    for sample, row in zip(samples, four, strict=True):
        assert sample["num_refs"] == max_refs
        assert sorted(tag_phrases(sample["caption"])) == list(range(1, max_refs + 1))
        for phrase in tag_phrases(row["caption"]).values():  # untagged subjects stay in the text
            assert phrase.lower() in sample["caption"].lower()
    assert summary.data["skipped_subjects"]["in"].get("over_max_refs", 0) == 2 * (4 - max_refs)


def test_missing_subject_is_skipped_and_left_untagged(world, tmp_path: Path) -> None:
    row = dict(next(r for r in world.rows if r["defect"] is None and len(r["subjects"]) == 3))
    masks = decode_masks(row)
    masks[1] = False  # subject Ref 2 never visible (e.g. the segmenter found nothing)
    row["masks"] = encode_masks(masks)
    source = _approved([row], world.root, tmp_path / "approved.parquet")
    summary = build_pairs(source, tmp_path / "out", FAST)
    (sample,) = [s for s in read_samples(summary.out_dir) if s["pair_type"] == "in"]
    assert sample["num_refs"] == 2
    assert [r["target_ref_index"] for r in sample["refs"]] == [1, 3]
    assert tag_phrases(row["caption"])[2] in sample["caption"] and "Ref 3" not in sample["caption"]
    assert summary.data["skipped_subjects"]["in"] == {"not_visible": 1}
    assert summary.data["skipped_subjects"]["cross"]["not_visible"] == 1


def test_clip_without_any_cross_pair_is_counted_not_an_error(world, tmp_path: Path) -> None:
    row = next(r for r in world.rows if r["defect"] is None and len(r["subjects"]) == 2)
    source = _approved([row], world.root, tmp_path / "approved.parquet")
    summary = build_pairs(source, tmp_path / "out", FAST.model_copy(update={"mode": "cross"}))
    assert summary.samples == {"in": 0, "cross": 0, "total": 0}
    assert summary.data["clips_without_sample"] == {"no_cross_sample": 1}
    assert summary.data["skipped_subjects"]["cross"] == {"no_match": 2}
    assert read_samples(summary.out_dir) == []


def test_reviewed_manifest_uses_accepted_rows_and_world_masks(world, tmp_path: Path) -> None:
    rows = [r for r in world.rows if r["defect"] is None][:4]
    export = [  # what `review export --all` hands over: curated columns + decisions, no masks
        {"clip_id": r["clip_id"], "path": str(world.path(r)), "caption": r["caption"], "human_decision": d}
        for r, d in zip(rows, ["accept", "accept", "reject", "accept"], strict=True)
    ]
    pq.write_table(pa.Table.from_pylist(export), tmp_path / "approved.parquet")
    runner = CliRunner()
    args = ["build", "--from", str(tmp_path / "approved.parquet"), "--mode", "in"]
    result = runner.invoke(pairs_app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "--masks WORLD_MANIFEST" in result.output
    result = runner.invoke(pairs_app, [*args, "--out", str(tmp_path / "b"), "--masks", str(world.root)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["rows"] == 4 and summary["rows_not_approved"] == 1 and summary["locator"] == "world-masks"
    assert {s["clip_id"] for s in read_samples(tmp_path / "b")} == {rows[i]["clip_id"] for i in (0, 1, 3)}


def test_build_is_deterministic(world, tmp_path: Path) -> None:
    rows = [r for r in world.rows if r["defect"] is None][:3]
    source = _approved(rows, world.root, tmp_path / "approved.parquet")
    first = build_pairs(source, tmp_path / "a", FAST.model_copy(update={"mode": "in"}))
    second = build_pairs(source, tmp_path / "b", FAST.model_copy(update={"mode": "in"}))
    assert read_samples(first.out_dir) == read_samples(second.out_dir)
    for ref in (r for s in read_samples(first.out_dir) for r in s["refs"]):
        assert (first.out_dir / ref["image"]).read_bytes() == (second.out_dir / ref["image"]).read_bytes()


def test_cli_bad_input_gives_one_line_errors(world, tmp_path: Path) -> None:
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(pairs_app, ["build", *args])
        return result.exit_code, result.output.strip()

    code, text = run("--from", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "o"))
    assert code == 2 and text == f"error: {tmp_path / 'nope.parquet'}: input manifest not found"
    pq.write_table(pa.table({"clip_id": ["a"]}), tmp_path / "thin.parquet")
    code, text = run("--from", str(tmp_path / "thin.parquet"), "--out", str(tmp_path / "o"))
    assert code == 2 and text.endswith("missing column(s) path, caption (need clip_id, path, caption)")
    assert len(text.splitlines()) == 1
    source = _approved(world.rows[:1], world.root, tmp_path / "approved.parquet")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    code, text = run("--from", str(source), "--out", str(tmp_path / "busy"))
    assert code == 2 and "not empty" in text and (tmp_path / "busy" / "notes.txt").exists()
    code, text = run(
        "--from",
        str(source),
        "--out",
        str(tmp_path / "o"),
        "--locator",
        "grounded-sam",
        "--detector-weights",
        str(tmp_path / "g.pth"),
        "--segmenter-weights",
        str(tmp_path / "s.pth"),
    )
    expected = f"needs weights at {tmp_path / 'g.pth'} (not found); pass --detector-weights PATH"
    assert code == 2 and text == f"error: GroundingDINO subject detection {expected}"
    code, text = run("--from", str(source), "--out", str(tmp_path / "o"), "--mode", "sideways")
    assert code == 2


def test_dataset_and_loader_yield_training_batches(built, tmp_path: Path) -> None:
    summary, samples = built
    calls = tmp_path / "encoder_calls.txt"

    def encoder(captions: list[str]) -> torch.Tensor:  # a stand-in text encoder: 3 tokens x 8 dims
        with calls.open("a") as handle:
            handle.write("".join(c + "\n" for c in captions))
        return torch.stack([torch.full((3, 8), float(len(c))) for c in captions])

    cache = TextEncoderCache(encoder, name="toy", cache_dir=tmp_path / "text")
    dataset = PairsDataset(summary.out_dir, text_cache=cache)
    assert len(dataset) == len(samples)
    unique = len({s["caption"] for s in samples})
    assert dataset.warm_text_cache(batch_size=16) == unique
    assert dataset.warm_text_cache() == 0  # second time: all cached
    item = dataset[0]
    assert item["video"].shape == (16, 3, 64, 64) and item["video"].min() >= -1 and item["video"].max() <= 1
    assert item["refs"].shape == (samples[0]["num_refs"], 3, 64, 64)
    assert torch.equal(item["text"], torch.full((3, 8), float(len(item["caption"]))))

    loader = make_loader(dataset, batch_size=4, workers=2, cross_share=0.5, num_samples=8, seed=1)
    batches = list(loader)
    assert len(batches) == 2
    by_id = {s["sample_id"]: s for s in samples}
    for batch in batches:
        assert batch["video"].shape == (4, 16, 3, 64, 64)
        assert batch["text"].shape == (4, 3, 8)
        assert batch["refs"].shape[:2] == batch["ref_mask"].shape
        for b, sample_id in enumerate(batch["sample_id"]):
            assert int(batch["ref_mask"][b].sum()) == by_id[sample_id]["num_refs"]
            assert bool(batch["is_cross"][b]) == (by_id[sample_id]["pair_type"] == "cross")
    assert len(calls.read_text().splitlines()) == unique  # workers found every caption cached
    drawn = list(make_loader(dataset, batch_size=4, cross_share=0.5, num_samples=2000, seed=2).sampler)
    share = np.mean([dataset.pair_types[i] == "cross" for i in drawn])
    assert 0.45 < share < 0.55
