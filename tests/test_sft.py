"""``libragen train sft`` on a small pairs build: LoRA only, in/cross/mixed data, resume, final LoRA → merge."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import torch
import yaml
from typer.testing import CliRunner

from libragen.cli import app
from libragen.models import load_backbone
from libragen.train.checkpoint import checkpoint_dirs, load_checkpoint
from libragen.train.merge import merge_loras, read_lora
from libragen.train.sft_trainer import PairBank, SFTDataConfig

runner = CliRunner()


def write_config(path, pairs, base, use: str, steps: int = 2, **data) -> None:
    config = {
        "model": str(base),
        "data": {"pairs": [str(pairs)], "use": use, **data},
        "batch_size": 2,
        "lora": {"rank": 4, "alpha": 4},
        "dropout": {"text": 0.2, "refs": 0.2},
        "loop": {
            "steps": steps,
            "lr": 1e-3,
            "warmup_steps": 0,
            "checkpoint_every": 1,
            "log_every": 1,
            "ema_decay": 0.9,
            "sample_every": 0,
            "threads": 1,
        },
        "sampling": {"steps": 2, "guidance": 2.0},
        "sample_count": 1,
    }
    path.write_text(yaml.safe_dump(config))


def test_pair_bank_draws_the_asked_mixture_and_caches_latents(pairs_and_base):
    pairs, base = pairs_and_base
    backbone = load_backbone(base)
    bank = PairBank(SFTDataConfig(pairs=[str(pairs)], use="mixed", cross_share=0.8), backbone)
    assert 0 < bank.is_cross.sum() < len(bank)
    draws = bank.draw(400, torch.Generator().manual_seed(0))
    share = bank.is_cross[draws].mean()
    assert 0.72 < share < 0.88
    batch = bank.batch(draws[:3])
    assert batch.latents.shape == (3, *backbone.latent_shape)
    assert batch.refs.latents.shape[:2] == batch.refs.mask.shape and batch.refs.mask[:, 0].all()
    assert all("Ref 1[" in p for p in batch.prompts)
    assert len(bank._cache) == len(set(draws[:3]))
    only_in = PairBank(SFTDataConfig(pairs=[str(pairs)], use="in"), backbone)
    assert not only_in.is_cross.any()


def test_generic_ref_tags_reach_the_asked_share_of_training_prompts(pairs_and_base, monkeypatch):
    """``generic_ref_share``: that share of the prompts sft_loss gets read "Ref k[a creature]"; the rest as built."""
    import libragen.train.sft_trainer as trainer
    from libragen.train.sft_trainer import SFTConfig, sft_objective
    from libragen.world.caption import generic_ref_tags

    assert generic_ref_tags("Ref 1[a red round creature] hops and Ref 2[a blue star] spins on snow.", "a creature") == (
        "Ref 1[a creature] hops and Ref 2[a creature] spins on snow."
    )
    pairs, base = pairs_and_base
    backbone = load_backbone(base)
    config = SFTConfig.model_validate(
        {"data": {"pairs": [str(pairs)], "use": "in", "generic_ref_share": 0.3}, "batch_size": 50}
    )
    seen: list[str] = []
    monkeypatch.setattr(trainer, "sft_loss", lambda backbone, batch, *rest: seen.extend(batch.prompts))
    objective = sft_objective(PairBank(config.data, backbone), config)
    generator = torch.Generator().manual_seed(0)
    for step in range(8):
        objective(backbone, step, generator)
    tags = [re.findall(r"Ref \d+\[([^\]]*)\]", p) for p in seen]
    generic = [t for t in tags if set(t) == {"a creature"}]
    assert len(seen) == 400 and all(tags)
    assert 0.22 < len(generic) / len(seen) < 0.38
    assert all("a creature" not in t for t in tags if t not in generic)  # the others keep their descriptions


def test_sft_trains_only_the_lora_resumes_and_merges(pairs_and_base, tmp_path):
    pairs, base = pairs_and_base
    runs = {}
    for use in ("in", "cross"):
        write_config(tmp_path / f"{use}.yaml", pairs, base, use, steps=2)
        run = tmp_path / f"sft_{use}"
        result = runner.invoke(app, ["train", "sft", "--config", str(tmp_path / f"{use}.yaml"), "--out", str(run)])
        assert result.exit_code == 0, result.output
        runs[use] = run
    # resume: one more step on the in-pair run continues from its step-2 checkpoint
    result = runner.invoke(
        app, ["train", "sft", "--config", str(tmp_path / "in.yaml"), "--out", str(runs["in"]), "--steps", "3"]
    )
    assert result.exit_code == 0 and "resumed from 2" in result.output, result.output
    state = load_checkpoint(checkpoint_dirs(runs["in"])[-1])
    assert state.step == 3 and state.trainable and all("lora_" in k for k in state.trainable)
    lines = [json.loads(x) for x in (runs["in"] / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert (runs["in"] / "loss.png").is_file()
    lora, config = read_lora(runs["in"] / "final")
    assert lora and config["r"] == 4
    # the final LoRA is the EMA of the trained adapter, and it changes the base model
    assert any(not torch.equal(lora[k], torch.zeros_like(lora[k])) for k in lora if "lora_B" in k)
    merged = load_backbone(base).eval()
    merge_loras(merged, [(runs["in"] / "final", 0.5), (runs["cross"] / "final", 0.5)], "linear")
    result = runner.invoke(
        app,
        [
            "merge",
            "--model",
            str(base),
            "--lora",
            f"{runs['in'] / 'final'}:0.5",
            "--lora",
            f"{runs['cross'] / 'final'}:0.5",
            "--out",
            str(tmp_path / "merged"),
        ],
    )
    assert result.exit_code == 0, result.output


def test_sft_config_errors_are_one_line(pairs_and_base, tmp_path):
    pairs, base = pairs_and_base
    bad = tmp_path / "bad.yaml"
    write_config(bad, pairs, base, "mixed", cross_share=1.5)
    command = [sys.executable, "-m", "libragen", "train", "sft", "--config", str(bad), "--out", str(tmp_path / "r")]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "data.cross_share" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_text_and_reference_dropout_rates_are_observed_in_training_batches(monkeypatch):
    """What sft_loss hands the backbone: prompts blanked and reference sets masked at the configured rates,
    independently, and nothing else touched."""
    from libragen.models.backbone import References
    from libragen.train import sft
    from libragen.train.flow import TimestepConfig

    seen: list[tuple[list[str], torch.Tensor]] = []

    class Recorder:
        def encode_text(self, prompts):
            seen.append((list(prompts), None))
            return prompts

    def record_errors(backbone, clean, text, t, noise, refs):
        seen[-1] = (seen[-1][0], refs.mask.clone())
        return torch.zeros(clean.shape[0])

    monkeypatch.setattr(sft, "velocity_errors", record_errors)
    batch_size, steps = 8, 400
    prompts = [f"Ref 1[a red round creature] hops to the left, sample {k}." for k in range(batch_size)]
    mask = torch.tensor([[True, True, False]] * batch_size)
    batch = sft.S2VBatch(torch.zeros(batch_size, 3, 4, 8, 8), prompts, References(torch.zeros(batch_size, 3, 1), mask))
    generator = torch.Generator().manual_seed(0)
    dropout = sft.ConditionDropout(text=0.2, refs=0.3)
    for _ in range(steps):
        sft.sft_loss(Recorder(), batch, generator, TimestepConfig(), dropout)
    text_dropped = torch.tensor([[p == "" for p in step_prompts] for step_prompts, _ in seen])
    refs_dropped = torch.stack([~m.any(-1) for _, m in seen])
    n = batch_size * steps
    assert abs(text_dropped.float().mean() - 0.2) < 3 * (0.2 * 0.8 / n) ** 0.5 + 0.005
    assert abs(refs_dropped.float().mean() - 0.3) < 3 * (0.3 * 0.7 / n) ** 0.5 + 0.005
    both = (text_dropped & refs_dropped).float().mean()
    assert abs(both - 0.06) < 0.015  # independent draws: 0.2 × 0.3
    kept = torch.stack([m for _, m in seen])[~refs_dropped]
    assert (kept == mask[0]).all()  # a kept set keeps exactly its real references (padding stays masked)
    kept_prompts = [p for step_prompts, _ in seen for p in step_prompts if p]
    assert set(kept_prompts) == set(prompts)
    assert batch.prompts == prompts and (batch.refs.mask == mask).all()  # the cached batch is not modified


def test_reference_files_are_encoded_as_prepared_images(pairs_and_base, tmp_path):
    from PIL import Image

    from libragen.core.refs import prepare_reference
    from libragen.train.sft import encode_reference_files, encode_reference_set

    _, base = pairs_and_base
    backbone = load_backbone(base)
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 255, (40, 30, 3), dtype=np.uint8), rng.integers(0, 255, (20, 50, 3), dtype=np.uint8)]
    paths = []
    for k, picture in enumerate(pictures):
        Image.fromarray(picture).save(tmp_path / f"ref{k}.png")
        paths.append(tmp_path / f"ref{k}.png")
    size = backbone.video_size[-1]
    prepared = np.stack([prepare_reference(p, size=size) for p in pictures])
    expected = encode_reference_set(backbone, torch.from_numpy(prepared).permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert torch.equal(encode_reference_files(backbone, paths), expected)
