"""The MM-DiT backbone: shapes, reference injection (clean, one-way, RoPE slot, K/V cache), LoRA, save/load."""

from __future__ import annotations

import pytest
import torch

from libragen.infer.sampler import Guidance, TextCFG, sample
from libragen.models.libraworld import LibraWorldBackbone, LibraWorldBackboneConfig, preconditioned_velocity
from libragen.models.mmdit import MMDiTConfig
from libragen.models.rope import apply_rope, rope_angles

PROMPTS = ["a red round creature hops quickly to the left on a brick wall.", "a blue oval creature stays still."]


def tiny_config(one_way: bool = True, **overrides) -> LibraWorldBackboneConfig:
    """4-frame 32 px clips, 2×8×8 patches, a 2-block 32-wide transformer."""
    transformer = MMDiTConfig(dim=32, depth=2, heads=2, one_way_refs=one_way)
    fields = {"frames": 4, "height": 32, "width": 32, "ref_size": 32, "patch": (2, 8, 8), "transformer": transformer}
    return LibraWorldBackboneConfig(**(fields | overrides))


def tiny_backbone(one_way: bool = True, seed: int = 0) -> LibraWorldBackbone:
    """A tiny backbone with non-zero weights everywhere so every path matters."""
    torch.manual_seed(seed)
    backbone = LibraWorldBackbone(tiny_config(one_way))
    with torch.no_grad():
        for param in backbone.trainable.parameters():  # zero-initialised gates would hide bugs
            param.add_(torch.randn_like(param) * 0.05)
    return backbone.eval()


def inputs(backbone: LibraWorldBackbone, refs: int = 2):
    torch.manual_seed(1)
    latents = torch.randn(2, *backbone.latent_shape)
    t = torch.tensor([0.3, 0.8])
    images = torch.rand(2, refs, 3, 32, 32) * 2 - 1
    mask = torch.ones(2, refs, dtype=torch.bool)
    mask[1, -1] = False  # second sample has one reference fewer
    return latents, t, backbone.encode_text(PROMPTS), backbone.encode_references(images, mask)


def last_block_refs(backbone: LibraWorldBackbone, *args, **kwargs) -> torch.Tensor:
    """Reference-token hidden states after the last block (captured with a forward hook)."""
    captured = {}
    n_video = backbone.patchify(args[0]).shape[1]

    def hook(_module, _inputs, output):
        captured["refs"] = output[0][:, n_video:].detach().clone()

    handle = backbone.trainable.blocks[-1].register_forward_hook(hook)
    try:
        backbone.predict_velocity(*args, **kwargs)
    finally:
        handle.remove()
    return captured["refs"]


def test_shapes_and_patch_round_trip():
    backbone = tiny_backbone()
    latents, t, text, refs = inputs(backbone)
    assert backbone.predict_velocity(latents, t, text, refs).shape == latents.shape
    assert backbone.predict_velocity(latents, t, text).shape == latents.shape
    assert torch.equal(backbone.unpatchify(backbone.patchify(latents), tuple(latents.shape)), latents)
    video = torch.rand(2, 4, 3, 32, 32) * 2 - 1
    assert torch.equal(backbone.decode_video(backbone.encode_video(video)), video)


def test_references_change_the_prediction_and_padding_is_ignored():
    backbone = tiny_backbone()
    latents, t, text, refs = inputs(backbone)
    with_refs = backbone.predict_velocity(latents, t, text, refs)
    assert not torch.allclose(with_refs, backbone.predict_velocity(latents, t, text), atol=1e-5)
    # changing the padded (masked-out) reference of sample 1 changes nothing
    other = refs.latents.clone()
    other[1, -1] = torch.rand_like(other[1, -1])
    moved = backbone.predict_velocity(latents, t, text, type(refs)(other, refs.mask))
    assert torch.allclose(with_refs, moved, atol=1e-6)


def test_reference_tokens_are_clean_and_independent_of_timestep():
    """Reference tokens take timestep-0 modulation: their states do not depend on the video's t."""
    backbone = tiny_backbone()
    latents, _, text, refs = inputs(backbone)
    early = last_block_refs(backbone, latents, torch.tensor([0.9, 0.9]), text, refs)
    late = last_block_refs(backbone, latents, torch.tensor([0.1, 0.1]), text, refs)
    assert torch.allclose(early, late, atol=1e-6)


def test_sampling_leaves_references_untouched():
    backbone = tiny_backbone()
    _, _, _, refs = inputs(backbone)
    before = refs.latents.clone()
    video = sample(backbone, PROMPTS, refs=refs, steps=3, guidance=TextCFG(2.0), seed=[0, 1])
    assert video.shape == (2, 4, 3, 32, 32)
    assert torch.equal(refs.latents, before)


def test_one_way_attention_blocks_reference_from_video():
    one_way = tiny_backbone(one_way=True)
    latents, t, text, refs = inputs(one_way)
    other_video = latents + torch.randn_like(latents)
    other_text = one_way.encode_text(["a green star-shaped creature spins in place.", "a cloudy sky."])
    base = last_block_refs(one_way, latents, t, text, refs)
    assert torch.allclose(base, last_block_refs(one_way, other_video, t, text, refs), atol=1e-6)
    assert torch.allclose(base, last_block_refs(one_way, latents, t, other_text, refs), atol=1e-6)
    two_way = tiny_backbone(one_way=False)
    base = last_block_refs(two_way, latents, t, text, refs)
    assert not torch.allclose(base, last_block_refs(two_way, other_video, t, text, refs), atol=1e-4)


def test_rope_offset_changes_the_output():
    backbone = tiny_backbone()
    latents, t, text, refs = inputs(backbone)
    base = backbone.predict_velocity(latents, t, text, refs)
    shifted = backbone.predict_velocity(latents, t, text, refs, ref_offset=(0.0, 4.0, 4.0))
    assert (base - shifted).abs().max() > 1e-4
    # an offset means nothing without references
    assert torch.allclose(
        backbone.predict_velocity(latents, t, text),
        backbone.predict_velocity(latents, t, text, ref_offset=(0.0, 4.0, 4.0)),
    )


def test_cached_reference_kv_equals_uncached():
    backbone = tiny_backbone()
    latents, t, text, refs = inputs(backbone)
    for offset in [(0.0, 0.0, 0.0), (1.0, 3.0, -2.0)]:
        cache = backbone.reference_cache(refs, ref_offset=offset)
        for step_t in (t, torch.tensor([0.05, 0.5])):  # one cache serves every step
            plain = backbone.predict_velocity(latents, step_t, text, refs, ref_offset=offset)
            cached = backbone.predict_velocity(latents, step_t, text, ref_offset=offset, ref_cache=cache)
            assert torch.allclose(plain, cached, atol=1e-5)
    assert tiny_backbone(one_way=False).reference_cache(refs) is None


def test_cached_sampling_equals_uncached_sampling(monkeypatch):
    backbone = tiny_backbone()
    _, _, _, refs = inputs(backbone)
    cached = sample(backbone, PROMPTS, refs=refs, steps=3, seed=[0, 1])
    monkeypatch.setattr(backbone, "reference_cache", lambda *a, **k: None)
    assert torch.allclose(cached, sample(backbone, PROMPTS, refs=refs, steps=3, seed=[0, 1]), atol=1e-5)


def test_rope_is_a_rotation_and_zero_position_is_identity():
    x = torch.randn(1, 2, 5, 12)
    positions = torch.randn(5, 3) * 4
    cos, sin = rope_angles(positions, 12)
    rotated = apply_rope(x, cos[None], sin[None])
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    cos0, sin0 = rope_angles(torch.zeros(5, 3), 12)
    assert torch.allclose(apply_rope(x, cos0[None], sin0[None]), x)


def test_sampler_is_seeded_per_prompt():
    backbone = tiny_backbone()
    both = sample(backbone, PROMPTS, steps=2, seed=[5, 6])
    alone = sample(backbone, PROMPTS[1:], steps=2, seed=[6])
    assert torch.allclose(both[1:], alone, atol=1e-5)
    assert not torch.allclose(both, sample(backbone, PROMPTS, steps=2, seed=[7, 8]))
    assert Guidance().branches == ((True, True),)


def test_lora_through_peft_trains_only_adapters():
    peft = pytest.importorskip("peft")
    backbone = tiny_backbone()
    latents, t, text, refs = inputs(backbone)
    before = backbone.predict_velocity(latents, t, text, refs)
    config = peft.LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out", "mlp_in", "mlp_out"])
    peft.inject_adapter_in_model(config, backbone.trainable)
    trainable = [n for n, p in backbone.trainable.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert torch.allclose(before, backbone.predict_velocity(latents, t, text, refs), atol=1e-6)  # B starts at 0


def test_save_and_load_round_trip(tmp_path):
    backbone = tiny_backbone()
    latents, t, text, refs = inputs(backbone)
    backbone.save(tmp_path / "m")
    loaded = LibraWorldBackbone.load(tmp_path / "m").eval()
    assert torch.allclose(
        backbone.predict_velocity(latents, t, text, refs), loaded.predict_velocity(latents, t, text, refs)
    )
    backbone.save(tmp_path / "half", dtype=torch.float16)
    assert (tmp_path / "half" / "model.safetensors").stat().st_size < (
        tmp_path / "m" / "model.safetensors"
    ).stat().st_size


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError):
        LibraWorldBackboneConfig(frames=5, patch=(2, 16, 16))
    backbone = tiny_backbone()
    latents, t, text, _ = inputs(backbone)
    too_many = backbone.encode_references(torch.zeros(2, 5, 3, 32, 32))
    with pytest.raises(ValueError, match="at most"):
        backbone.predict_velocity(latents, t, text, too_many)
    with pytest.raises(ValueError, match="references must be"):
        backbone.encode_references(torch.zeros(2, 3, 32, 32))


def test_pooled_latents_shapes_references_and_cache():
    torch.manual_seed(0)
    backbone = LibraWorldBackbone(tiny_config(latent_downsample=2)).eval()
    assert backbone.latent_shape == (3, 4, 16, 16)
    video = torch.rand(2, 4, 3, 32, 32) * 2 - 1
    latents = backbone.encode_video(video)
    assert latents.shape == (2, *backbone.latent_shape)
    decoded = backbone.decode_video(latents)
    assert decoded.shape == video.shape and (decoded - video).abs().mean() < 0.5
    refs = backbone.encode_references(torch.rand(2, 1, 3, 48, 48) * 2 - 1)
    assert refs.latents.shape == (2, 1, 3, 16, 16)
    text = backbone.encode_text(PROMPTS)
    t = torch.tensor([0.2, 0.7])
    plain = backbone.predict_velocity(latents, t, text, refs)
    cached = backbone.predict_velocity(latents, t, text, ref_cache=backbone.reference_cache(refs))
    assert plain.shape == latents.shape and torch.allclose(plain, cached, atol=1e-5)


@pytest.mark.parametrize("t", [1e-4, 0.05, 0.5, 0.95, 1.0])
def test_preconditioned_output_gives_the_true_velocity_and_skips_at_low_noise(t):
    torch.manual_seed(0)
    clean, noise, sigma = torch.randn(2, 3, 4, 8, 8).double() * 0.5, torch.randn(2, 3, 4, 8, 8).double(), 0.5
    x_t = (1 - t) * clean + t * noise
    timestep = torch.full((2,), t, dtype=torch.float64)
    d = (1 - t) ** 2 * sigma**2 + t**2
    ideal = (clean - (1 - t) * sigma**2 / d * x_t) / (t * sigma / d**0.5)  # EDM's F target
    assert torch.allclose(preconditioned_velocity(x_t, timestep, ideal, sigma), noise - clean, atol=1e-8)
    # a silent network (F = 0) gives the skip path alone: clean estimate x_t - t v = c_skip x_t, ~x_t at low noise
    silent = preconditioned_velocity(x_t, timestep, torch.zeros_like(x_t), sigma)
    assert torch.allclose(x_t - t * silent, (1 - t) * sigma**2 / d * x_t, atol=1e-8)
    if t <= 0.05:
        assert (x_t - t * silent - x_t).abs().max() <= 0.06 * x_t.abs().max()


def test_preconditioned_backbone_samples_and_round_trips(tmp_path):
    torch.manual_seed(0)
    backbone = LibraWorldBackbone(tiny_config(prediction="preconditioned", latent_downsample=2)).eval()
    latents, t, text, refs = inputs(backbone)
    velocity = backbone.predict_velocity(latents, t, text, refs)
    assert velocity.shape == latents.shape and torch.isfinite(velocity).all()
    backbone.save(tmp_path / "m")
    loaded = LibraWorldBackbone.load(tmp_path / "m").eval()
    assert loaded.config.prediction == "preconditioned"
    assert torch.allclose(velocity, loaded.predict_velocity(latents, t, text, refs))


class ExactVelocity(LibraWorldBackbone):
    """A 'model' that knows the answer: the velocity field that carries any x_t to one target video."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__(tiny_config())
        self.target = target

    def predict_velocity(self, latents, timestep, text, refs=None, ref_offset=(0.0, 0.0, 0.0), ref_cache=None):
        return (latents - self.target) / timestep.view(-1, 1, 1, 1, 1)


def test_euler_sampler_reaches_the_target_of_an_exact_velocity_field():
    target = torch.rand(1, 3, 4, 32, 32) * 2 - 1
    video = sample(ExactVelocity(target), ["anything"], steps=8, guidance=TextCFG(3.0))
    assert torch.allclose(video, target.transpose(1, 2), atol=1e-4)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_gradient_checkpointing_gives_the_same_gradients(fraction):
    grads = []
    for checkpointing in (False, True):
        backbone = tiny_backbone().train()
        if checkpointing:
            backbone.enable_gradient_checkpointing(fraction)
        latents, t, text, refs = inputs(backbone)
        backbone.predict_velocity(latents, t, text, refs).pow(2).mean().backward()
        grads.append({n: p.grad.clone() for n, p in backbone.trainable.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])
    with pytest.raises(ValueError, match="fraction"):
        tiny_backbone().enable_gradient_checkpointing(0.0)
