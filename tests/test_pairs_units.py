"""Pairs stage building blocks: Ref-tag rewriting, views, the weight-free embedder, retrieval, embedders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from libragen.core.embed import ImageEmbedder
from libragen.pairs.captions import retag, tag_phrases
from libragen.pairs.config import PairsConfig
from libragen.pairs.embedders import TorchModelEmbedder, get_embedder
from libragen.pairs.errors import MissingWeightsError, PairsInputError
from libragen.pairs.glyph_embed import EMBED_DIM, LibraWorldGlyphEmbedder, read_reference
from libragen.pairs.retrieval import cross_candidates, identity_vectors
from libragen.pairs.subjects import GroundedSamLocator, SubjectTrack, mask_boxes
from libragen.pairs.views import contact_pixels, expected_areas, inpair_frame, screen_contacts, usable_views
from libragen.world.identity import SHAPES, identity
from libragen.world.sprite import render_subject

CAPTION = (
    "Ref 1[a red round creature] hops quickly to the left, Ref 2[a blue oval creature] glides slowly upward "
    "and Ref 3[a green square creature] spins in place on a brick wall."
)


def test_retag_keeps_renumbers_and_untags() -> None:
    assert tag_phrases(CAPTION) == {1: "a red round creature", 2: "a blue oval creature", 3: "a green square creature"}
    text, order = retag(CAPTION, [3, 2])
    assert order == [2, 3]  # caption order, not request order
    assert text.startswith("A red round creature hops")  # dropped opening tag: plain, capitalised
    assert "Ref 1[a blue oval creature]" in text and "Ref 2[a green square creature]" in text
    assert "Ref 3" not in text
    text, order = retag(CAPTION, [])
    assert order == [] and "Ref" not in text
    assert retag(CAPTION, [1, 2, 3]) == (CAPTION, [1, 2, 3])


def _portrait(identity_id: int, angle_deg: float, radius: float = 22.0, size: int = 64) -> np.ndarray:
    one = np.ones(1, np.float32)
    alpha, rgb = render_subject(
        identity(identity_id), one * size / 2, one * size / 2, one * radius, np.deg2rad([angle_deg]), size, size
    )
    frame = 1.0 * (1 - alpha[0, ..., None]) + rgb[0] * alpha[0, ..., None]
    return (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)


def test_glyph_embedder_reads_shape_and_is_pose_invariant() -> None:
    for k, shape in enumerate(SHAPES):
        ident = identity(k + 8 * 40)  # ids cycle through shapes first
        assert ident.shape == shape
        for angle in (-20.0, 7.0, 33.0):
            reading = read_reference(_portrait(ident.identity_id, angle))
            assert reading.shape == shape, (shape, angle)
            # the glyph is read up to a quarter turn
            matches = max(np.mean((np.rot90(reading.glyph, q) > 0) == ident.glyph) for q in range(4))
            assert matches >= 0.8, (shape, angle, matches)
    embedder = LibraWorldGlyphEmbedder()
    assert isinstance(embedder, ImageEmbedder)
    base = identity(4242)
    twin = next(  # same shape, colour and accent, another glyph
        identity(i)
        for i in range(4242 + 256, 600_000, 256)
        if identity(i).shape == base.shape and identity(i).colour == base.colour and identity(i).accent == base.accent
    )
    views = np.stack([_portrait(base.identity_id, a, r) for a, r in ((0, 22), (15, 18), (-12, 25))])
    other = _portrait(twin.identity_id, 0)
    vectors = embedder.embed(np.concatenate([views, other[None]]))
    assert vectors.shape == (4, EMBED_DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    same = vectors[:3] @ vectors[:3].T
    assert same.min() > 0.9
    assert (vectors[:3] @ vectors[3]).max() < same.min() - 0.15
    blank = embedder.embed(np.full((1, 64, 64, 3), 255, np.uint8))
    assert not blank.any()


def test_cross_candidates_exclude_same_clip_and_apply_threshold() -> None:
    vectors = identity_vectors(
        [np.array([[1.0, 0.0]]), np.array([[0.99, 0.1]]), np.array([[1.0, 0.02]]), np.array([[0.0, 1.0]])]
    )
    groups = np.array([0, 0, 1, 2])
    found = cross_candidates(vectors, groups, threshold=0.9, limit=5)
    assert [c.index for c in found[0]] == [2]  # 1 is the same clip, 3 is below threshold
    assert [c.index for c in found[2]] == [0, 1]  # best first
    assert found[3] == []
    assert all(c.similarity >= 0.9 for row in found for c in row)


def _track(areas: list[int]) -> SubjectTrack:
    masks = np.zeros((len(areas), 64, 64), bool)
    for t, area in enumerate(areas):
        side = round(float(np.sqrt(area)))
        masks[t, 10 + t : 10 + t + side, 5 + 2 * t : 5 + 2 * t + side] = side > 0
    return SubjectTrack(1, "a thing", masks, mask_boxes(masks))


def test_views_follow_the_size_trend_and_skip_hidden_frames() -> None:
    growing = [int(100 * 1.05**t) for t in range(16)]
    growing[6] = growing[6] // 3  # hidden behind something in frame 6
    track = _track(growing)
    trend = expected_areas(track.areas)
    assert trend[15] > 1.8 * trend[0]  # the steady growth is expected, not a defect
    views = usable_views(track, PairsConfig())
    assert 6 not in views and 0 in views and 15 in views
    frame, fallback = inpair_frame(track, views, PairsConfig(), np.random.default_rng(0))
    assert frame >= 4 and not fallback  # at least a quarter of the clip after the first frame
    assert len(usable_views(_track([0] * 16), PairsConfig())) == 0


def test_views_touching_another_subject_are_screened() -> None:
    steady = _track([100] * 16)
    other_masks = np.zeros_like(steady.masks)
    for t in (8, 9, 10):  # another subject covers part of it in frames 8-10
        x0 = 5 + 2 * t + 6
        steady.masks[t, :, x0:] = False
        other_masks[t, 10 + t : 10 + t + 10, x0 : x0 + 10] = True
    other = SubjectTrack(2, "another thing", other_masks, mask_boxes(other_masks))
    contact = contact_pixels([steady, other])
    assert contact[0][[8, 9, 10]].min() > 0 and contact[0][:8].max() == 0
    views, clear = screen_contacts(steady, np.arange(16), contact[0], PairsConfig())
    assert not {8, 9, 10} & set(views.tolist()) and len(clear) == 13


def test_embedder_resolution_and_weight_errors(tmp_path: Path) -> None:
    assert get_embedder("libraworld-glyph").name == "libraworld-glyph"
    assert get_embedder("libragen.pairs.glyph_embed:LibraWorldGlyphEmbedder").name == "libraworld-glyph"
    with pytest.raises(PairsInputError, match="unknown embedder"):
        get_embedder("dino-large")
    with pytest.raises(MissingWeightsError, match=r"needs weights at .*missing\.pt2"):
        get_embedder(f"torch:{tmp_path / 'missing.pt2'}")
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())  # a stand-in image model
    batch = torch.export.Dim("batch")
    exported = torch.export.export(model, (torch.zeros(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    torch.export.save(exported, tmp_path / "tiny.pt2")
    embedder = get_embedder(f"torch:{tmp_path / 'tiny.pt2'}")
    assert isinstance(embedder, TorchModelEmbedder)
    out = embedder.embed(np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8))
    assert out.shape == (3, 48) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    with pytest.raises(MissingWeightsError, match="GroundingDINO subject detection needs weights at"):
        GroundedSamLocator(tmp_path / "gdino.pth", tmp_path / "sam.pth")
