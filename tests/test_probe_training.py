"""Training the LibraWorld probes: the pieces that make them generalise, and the train-probes command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from libragen.cli import app
from libragen.eval.probe_data import rotate_reference, window_crop
from libragen.eval.probe_models import AttributeProbe, IdentityEncoder
from libragen.eval.probe_train import _hard_batch, _identities_by_look
from libragen.eval.probes import load_probes
from libragen.world.config import WorldConfig
from libragen.world.generate import make_world
from libragen.world.identity import COLOUR_NAMES, COLOURS, identity


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
    """Two --only runs into one folder leave a record with both probes, loadable as shipped probes are."""
    train, test = worlds
    base = ["eval", "train-probes", "--train-world", str(train), "--test-world", str(test), "--out", str(tmp_path)]
    steps = ["--attribute-steps", "2", "--identity-steps", "2", "--threads", "1"]
    for only in ("identity", "attribute"):
        result = CliRunner().invoke(app, [*base, *steps, "--only", only])
        assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "probes.json").read_text())
    for probe in ("identity", "attribute"):
        assert record[probe]["train_world"] == str(train) and record[probe]["steps"] == 2, record[probe]
    retrieval = record["identity"]["heldout_retrieval"]
    assert {"top1", "top1_clip", "top1_same_look"} <= set(retrieval)
    assert 0.0 <= retrieval["top1_same_look"] <= 1.0
    probes = load_probes(tmp_path)
    assert isinstance(probes.identity, IdentityEncoder) and probes.attribute.frames == 8
