"""Training the LibraWorld probes: the pieces that make them generalise, and the train-probes command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from libragen.cli import app
from libragen.eval.identity_reader import IdentityReader, IdentityReading, match_log_likelihood
from libragen.eval.probe_data import load_identity_crops, rotate_reference, window_crop
from libragen.eval.probe_models import AttributeProbe, IdentityEncoder
from libragen.eval.probe_train import _hard_batch, _identities_by_look
from libragen.eval.probes import load_probes
from libragen.eval.reader_train import train_identity_reader
from libragen.world.config import WorldConfig
from libragen.world.generate import make_world
from libragen.world.identity import COLOUR_NAMES, COLOURS, glyph_bits, identity
from libragen.world.manifest import read_manifest
from libragen.world.plan import plan_world


def _clip_with_square(rgb: tuple[int, int, int]) -> torch.Tensor:
    """(1, 8, 64, 64, 3) grey clip with a 16 px square of colour ``rgb`` moving right."""
    video = np.full((1, 8, 64, 64, 3), 128, np.uint8)
    for t in range(8):
        video[0, t, 20:36, 10 + 2 * t : 26 + 2 * t] = rgb
    return torch.from_numpy(video)


def test_shape_is_read_from_a_colour_free_silhouette() -> None:
    """The same outline in another colour, queried by that colour, gives the same shape reading."""
    torch.manual_seed(0)
    probe = AttributeProbe().eval()
    red, blue = COLOUR_NAMES.index("red"), COLOUR_NAMES.index("blue")
    red_clip, blue_clip = _clip_with_square(COLOURS["red"]), _clip_with_square(COLOURS["blue"])
    with torch.no_grad():
        red_mask = probe.silhouette(red_clip, torch.tensor([[red]]))
        assert red_mask[0, 0, 0, 25, 15] > 0.99 and red_mask[0, 0, 0, 5, 5] < 0.01  # square in, grey out
        assert torch.allclose(red_mask, probe.silhouette(blue_clip, torch.tensor([[blue]])), atol=0.01)
        assert probe.silhouette(red_clip, torch.tensor([[blue]])).amax() < 0.01  # nothing blue there
        red_shape = probe.shape_logits(red_clip, torch.tensor([[red]]))
        blue_shape = probe.shape_logits(blue_clip, torch.tensor([[blue]]))
        assert (red_shape - blue_shape).abs().max() < 0.02 * red_shape.abs().max()


def test_identity_embedding_keeps_the_glyph_layout() -> None:
    """A mean over the window would embed a pattern and its mirror image alike; the conv head does not."""
    torch.manual_seed(0)
    encoder = IdentityEncoder().eval()
    crop = np.full((1, 48, 48, 3), 200, np.uint8)
    crop[0, 16:24, 8:16] = 20  # dark cell on the left
    mirrored = crop[:, :, ::-1].copy()
    with torch.no_grad():
        a, b = encoder(torch.from_numpy(crop)), encoder(torch.from_numpy(mirrored))
        windows = encoder.embed_windows(torch.from_numpy(np.pad(crop[0], ((8, 8), (8, 8), (0, 0)), mode="edge")[None]))
    assert float(a @ b.T) < 0.999
    # embed_windows is the same network slid over a frame: the window at the crop's centre (pixel 16 of the
    # padded frame = stride-4 cell 4) matches forward() up to the convolutions' zero padding at the crop edge
    assert float(windows[0, :, 4, 4] @ a[0]) > 0.99


def test_window_crop_turns_about_the_subject() -> None:
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[20:44, 20:44] = 90
    frame[22:28, 22:42] = 250  # a bar along the top of the box
    box = np.array([20.0, 20.0, 44.0, 44.0])
    plain = window_crop(frame, box)
    assert np.array_equal(window_crop(frame, box, jitter=np.array([0.0, 0.0, 1.0, 0.0])), plain)
    turned = window_crop(frame, box, jitter=np.array([0.0, 0.0, 1.0, 90.0])).astype(int)
    # a quarter turn moves the bright bar from the top rows to a side column, the centre stays put
    assert np.abs(turned - np.rot90(plain).astype(int)).mean() < 8
    assert plain[16, 24:34].mean() > 200 and turned[16, 24:34].mean() < 150
    white = rotate_reference(np.full((48, 48, 3), 40, np.uint8), 45.0)
    assert white[0, 0].tolist() == [255, 255, 255] and white[24, 24].tolist() == [40, 40, 40]


def test_hard_batches_gather_identities_that_differ_only_in_the_glyph() -> None:
    rng = np.random.default_rng(0)
    ids = rng.choice(500_000, size=3000, replace=False)
    looks = _identities_by_look(ids)
    for group in looks:
        first = identity(int(group[0]))
        assert all((identity(int(i)).shape, identity(int(i)).colour) == (first.shape, first.colour) for i in group)
    batch = _hard_batch(looks, 64, rng)
    assert len(batch) == 64 and len(set(batch.tolist())) == 64
    batch_looks = [(identity(int(i)).shape, identity(int(i)).colour, identity(int(i)).accent) for i in batch]
    assert len(set(batch_looks)) <= 64 // 4  # several identities per look, not 64 different looks


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    train, test = tmp_path_factory.mktemp("probe_train"), tmp_path_factory.mktemp("probe_test")
    make_world(WorldConfig(), 24, train, seed=5, workers=2)
    make_world(WorldConfig(), 24, test, seed=6, split="heldout", workers=2)
    return train, test


def test_train_probes_runs_share_one_record(worlds: tuple[Path, Path], tmp_path: Path) -> None:
    """Three --only runs into one folder leave a record with every probe, loadable as shipped probes are."""
    train, test = worlds
    base = ["eval", "train-probes", "--train-world", str(train), "--test-world", str(test), "--out", str(tmp_path)]
    steps = ["--attribute-steps", "2", "--identity-steps", "2", "--reader-steps", "2", "--threads", "1"]
    for only in ("identity", "reader", "attribute"):
        result = CliRunner().invoke(app, [*base, *steps, "--only", only])
        assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "probes.json").read_text())
    for probe in ("identity", "identity_reader", "attribute"):
        assert record[probe]["train_world"] == str(train) and record[probe]["steps"] == 2, record[probe]
    for probe in ("identity", "identity_reader"):
        retrieval = record[probe]["heldout_retrieval"]
        assert {"top1", "top1_clip", "top1_same_look"} <= set(retrieval)
        assert 0.0 <= retrieval["top1_same_look"] <= 1.0
    assert 0.0 <= record["identity_reader"]["heldout_retrieval"]["orientation_error_deg"] <= 45.0
    probes = load_probes(tmp_path)
    assert isinstance(probes.identity.locator, IdentityEncoder) and probes.attribute.frames == 8
    assert isinstance(probes.identity.reader, IdentityReader)

    # a second, finer stage continues the reader and records where it started from
    finer = tmp_path / "finer"
    for name in ("attribute_probe.safetensors", "identity_encoder.safetensors", "probes.json"):
        finer.mkdir(exist_ok=True)
        (finer / name).write_bytes((tmp_path / name).read_bytes())
    stage = ["--only", "reader", "--reader-init", str(tmp_path), "--reader-angle-noise", "4", "--reader-lr", "0.0005"]
    result = CliRunner().invoke(app, [*base[:-1], str(finer), *steps, *stage])
    assert result.exit_code == 0, result.output
    entry = json.loads((finer / "probes.json").read_text())["identity_reader"]
    assert entry["init"] == str(tmp_path) and entry["angle_noise"] == 4.0 and entry["init_record"]["steps"] == 2
    assert isinstance(load_probes(finer).identity.reader, IdentityReader)


def test_manifest_records_the_angles_subjects_were_drawn_at(worlds: tuple[Path, Path]) -> None:
    """angles_deg per frame equals the plan's trajectory: what the reader's orientation net learns from."""
    train, _ = worlds
    made = read_manifest(train)
    plan = {spec.clip_id: spec for spec in plan_world(WorldConfig(), 24, seed=5, split="train")}
    for row in made:
        if row["defect"] is not None:
            continue
        for subject, spec in zip(row["subjects"], plan[row["clip_id"]].subjects, strict=True):
            planned = np.rad2deg(spec.trajectory(row["num_frames"])[3])
            assert np.allclose(subject["angles_deg"], planned, atol=1e-3)


def _reading(glyphs: np.ndarray, shape: int = 0) -> IdentityReading:
    """A confident reading of glyphs (N, 4, 4) with one shape / colour / accent."""
    count = len(glyphs)
    one_hot = lambda size: torch.nn.functional.one_hot(torch.full((count,), shape), size).float()  # noqa: E731
    return IdentityReading(torch.from_numpy(glyphs * 0.96 + 0.02).float(), one_hot(8), one_hot(8), one_hot(4))


def test_reader_matching_forgives_a_quarter_turn_but_not_another_glyph() -> None:
    glyph, other = glyph_bits(5).astype(np.float32), glyph_bits(900).astype(np.float32)
    gallery = _reading(np.stack([glyph, other]))
    queries = _reading(np.stack([np.rot90(glyph, k) for k in range(4)]))
    scores = match_log_likelihood(queries, gallery)
    assert (scores.argmax(1) == 0).all()  # every quarter turn of the glyph finds it
    assert torch.allclose(scores[:, 0], scores[0, 0])
    mismatched_look = match_log_likelihood(_reading(glyph[None], shape=3), gallery.take(slice(0, 1)))
    assert float(mismatched_look[0, 0]) < float(scores[0, 0]) - 5  # another shape costs as much as ~5 cells


def test_reader_training_needs_recorded_angles(worlds: tuple[Path, Path]) -> None:
    crops = load_identity_crops(worlds[0])
    assert np.isfinite(crops.angles).all() and np.isfinite(crops.reference_angles).all()
    crops.angles[0, 0] = np.nan  # as in a world made before manifests stored angles
    with pytest.raises(ValueError, match="angles"):
        train_identity_reader(crops, steps=1)
