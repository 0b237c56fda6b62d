"""The learned decoder of pooled-pixel latents: starts as bilinear, trains, saves, loads, and beats bilinear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from libragen.cli import app
from libragen.models.libraworld import LibraWorldBackbone, LibraWorldBackboneConfig
from libragen.models.mmdit import MMDiTConfig
from libragen.models.upsampler import LatentUpsampler, UpsamplerConfig

runner = CliRunner()


def pooled_backbone(**overrides) -> LibraWorldBackbone:
    fields = {
        "latent_downsample": 4,
        "patch": (2, 4, 4),
        "transformer": MMDiTConfig(dim=32, depth=1, heads=2),
        "upsampler": UpsamplerConfig(width=8, blocks=1),
    }
    return LibraWorldBackbone(LibraWorldBackboneConfig(**(fields | overrides))).eval()


def test_untrained_decoder_is_bilinear_upsampling() -> None:
    torch.manual_seed(0)
    latents = torch.rand(3, 3, 16, 16) * 2 - 1
    decoder = LatentUpsampler(4, UpsamplerConfig(width=8, blocks=1))
    bilinear = torch.nn.functional.interpolate(latents, scale_factor=4, mode="bilinear", align_corners=False)
    assert decoder(latents).shape == (3, 3, 64, 64)
    assert torch.equal(decoder(latents), bilinear)


def test_learned_decoder_needs_pooled_latents_and_its_weights(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pooled latents"):
        LibraWorldBackboneConfig(decoder="learned", patch=(2, 16, 16))
    backbone = pooled_backbone(decoder="learned")
    backbone.save(tmp_path / "m")
    (tmp_path / "m" / "decoder.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"decoder\.safetensors"):
        LibraWorldBackbone.load(tmp_path / "m")


def test_train_decoder_beats_bilinear_and_the_backbone_uses_it(world, tmp_path: Path) -> None:
    model = tmp_path / "model"
    backbone = pooled_backbone()
    backbone.save(model)
    latents = torch.rand(1, *backbone.latent_shape) * 2 - 1
    bilinear = backbone.decode_video(latents)

    result = runner.invoke(
        app,
        ["train", "decoder", "--model", str(model), "--data", str(world.root), "--steps", "60", "--max-clips", "60"],
    )
    assert result.exit_code == 0, result.output
    record = json.loads((model / "decoder.json").read_text())
    assert record["psnr_learned_db"] > record["psnr_bilinear_db"] + 0.1  # measured on held-out clips' frames
    assert json.loads((model / "backbone.json").read_text())["config"]["decoder"] == "learned"

    loaded = LibraWorldBackbone.load(model).eval()
    assert loaded.upsampler is not None and not any(p.requires_grad for p in loaded.upsampler.parameters())
    assert not any(n.startswith("upsampler") for n, _ in loaded.trainable.named_parameters())
    with torch.no_grad():
        decoded = loaded.decode_video(latents)
    assert decoded.shape == bilinear.shape == (1, 16, 3, 64, 64)
    assert not torch.equal(decoded, bilinear) and decoded.abs().max() <= 1
    # re-saving the loaded backbone keeps its decoder
    loaded.save(tmp_path / "again")
    again = LibraWorldBackbone.load(tmp_path / "again").eval()
    with torch.no_grad():
        assert torch.equal(again.decode_video(latents), decoded)


def test_train_decoder_refuses_full_size_latents(world, tmp_path: Path) -> None:
    LibraWorldBackbone(
        LibraWorldBackboneConfig(patch=(2, 16, 16), transformer=MMDiTConfig(dim=32, depth=1, heads=2))
    ).save(tmp_path / "m")
    result = runner.invoke(app, ["train", "decoder", "--model", str(tmp_path / "m"), "--data", str(world.root)])
    assert result.exit_code != 0
    assert "nothing to decode" in str(result.exception)
