"""The Wan backbone through diffusers, on tiny random Wan pipelines saved to disk (CPU, offline)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    WanPipeline,
    WanTransformer3DModel,
)

from libragen.infer.sampler import TextCFG, sample
from libragen.models import load_backbone
from libragen.models.backbone import References
from libragen.models.wan import WanBackbone, WanBackboneConfig
from libragen.train.dpo import DPOSettings, PreferenceBatch, dpo_loss_from_errors, flow_dpo_loss
from libragen.train.flow import TimestepConfig
from libragen.train.loop import LoopConfig, TrainingLoop
from libragen.train.lora import LoraSettings, adapters_disabled, add_lora
from libragen.train.sft import ConditionDropout, S2VBatch, sft_loss

WORDS = ["a", "red", "blue", "round", "square", "creature", "hops", "glides", "to", "the", "left", "right"]
WORDS += ["on", "brick", "wall", "snow"]
PROMPTS = ["a red round creature hops to the left", "a blue square creature glides on snow"]
SIZE = WanBackboneConfig(frames=5, height=32, width=48, fps=8.0, max_sequence_length=16)


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_transformer(seed: int) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
        rope_max_seq_len=32,
    )
    with torch.no_grad():  # the output projection starts near zero in real checkpoints; make every path matter
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model


def make_pipeline(folder, two_experts: bool = False) -> None:
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(WORDS) + 3,
            d_model=16,
            d_kv=4,
            d_ff=32,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
        )
    )
    vae = AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.1, -0.2, 0.0, 0.3],
        latents_std=[1.5, 0.8, 1.0, 1.2],
    )
    extra = {"transformer_2": tiny_transformer(2), "boundary_ratio": 0.6} if two_experts else {}
    WanPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=text_encoder,
        vae=vae,
        transformer=tiny_transformer(1),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        **extra,
    ).save_pretrained(folder)


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wan") / "tiny-wan"
    make_pipeline(folder)
    return folder


@pytest.fixture(scope="module")
def wan22_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wan22") / "tiny-wan22"
    make_pipeline(folder, two_experts=True)
    return folder


def backbone_at(folder, **overrides) -> WanBackbone:
    return WanBackbone.from_pretrained(folder, SIZE.model_copy(update=overrides)).eval()


def inputs(backbone: WanBackbone, n_refs: int = 2, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(2, *backbone.latent_shape, generator=gen)
    t = torch.tensor([0.3, 0.8])
    images = torch.rand(2, n_refs, 3, 24, 24, generator=gen) * 2 - 1
    mask = torch.ones(2, n_refs, dtype=torch.bool)
    mask[1, -1] = False  # the second sample has one reference fewer
    return latents, t, backbone.encode_text(PROMPTS), backbone.encode_references(images, mask)


def diffusers_forward(folder, latents, t, text, subfolder="transformer"):
    model = WanTransformer3DModel.from_pretrained(folder, subfolder=subfolder).eval()
    with torch.no_grad():
        return model(latents, t * 1000, text.tokens, return_dict=False)[0]


def test_shapes_encode_decode_and_reference_fitting(wan_dir):
    backbone = backbone_at(wan_dir)
    assert backbone.latent_shape == (4, 2, 4, 6) and backbone.video_size == (5, 32, 48)
    video = torch.rand(1, 5, 3, 32, 48) * 2 - 1
    latents = backbone.encode_video(video)
    assert latents.shape == (1, *backbone.latent_shape)
    assert backbone.decode_video(latents).shape == video.shape
    # a square reference is fitted into the 32x48 frame on a white canvas (aspect kept)
    fitted = backbone._fit_to_frame(-torch.ones(1, 3, 24, 24))
    assert fitted.shape == (1, 3, 32, 48)
    assert torch.all(fitted[..., :, :8] == 1) and torch.all(fitted[..., :, 40:] == 1)
    assert torch.allclose(fitted[..., :, 8:40], torch.tensor(-1.0))
    _, _, text, refs = inputs(backbone)
    assert refs.latents.shape == (2, 2, 4, 4, 6)
    assert text.tokens.shape == (2, 16, 16) and text.mask[0].sum() == len(PROMPTS[0].split()) + 1
    with pytest.raises(ValueError, match="at most 4"):
        backbone.encode_references(torch.zeros(1, 5, 3, 24, 24))
    with pytest.raises(ValueError, match="4k \\+ 1"):
        backbone_at(wan_dir, frames=6)


def test_without_references_equals_diffusers_forward_exactly(wan_dir):
    backbone = backbone_at(wan_dir)
    latents, t, text, _ = inputs(backbone)
    with torch.no_grad():
        ours = backbone.predict_velocity(latents, t, text)
    assert torch.equal(ours, diffusers_forward(wan_dir, latents, t, text))


def test_two_way_references_equal_diffusers_with_per_token_timesteps(wan_dir):
    """Two-way, offset 0, all references real: diffusers' own forward on [video | refs] with t = 0 on refs."""
    backbone = backbone_at(wan_dir, one_way_refs=False)
    latents, t, text, refs = inputs(backbone)
    refs = References(refs.latents, torch.ones_like(refs.mask))
    with torch.no_grad():
        ours = backbone.predict_velocity(latents, t, text, refs)
        joint = torch.cat([latents, refs.latents.permute(0, 2, 1, 3, 4)], dim=2)
        per_frame = 2 * 3
        token_t = torch.cat([(t * 1000)[:, None].expand(-1, 2 * per_frame), torch.zeros(2, 2 * per_frame)], 1)
        model = WanTransformer3DModel.from_pretrained(wan_dir, subfolder="transformer").eval()
        expected = model(joint, token_t, text.tokens, return_dict=False)[0][:, :, :2]
    assert torch.allclose(ours, expected, atol=1e-6)
    # the offset moves the references' RoPE slot, and that changes the video's prediction
    with torch.no_grad():
        moved = backbone.predict_velocity(latents, t, text, refs, ref_offset=(3.0, 0.0, 0.0))
    assert not torch.allclose(ours, moved, atol=1e-4)


def test_one_way_references_reach_the_video_only_through_attention(wan_dir):
    backbone = backbone_at(wan_dir)
    latents, t, text, refs = inputs(backbone)
    other = References(refs.latents + torch.randn_like(refs.latents), refs.mask)
    with torch.no_grad():
        plain = backbone.predict_velocity(latents, t, text)
        with_refs = backbone.predict_velocity(latents, t, text, refs)
        with_other = backbone.predict_velocity(latents, t, text, other)
        assert not torch.allclose(with_refs, plain, atol=1e-4)  # references matter…
        assert not torch.allclose(with_refs, with_other, atol=1e-4)
        # …and only as attention keys: masked out of the attention, changing them changes nothing
        hidden = References(refs.latents, torch.zeros_like(refs.mask))
        hidden_other = References(other.latents, torch.zeros_like(refs.mask))
        masked = backbone.predict_velocity(latents, t, text, hidden)
        assert torch.equal(masked, backbone.predict_velocity(latents, t, text, hidden_other))
        assert torch.allclose(masked, plain, atol=1e-5)
        # a padded reference does not change the sample it pads
        one = References(refs.latents[1:, :1], refs.mask[1:, :1])
        alone = backbone.predict_velocity(latents[1:], t[1:], _slice(text, 1), one)
        assert torch.allclose(with_refs[1:], alone, atol=1e-5)
        # references are clean and one-way: what they give the video ignores the video, its timestep and the text
        cache = backbone.reference_cache(refs)
        for other_latents, other_t, other_text in [
            (torch.randn_like(latents), t, text),
            (latents, torch.tensor([0.9, 0.1]), text),
            (latents, t, backbone.encode_text(["snow wall", "left"])),
        ]:
            cached = backbone.predict_velocity(other_latents, other_t, other_text, ref_cache=cache)
            direct = backbone.predict_velocity(other_latents, other_t, other_text, refs)
            assert torch.allclose(cached, direct, atol=1e-6)
        moved = backbone.reference_cache(refs, (2.0, 1.0, 1.0))
        assert not torch.allclose(moved.keys["transformer"][0][0], cache.keys["transformer"][0][0])


def _slice(text, start, stop=None):
    from libragen.models.backbone import TextBatch

    return TextBatch(text.tokens[start:stop], text.mask[start:stop])


def test_reference_cache_and_sampling_equal_uncached(wan_dir):
    backbone = backbone_at(wan_dir)
    latents, t, text, refs = inputs(backbone)
    with torch.no_grad():
        for offset in [(0.0, 0.0, 0.0), (1.5, 2.0, -1.0)]:
            cache = backbone.reference_cache(refs, offset)
            direct = backbone.predict_velocity(latents, t, text, refs, ref_offset=offset)
            assert torch.allclose(backbone.predict_velocity(latents, t, text, ref_cache=cache), direct, atol=1e-6)
    video = sample(backbone, PROMPTS, refs=refs, steps=2, guidance=TextCFG(3.0), seed=[1, 2])
    assert video.shape == (2, 5, 3, 32, 48) and torch.isfinite(video).all()


def test_reference_rope_matches_wan_table_at_integer_positions(wan_dir):
    backbone = backbone_at(wan_dir)
    rope = backbone.transformer.rope
    x = torch.zeros(1, 4, 5, 4, 6)  # 2 video + 3 reference frames
    stock = rope.stock(x)
    with backbone._states["transformer"].use(mode="joint", video_frames=2, ref_frames=3):
        ours = rope(x)
    assert all(torch.equal(a, b) for a, b in zip(ours, stock, strict=True))


def test_wan22_experts_switch_at_the_boundary(wan22_dir):
    backbone = backbone_at(wan22_dir)
    assert backbone.boundary == 0.6
    latents, _, text, refs = inputs(backbone)
    t = torch.tensor([0.9, 0.2])
    with torch.no_grad():
        ours = backbone.predict_velocity(latents, t, text)
        cached = backbone.predict_velocity(latents, t, text, ref_cache=backbone.reference_cache(refs))
        direct = backbone.predict_velocity(latents, t, text, refs)
    high = diffusers_forward(wan22_dir, latents[:1], t[:1], _slice(text, 0, 1))
    low = diffusers_forward(wan22_dir, latents[1:], t[1:], _slice(text, 1), "transformer_2")
    assert torch.equal(ours[:1], high) and torch.equal(ours[1:], low)
    assert torch.allclose(cached, direct, atol=1e-6)
    assert isinstance(backbone.trainable, torch.nn.ModuleDict)


def randomise_lora(module: torch.nn.Module) -> None:
    torch.manual_seed(5)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "lora_" in name:  # A too: peft draws it from the global RNG
                param.normal_(0, 0.1)


def test_exported_lora_loads_into_diffusers_wan_pipeline(wan_dir, tmp_path):
    backbone = backbone_at(wan_dir)
    config = add_lora(backbone, LoraSettings(rank=4, alpha=8))
    randomise_lora(backbone.trainable)
    latents, t, text, _ = inputs(backbone)
    backbone.save_lora(tmp_path / "lora", config)
    pipe = WanPipeline.from_pretrained(wan_dir)
    pipe.load_lora_weights(tmp_path / "lora")
    with torch.no_grad():
        ours = backbone.predict_velocity(latents, t, text)
        theirs = pipe.transformer(latents, t * 1000, text.tokens, return_dict=False)[0]
        base = diffusers_forward(wan_dir, latents, t, text)
    assert not torch.allclose(ours, base, atol=1e-4)  # the LoRA changes the model…
    assert torch.allclose(ours, theirs, atol=1e-5)  # …and diffusers loads exactly that LoRA
    from safetensors import safe_open

    with safe_open(str(tmp_path / "lora" / "pytorch_lora_weights.safetensors"), "pt") as f:
        names = list(f.keys())
        assert names and all(k.startswith("transformer.blocks.") and ".lora_" in k for k in names)
        metadata = json.loads(f.metadata()["lora_adapter_metadata"])
        assert metadata["transformer.r"] == 4 and metadata["transformer.lora_alpha"] == 8


@pytest.mark.parametrize(("fraction", "selective"), [(1.0, False), (0.5, False), (1.0, True)])
def test_gradient_checkpointing_gives_the_same_gradients(wan_dir, fraction, selective):
    grads = []
    for checkpointing in (False, True):
        backbone = backbone_at(wan_dir)
        add_lora(backbone, LoraSettings(rank=4, alpha=4))
        randomise_lora(backbone.trainable)
        registered = []
        if checkpointing:
            backbone.enable_gradient_checkpointing(fraction, selective=selective)
            recompute, register = backbone._recompute, backbone._recompute.register
            recompute.register = lambda *a, log=registered, rc=recompute, real=register: (
                log.append(rc.active),
                real(*a),
            )
        latents, t, text, refs = inputs(backbone)
        backbone.predict_velocity(latents, t, text, refs).pow(2).mean().backward()
        if checkpointing and fraction == 1.0:  # checkpointed blocks hold no sources for recomputation
            assert registered and not any(registered) and backbone._recompute.replaced == 0
        grads.append({n: p.grad.clone() for n, p in backbone.trainable.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])


def test_dpo_loss_equals_diffusion_dpo_by_hand_and_reference_is_lora_off(wan_dir):
    # by hand on small tensors: −log σ(−β/2 · ((θw − rw) − (θl − rl)))
    tw, tl = torch.tensor([0.2, 0.5]), torch.tensor([0.4, 0.1])
    rw, rl = torch.tensor([0.3, 0.3]), torch.tensor([0.3, 0.2])
    beta = 10.0
    # sample 0: (0.2 − 0.3) − (0.4 − 0.3) = −0.2 → logit 1.0; sample 1: (0.5 − 0.3) − (0.1 − 0.2) = 0.3 → −1.5
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(1.5))) / 2
    loss, logits = dpo_loss_from_errors(tw, tl, rw, rl, beta)
    assert torch.allclose(logits, torch.tensor([1.0, -1.5])) and abs(loss.item() - expected) < 1e-6
    # switching the adapter off gives the base model's prediction exactly, and restores trainability
    backbone = backbone_at(wan_dir)
    latents, t, text, refs = inputs(backbone)
    with torch.no_grad():
        base = backbone.predict_velocity(latents, t, text, refs)
    add_lora(backbone, LoraSettings(rank=4, alpha=4))
    randomise_lora(backbone.trainable)
    with torch.no_grad(), adapters_disabled(backbone.trainable):
        assert torch.equal(backbone.predict_velocity(latents, t, text, refs), base)
    with torch.no_grad():
        assert not torch.allclose(backbone.predict_velocity(latents, t, text, refs), base, atol=1e-4)
    assert all(p.requires_grad == ("lora_" in n) for n, p in backbone.trainable.named_parameters())


def _lora_snapshot(backbone):
    return {n: p.detach().clone() for n, p in backbone.trainable.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("kind", ["sft", "dpo"])
def test_one_sft_step_and_one_dpo_step_run_through_the_shared_loop(wan_dir, tmp_path, kind):
    backbone = backbone_at(wan_dir)
    backbone.enable_gradient_checkpointing()
    add_lora(backbone, LoraSettings(rank=4, alpha=4))
    latents, _, _, refs = inputs(backbone)
    timesteps = TimestepConfig()
    if kind == "sft":
        batch = S2VBatch(latents, PROMPTS, refs)

        def objective(model, step, generator):
            return sft_loss(model, batch, generator, timesteps, ConditionDropout(text=0.5, refs=0.5))
    else:
        pair = PreferenceBatch(latents, latents.flip(0), PROMPTS, refs)

        def objective(model, step, generator):
            return flow_dpo_loss(model, pair, generator, timesteps, DPOSettings(beta=500.0))

    before = _lora_snapshot(backbone)
    config = LoopConfig(steps=1, lr=1e-3, warmup_steps=0, ema_decay=None, checkpoint_every=1, log_every=1)
    result = TrainingLoop(backbone, objective, config, tmp_path / kind).run()
    after = _lora_snapshot(backbone)
    assert result.steps_done == 1 and torch.isfinite(torch.tensor(result.final_loss))
    assert any(not torch.equal(before[n], after[n]) for n in before)  # the LoRA moved
    assert (tmp_path / kind / "checkpoints").is_dir()


def test_load_backbone_reads_a_diffusers_wan_folder(wan_dir):
    backbone = load_backbone(wan_dir)
    assert isinstance(backbone, WanBackbone) and backbone.config.frames == 81


def test_save_round_trip_and_generate_cli_on_a_wan_folder(wan_dir, tmp_path):
    from typer.testing import CliRunner

    from libragen.cli import app
    from libragen.core.video import read_video

    backbone = backbone_at(wan_dir)
    backbone.save(tmp_path / "saved")
    loaded = load_backbone(tmp_path / "saved")
    assert isinstance(loaded, WanBackbone) and loaded.config == backbone.config and loaded.sampling_shift == 3.0
    latents, t, text, refs = inputs(backbone)
    with torch.no_grad():
        assert torch.equal(
            backbone.predict_velocity(latents, t, text, refs), loaded.eval().predict_velocity(latents, t, text, refs)
        )
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "ref.png")
    args = ["generate", "--model", str(tmp_path / "saved"), "--prompt", PROMPTS[0], "--out", str(tmp_path / "v")]
    result = CliRunner().invoke(app, [*args, "--ref", str(tmp_path / "ref.png"), "--steps", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert load_backbone(tmp_path / "saved", offload=True).config.offload  # what `generate --offload` asks for
    video = read_video(tmp_path / "v" / "video000.mp4")
    assert video.shape[:3] == (5, 32, 48)
    dynamic = ["--ref", str(tmp_path / "ref.png"), "--steps", "2", "--ref-scale", "interval:3:0.5:1", "--text-scale"]
    result = CliRunner().invoke(app, [*args, *dynamic, "0:4,1:6", "--offload"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, [*args, *dynamic, "0:4,1"])
    assert result.exit_code == 2 and "t:scale" in " ".join(result.output.replace("│", " ").split())


def test_bfloat16_and_offload_paths_run(wan_dir):
    reference = backbone_at(wan_dir)
    latents, t, text, refs = inputs(reference)
    with torch.no_grad():
        expected = reference.predict_velocity(latents, t, text, refs)
    half = WanBackbone.from_pretrained(wan_dir, SIZE.model_copy(update={"offload": True}), dtype=torch.bfloat16)
    assert half.transformer.dtype == torch.bfloat16 and half.pipeline.vae.dtype == torch.float32
    _, _, half_text, half_refs = inputs(half.eval())
    with torch.no_grad():
        out = half.predict_velocity(latents, t, half_text, half_refs)
    assert out.dtype == torch.float32
    assert (out - expected).abs().mean() < 0.05 * expected.abs().mean()  # bf16 rounding only


def test_module_to_places_the_encoders_too(wan_dir):
    backbone = backbone_at(wan_dir)
    moved = backbone.to("meta")
    assert moved is backbone and backbone.device.type == "meta"
    assert next(backbone.pipeline.vae.parameters()).device.type == "meta"
    offloaded = backbone_at(wan_dir, offload=True).to("meta")
    assert next(offloaded.pipeline.text_encoder.parameters()).device.type == "cpu"  # offload keeps them on the CPU


def test_diffusers_format_loras_merge_and_fuse(wan_dir, tmp_path):
    from libragen.train.merge import load_fused, merge_loras

    backbone = backbone_at(wan_dir)
    config = add_lora(backbone, LoraSettings(rank=4, alpha=8))
    randomise_lora(backbone.trainable)
    backbone.save_lora(tmp_path / "lora", config)
    latents, t, text, refs = inputs(backbone)
    with torch.no_grad():
        expected = backbone.predict_velocity(latents, t, text, refs)
        backbone_at(wan_dir).save(tmp_path / "base")  # a folder whose backbone.json keeps the test size
        fused = load_fused(tmp_path / "base", tmp_path / "lora").eval()
        assert torch.allclose(fused.predict_velocity(latents, t, text, refs), expected, atol=1e-5)
        merged = backbone_at(wan_dir)
        merge_loras(merged, [(tmp_path / "lora", 0.5), (tmp_path / "lora", 0.5)], "cat")
        assert torch.allclose(merged.predict_velocity(latents, t, text, refs), expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["one-way", "two-way", "no-refs"])
def test_cheap_recompute_gives_bit_identical_gradients_and_replaces_saved_tensors(wan_dir, mode):
    grads, outputs = [], []
    for recompute in (False, True):
        backbone = backbone_at(wan_dir, recompute_cheap_activations=recompute, one_way_refs=mode == "one-way")
        add_lora(backbone, LoraSettings(rank=4, alpha=4))
        randomise_lora(backbone.trainable)
        latents, t, text, refs = inputs(backbone)
        out = backbone.predict_velocity(latents, t, text, None if mode == "no-refs" else refs)
        out.pow(2).mean().backward()
        outputs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in backbone.trainable.named_parameters() if p.grad is not None})
    assert torch.equal(outputs[0], outputs[1])
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])
    # per block (2 blocks): GELU output, cross-attention query and key, norm2 output, and with a per-sample
    # timestep (not two-way's per-token one) the modulated norm1/norm3 outputs; one-way references add the
    # rotated self-attention query and key, and the reference pass its GELU, norm1/norm3, query and key
    assert backbone._recompute.replaced == 2 * {"one-way": 13, "two-way": 4, "no-refs": 6}[mode]


def test_cheap_recompute_is_idle_without_gradients_and_refuses_in_place_changes(wan_dir):
    from libragen.models.wan_recompute import CheapRecompute

    backbone = backbone_at(wan_dir)
    latents, t, text, refs = inputs(backbone)
    with torch.no_grad():
        backbone.predict_velocity(latents, t, text, refs)
    assert backbone._recompute.replaced == 0 and not backbone._recompute.active

    recompute = CheapRecompute()
    source = torch.randn(4, requires_grad=True)
    with recompute.saving():
        hidden = source * 2  # not a leaf: the tanh below keeps ``hidden``'s recomputation instead
        made = torch.sigmoid(hidden)
        recompute.register(made, torch.sigmoid, hidden)
        loss = made.tanh().sum()  # tanh keeps its output, not ``made``: nothing replaced there
        product = (made * source).sum()  # keeps ``made`` for the gradient of ``source``
    assert recompute.replaced == 1
    plain = source.detach().requires_grad_()
    (expected,) = torch.autograd.grad((torch.sigmoid(plain * 2) * plain).sum(), plain)
    (got,) = torch.autograd.grad(product, source, retain_graph=True)
    assert torch.allclose(got, expected)
    with torch.no_grad():
        hidden.add_(1)
    with pytest.raises(RuntimeError, match="modified in place"):
        product.backward()
    del loss
