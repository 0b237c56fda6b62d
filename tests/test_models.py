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


def test_one_timestep_per_frame_group_equals_the_shared_timestep_when_all_are_equal():
    backbone = tiny_backbone()
    latents, t, text, refs = inputs(backbone)
    assert backbone.frame_groups == 2  # 4 frames in temporal patches of 2
    per_group = t[:, None].expand(-1, backbone.frame_groups)
    with torch.no_grad():
        shared = backbone.predict_velocity(latents, t, text, refs)
        grouped = backbone.predict_velocity(latents, per_group, text, refs)
        moved = backbone.predict_velocity(latents, torch.tensor([[0.3, 0.9], [0.8, 0.8]]), text, refs)
    assert torch.allclose(shared, grouped, atol=1e-6)
    assert not torch.allclose(moved[0], shared[0], atol=1e-3)  # the first video's second group got another t
    with pytest.raises(ValueError, match="temporal token rows"):
        backbone.predict_velocity(latents, torch.rand(2, 3), text, refs)


def test_preconditioned_velocity_uses_each_frame_groups_own_timestep():
    torch.manual_seed(0)
    x_t, out = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 3, 4, 8, 8)
    t = torch.tensor([[0.2, 0.7], [0.9, 0.4]])
    grouped = preconditioned_velocity(x_t, t, out, 0.5)
    for g in range(2):
        frames = slice(2 * g, 2 * g + 2)
        alone = preconditioned_velocity(x_t[:, :, frames], t[:, g], out[:, :, frames], 0.5)
        assert torch.allclose(grouped[:, :, frames], alone, atol=1e-6)


def test_diffusion_forcing_timesteps_and_noising():
    from libragen.train.flow import TimestepConfig, noisy_latents, sample_training_timesteps

    generator = torch.Generator().manual_seed(0)
    assert sample_training_timesteps(8, TimestepConfig(), generator, 4).shape == (8,)
    t = sample_training_timesteps(4000, TimestepConfig(per_frame_probability=0.5), generator, 4)
    assert t.shape == (4000, 4) and ((t > 0) & (t < 1)).all()
    shared_rows = (t == t[:, :1]).all(1).float().mean().item()
    assert 0.46 < shared_rows < 0.54  # half the rows repeat one t, the others draw one per group
    with pytest.raises(ValueError, match="frame group"):
        sample_training_timesteps(2, TimestepConfig(per_frame_probability=0.5), generator, None)
    clean, noise = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 4, 2, 2)
    groups = torch.tensor([[0.1, 0.9], [0.5, 0.5]])
    mixed = noisy_latents(clean, noise, groups)
    assert torch.allclose(mixed[0, :, 3], 0.1 * clean[0, :, 3] + 0.9 * noise[0, :, 3])
    assert torch.allclose(mixed[0, :, 1], 0.9 * clean[0, :, 1] + 0.1 * noise[0, :, 1])
    assert torch.allclose(mixed[1], noisy_latents(clean, noise, torch.tensor([0.5, 0.5]))[1])


def test_diffusion_forcing_loss_trains_the_backbone():
    from libragen.train.flow import TimestepConfig, flow_matching_loss

    backbone = tiny_backbone().train()
    latents, _, text, _ = inputs(backbone)
    loss = flow_matching_loss(
        backbone, latents, text, torch.Generator().manual_seed(0), TimestepConfig(per_frame_probability=1.0)
    )
    loss.backward()
    assert torch.isfinite(loss) and backbone.trainable.time_mlp[0].weight.grad.abs().sum() > 0


def test_staggered_schedule_runs_each_frame_group_from_noise_to_clean_in_order():
    from libragen.infer.sampler import staggered_timesteps

    plain = staggered_timesteps(8, 4, 0.0)
    assert torch.allclose(plain, torch.linspace(1, 0, 9)[:, None].expand(9, 4))
    pyramid = staggered_timesteps(20, 4, 0.3, shift=2.0)
    assert (pyramid[0] == 1).all() and (pyramid[-1] == 0).all()
    assert (pyramid[1:] <= pyramid[:-1]).all()  # every group only ever moves toward clean
    assert (pyramid[:, :-1] <= pyramid[:, 1:]).all() and (pyramid[10, 0] < pyramid[10, 3])  # earlier groups lead
    with pytest.raises(ValueError, match="stagger"):
        staggered_timesteps(8, 4, -0.1)


class ExactGroupedVelocity(ExactVelocity):
    """The exact velocity field toward ``target``, taking one timestep per group of 2 latent frames."""

    frame_groups = 2

    def predict_velocity(self, latents, timestep, text, refs=None, ref_offset=(0.0, 0.0, 0.0), ref_cache=None):
        from libragen.models.backbone import time_like

        return (latents - self.target) / time_like(timestep.clamp(min=1e-6), latents)


def test_staggered_sampler_reaches_the_target_and_needs_frame_groups():
    target = torch.rand(1, 3, 4, 32, 32) * 2 - 1
    video = sample(ExactGroupedVelocity(target), ["anything"], steps=12, guidance=TextCFG(3.0), stagger=0.4)
    assert torch.allclose(video, target.transpose(1, 2), atol=1e-4)
    single_timestep = ExactVelocity(target)
    single_timestep.frame_groups = None  # a backbone that takes one timestep per video
    with pytest.raises(ValueError, match="one timestep per video"):
        sample(single_timestep, ["anything"], steps=4, stagger=0.4)


def test_text_features_from_several_minilm_layers_keep_directions_apart():
    backbone = LibraWorldBackbone(tiny_config(text_layers=(0, -1))).eval()
    prompts = [f"a red round creature hops quickly {d} on a brick wall." for d in ("to the left", "to the right")]
    text = backbone.encode_text(prompts)
    assert text.tokens.shape[-1] == 768 and backbone.trainable.text_in.in_features == 768
    lexical, contextual = text.tokens[:, 10, :384], text.tokens[:, 10, 384:]  # the token "left" / "right"
    similarity = torch.nn.functional.cosine_similarity
    assert similarity(lexical[0], lexical[1], dim=0) < similarity(contextual[0], contextual[1], dim=0) - 0.2
    latents = torch.randn(2, *backbone.latent_shape)
    assert backbone.predict_velocity(latents, torch.tensor([0.5, 0.5]), text).shape == latents.shape
    with pytest.raises(ValueError, match="MiniLM layers"):
        LibraWorldBackbone(tiny_config(text_layers=(9,)))


def test_attention_pooled_text_changes_the_condition_and_ignores_padding():
    transformer = MMDiTConfig(dim=32, depth=2, heads=2, text_attention_pool=2)
    torch.manual_seed(0)
    backbone = LibraWorldBackbone(tiny_config(transformer=transformer)).eval()
    model = backbone.trainable
    text = backbone.encode_text(PROMPTS)
    t = torch.tensor([0.5, 0.5])
    with_pool = model._video_condition(t, text.tokens, text.mask)
    padded = torch.nn.functional.pad(text.tokens, (0, 0, 0, 3), value=7.0)  # padding with junk is ignored
    mask = torch.nn.functional.pad(text.mask, (0, 3), value=False)
    assert torch.allclose(with_pool, model._video_condition(t, padded, mask), atol=1e-6)
    model.text_attention = None  # the mean alone
    assert not torch.allclose(with_pool, model._video_condition(t, text.tokens, text.mask), atol=1e-4)
