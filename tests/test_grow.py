"""Growing a backbone to a finer latent keeps its predictions (libragen.models.grow)."""

from __future__ import annotations

import pytest
import torch

from libragen.models.backbone import References
from libragen.models.grow import grow_backbone, grown_config, is_grown_from
from libragen.models.libraworld import LibraWorldBackbone, LibraWorldBackboneConfig
from libragen.models.mmdit import MMDiTConfig


def _coarse() -> LibraWorldBackbone:
    config = LibraWorldBackboneConfig(
        frames=4,
        height=32,
        width=32,
        ref_size=32,
        latent_downsample=4,
        patch=(2, 2, 2),
        prediction="preconditioned",
        transformer=MMDiTConfig(dim=32, depth=2, heads=2),
    )
    torch.manual_seed(0)
    backbone = LibraWorldBackbone(config).eval()
    for parameter in backbone.transformer.parameters():  # zero-initialised output layers would hide mistakes
        torch.nn.init.normal_(parameter, std=0.1)
    return backbone


def test_grown_prediction_pooled_equals_the_coarse_prediction() -> None:
    coarse = _coarse()
    fine = grow_backbone(coarse, 2)
    assert fine.config.patch == (2, 4, 4) and fine.latent_shape == (3, 4, 16, 16)
    assert fine.transformer.skip_projection is not None  # 96 values per token > 32 wide
    latents = torch.randn(2, *fine.latent_shape)
    pooled = torch.nn.functional.avg_pool3d(latents, (1, 2, 2))
    t = torch.tensor([0.3, 0.8])
    text = fine.encode_text(["a red round creature hops to the left.", ""])
    refs_fine = References(torch.randn(2, 2, 3, 16, 16), torch.tensor([[True, False], [True, True]]))
    pooled_refs = torch.nn.functional.avg_pool2d(refs_fine.latents.flatten(0, 1), 2).unflatten(0, (2, 2))
    refs_coarse = References(pooled_refs, refs_fine.mask)
    with torch.no_grad():
        for fine_refs, coarse_refs in ((None, None), (refs_fine, refs_coarse)):
            grown = fine.predict_velocity(latents, t, text, fine_refs)
            expected = coarse.predict_velocity(pooled, t, text, coarse_refs)
            assert torch.allclose(torch.nn.functional.avg_pool3d(grown, (1, 2, 2)), expected, atol=1e-5)
            # and the fine prediction is not just the coarse one upsampled: it carries the fine input's detail
            assert not torch.allclose(grown, expected.repeat_interleave(2, -1).repeat_interleave(2, -2), atol=1e-3)


def test_grown_config_checks() -> None:
    coarse = _coarse().config
    assert is_grown_from(coarse, grown_config(coarse, 1))
    assert not is_grown_from(coarse, coarse)
    with pytest.raises(ValueError, match="finer latent"):
        grown_config(coarse, 3)


def test_skip_projection_is_subtracted_from_the_skip_connection() -> None:
    """With P = identity the clean estimate is c_out F alone: v gains c_skip x_t / t over the plain EDM output."""
    fine = grow_backbone(_coarse(), 2)
    latents = torch.randn(2, *fine.latent_shape)
    t = torch.tensor([0.3, 0.8])
    text = fine.encode_text(["a red round creature hops to the left.", ""])
    with torch.no_grad():
        plain = fine.predict_velocity(latents, t, text)
        fine.transformer.skip_projection.weight.copy_(torch.eye(fine.transformer.skip_projection.weight.shape[0]))
        projected = fine.predict_velocity(latents, t, text)
    s2 = fine.config.sigma_data**2
    c_skip = ((1 - t) * s2 / ((1 - t) ** 2 * s2 + t**2))[:, None, None, None, None]
    assert torch.allclose(projected - plain, c_skip * latents / t[:, None, None, None, None], atol=1e-5)


def test_growing_twice_equals_growing_once() -> None:
    coarse = _coarse()
    once = grow_backbone(coarse, 1)
    mid = grow_backbone(coarse, 2)
    torch.nn.init.normal_(mid.transformer.skip_projection.weight, std=0.01)
    twice = grow_backbone(mid, 1)
    latents = torch.randn(1, *twice.latent_shape)
    t = torch.tensor([0.5])
    text = twice.encode_text(["a blue star-shaped creature glides upward."])
    with torch.no_grad():
        pooled = torch.nn.functional.avg_pool3d(twice.predict_velocity(latents, t, text), (1, 2, 2))
        expected = mid.predict_velocity(torch.nn.functional.avg_pool3d(latents, (1, 2, 2)), t, text)
    assert torch.allclose(pooled, expected, atol=1e-5)
    assert once.config.model_dump() == twice.config.model_dump()
