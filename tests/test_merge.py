"""LoRA merging (peft add_weighted_adapter) and the ``libragen merge`` command, on tiny LibraWorld backbones."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from libragen.cli import app
from libragen.models import load_backbone
from libragen.train.lora import LoraSettings, add_lora, lora_layers
from libragen.train.merge import merge_loras, read_lora
from tests.test_models import inputs, tiny_backbone


def make_lora(folder, seed: int, rank: int = 4) -> None:
    """A LoRA with random A and B on the tiny backbone (seed 0 base weights), saved to ``folder``."""
    backbone = tiny_backbone()
    config = add_lora(backbone, LoraSettings(rank=rank, alpha=2.0 * rank))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in backbone.trainable.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.2)
    backbone.save_lora(folder, config)


def setup_folders(tmp_path):
    tiny_backbone().save(tmp_path / "base")
    make_lora(tmp_path / "a", seed=1)
    make_lora(tmp_path / "b", seed=2)
    return tmp_path / "base", tmp_path / "a", tmp_path / "b"


def velocity(backbone) -> torch.Tensor:
    latents, t, text, refs = inputs(backbone)
    with torch.no_grad():
        return backbone.predict_velocity(latents, t, text, refs)


def test_cat_merge_is_exact_task_arithmetic(tmp_path):
    base, a, b = setup_folders(tmp_path)
    backbone = load_backbone(base).eval()
    weights = {name: p.detach().clone() for name, p in backbone.trainable.named_parameters()}
    expected = dict(weights)
    for path, w in ((a, 0.7), (b, 0.3)):  # W + Σ w_i · (alpha/r) · B_i A_i, by hand
        state, config = read_lora(path)
        scale = config["lora_alpha"] / config["r"]
        for key in state:
            if key.endswith("lora_A.weight"):
                module = key[: -len(".lora_A.weight")]
                delta = state[f"{module}.lora_B.weight"] @ state[key]
                expected[f"{module}.weight"] = expected[f"{module}.weight"] + w * scale * delta
    model = merge_loras(backbone, [(a, 0.7), (b, 0.3)], "cat")
    model.merge_and_unload(adapter_names=["merged"])
    assert not lora_layers(backbone.trainable)
    fused = dict(backbone.trainable.named_parameters())
    assert all(torch.allclose(fused[k], expected[k], atol=1e-5) for k in expected)
    assert any(not torch.allclose(fused[k], weights[k]) for k in weights)


def lora_factors(path, weight: float) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """module -> (A, B, weight × alpha / r) of one saved LoRA."""
    state, config = read_lora(path)
    scaled = weight * config["lora_alpha"] / config["r"]
    suffix = ".lora_A.weight"
    return {
        k[: -len(suffix)]: (v, state[k[: -len(suffix)] + ".lora_B.weight"], scaled)
        for k, v in state.items()
        if k.endswith(suffix)
    }


def expected_delta(method: str, parts: list[tuple[torch.Tensor, torch.Tensor, float]]) -> torch.Tensor:
    """ΔW of one module as peft documents each combination (written out here, not through add_weighted_adapter)."""
    from peft.utils.merge_utils import ties

    if method == "svd":  # the weighted sum of full deltas, truncated to the largest input rank
        full = sum(s * b @ a for a, b, s in parts)
        u, sv, vh = torch.linalg.svd(full)
        rank = max(a.shape[0] for a, _, _ in parts)
        return (u[:, :rank] * sv[:rank]) @ vh[:rank]
    roots = torch.tensor([s**0.5 for _, _, s in parts])  # A and B merged separately, each with sqrt(w · scale)
    if method == "linear":
        a = sum(r * a for r, (a, _, _) in zip(roots, parts, strict=True))
        b = sum(r * b for r, (_, b, _) in zip(roots, parts, strict=True))
    else:  # ties, density 0.5: peft's own merge_utils on the factors
        a = ties([a for a, _, _ in parts], roots, 0.5, "total")
        b = ties([b for _, b, _ in parts], roots, 0.5, "total")
    return b @ a  # the merged adapter has alpha = r, so scale 1


@pytest.mark.parametrize("method", ["linear", "svd", "ties"])
def test_merge_methods_give_the_deltas_peft_documents(tmp_path, method):
    base, a, b = setup_folders(tmp_path)
    backbone = load_backbone(base).eval()
    before = {name: p.detach().clone() for name, p in backbone.trainable.named_parameters()}
    factors = [lora_factors(a, 0.7), lora_factors(b, 0.3)]
    model = merge_loras(backbone, [(a, 0.7), (b, 0.3)], method, density=0.5 if method == "ties" else None)
    model.merge_and_unload(adapter_names=["merged"])
    after = dict(backbone.trainable.named_parameters())
    assert factors[0].keys() == factors[1].keys() and factors[0]
    for module in factors[0]:
        delta = after[f"{module}.weight"] - before[f"{module}.weight"]
        want = expected_delta(method, [f[module] for f in factors])
        assert torch.allclose(delta, want, atol=1e-5), (method, module, float((delta - want).abs().max()))
    if method == "linear":  # and linear is not task arithmetic: the cross terms are there
        module = next(iter(factors[0]))
        arithmetic = sum(s * b @ a for a, b, s in (f[module] for f in factors))
        delta = after[f"{module}.weight"] - before[f"{module}.weight"]
        assert not torch.allclose(delta, arithmetic, atol=1e-3)


def test_single_lora_at_weight_one_is_that_lora(tmp_path):
    base, a, _ = setup_folders(tmp_path)
    direct = load_backbone(base).eval()
    merge_loras(direct, [(a, 1.0)], "cat")
    lone = velocity(direct)
    linear = load_backbone(base).eval()
    merge_loras(linear, [(a, 1.0)], "svd", svd_rank=4)
    assert torch.allclose(velocity(linear), lone, atol=1e-4)
    assert not torch.allclose(velocity(load_backbone(base).eval()), lone, atol=1e-4)


def test_merge_command_writes_a_loadable_lora_and_a_fused_model(tmp_path):
    base, a, b = setup_folders(tmp_path)
    runner = CliRunner()
    args = ["merge", "--model", str(base), "--lora", f"{a}:0.6", "--lora", f"{b}:0.4", "--method", "linear"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "merged" / "merge.json").read_text())
    assert record["method"] == "linear" and [x["weight"] for x in record["loras"]] == [0.6, 0.4]
    in_memory = load_backbone(base).eval()
    merge_loras(in_memory, [(a, 0.6), (b, 0.4)], "linear")
    reloaded = load_backbone(base).eval()
    merge_loras(reloaded, [(tmp_path / "merged", 1.0)], "linear")
    assert torch.allclose(velocity(reloaded), velocity(in_memory), atol=1e-5)

    result = runner.invoke(app, [*args, "--out", str(tmp_path / "fused"), "--fuse"])
    assert result.exit_code == 0, result.output
    assert torch.allclose(velocity(load_backbone(tmp_path / "fused").eval()), velocity(in_memory), atol=1e-5)


def test_merge_command_rejects_bad_input_clearly(tmp_path):
    base, a, _ = setup_folders(tmp_path)
    make_lora(tmp_path / "rank8", seed=3, rank=8)
    runner = CliRunner()
    out = ["--out", str(tmp_path / "m"), "--model", str(base)]
    cases = [
        (["--lora", str(a)], "PATH:WEIGHT"),
        (["--lora", f"{a}:heavy"], "not a number"),
        (["--lora", f"{tmp_path / 'missing'}:0.5"], "no such LoRA"),
        (["--lora", f"{a}:0.5", "--lora", f"{tmp_path / 'rank8'}:0.5"], "one rank"),
        (["--lora", f"{a}:0.5", "--method", "average"], "choose one of"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["merge", *extra, *out])
        assert result.exit_code == 2, (extra, result.output)
        flat = " ".join(result.output.replace("│", " ").split())  # rich wraps the error box
        assert message in flat, (message, result.output)
