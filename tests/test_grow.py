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
