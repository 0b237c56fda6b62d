"""Learned scorers load from local folders only; missing ones are skipped with a notice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from libragen.core.embed import ImageEmbedder
from libragen.eval.scorers import HFImageEmbedder, ScorerLoadError, ScorerPaths, load_scorers


def test_missing_paths_are_skipped_with_notices() -> None:
    scorers = load_scorers(ScorerPaths())
    assert scorers.clip is None and scorers.dino is None and scorers.aesthetic is None
    assert len(scorers.notices) == 3 and all("skipped" in n for n in scorers.notices)


def test_a_given_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ScorerLoadError, match="not found"):
        load_scorers(ScorerPaths(dino=tmp_path / "nowhere"))


def test_local_vision_model_embeds_images(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    ViTModel(config).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    embedder = load_scorers(ScorerPaths(dino=tmp_path)).dino
    assert isinstance(embedder, HFImageEmbedder) and isinstance(embedder, ImageEmbedder)
    images = np.random.default_rng(0).integers(0, 255, size=(3, 48, 48, 3), dtype=np.uint8)
    vectors = embedder.embed(images)
    assert vectors.shape == (3, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
