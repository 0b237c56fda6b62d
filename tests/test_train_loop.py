"""The shared training loop: resume after a kill follows the same loss curve; NaN stops cleanly; files are complete."""

from __future__ import annotations

import json
import math

import pytest
import torch

from libragen.train.checkpoint import checkpoint_dirs, load_checkpoint
from libragen.train.flow import (
    TimestepConfig,
    flow_matching_loss,
    noisy_latents,
    sample_timesteps,
    shift_timesteps,
    velocity_errors,
)
from libragen.train.loop import LoopConfig, TrainingDiverged, TrainingLoop
from tests.test_models import PROMPTS, tiny_backbone

CLIPS = torch.rand(6, 4, 3, 32, 32) * 2 - 1


def objective(backbone, step, generator):
    index = torch.randint(len(CLIPS), (2,), generator=generator)
    text = backbone.encode_text([PROMPTS[i % 2] for i in index.tolist()])
    return flow_matching_loss(backbone, backbone.encode_video(CLIPS[index]), text, generator, TimestepConfig()), {}


def config(**overrides) -> LoopConfig:
    base = {"steps": 6, "lr": 1e-3, "warmup_steps": 2, "log_every": 1, "checkpoint_every": 3, "ema_decay": 0.9}
    return LoopConfig(**(base | overrides))


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


class Killed(Exception):
    pass


def test_resume_after_kill_follows_the_same_loss_curve(tmp_path):
    straight = TrainingLoop(tiny_backbone(), objective, config(), tmp_path / "a").run()

    def dies_at_step_4(backbone, step, generator):
        if step == 4:
            raise Killed
        return objective(backbone, step, generator)

    with pytest.raises(Killed):
        TrainingLoop(tiny_backbone(), dies_at_step_4, config(), tmp_path / "b").run()
    assert [p.name for p in checkpoint_dirs(tmp_path / "b")] == ["step-0000003"]
    resumed = TrainingLoop(tiny_backbone(seed=99), objective, config(), tmp_path / "b").run()  # weights from ckpt
    assert resumed.resumed_from == 3
    losses_a = [m["loss"] for m in metrics(tmp_path / "a")]
    losses_b = [m["loss"] for m in metrics(tmp_path / "b")]
    assert [m["step"] for m in metrics(tmp_path / "b")] == [1, 2, 3, 4, 5, 6]  # no duplicated steps
    assert losses_b == pytest.approx(losses_a, rel=1e-5, abs=1e-6)
    assert straight.final_loss == pytest.approx(resumed.final_loss, rel=1e-5)
    final_a, final_b = (load_checkpoint(checkpoint_dirs(tmp_path / r)[-1]) for r in "ab")
    for name, value in final_a.trainable.items():
        assert torch.allclose(value, final_b.trainable[name], atol=1e-6)
        assert torch.allclose(final_a.ema[name], final_b.ema[name], atol=1e-6)


def test_training_reduces_the_loss(tmp_path):
    result = TrainingLoop(tiny_backbone(), objective, config(steps=40, lr=3e-3), tmp_path).run()
    first, last = result.losses[0][1], sum(loss for _, loss in result.losses[-5:]) / 5
    assert last < first


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path):
    def goes_nan(backbone, step, generator):
        loss, logs = objective(backbone, step, generator)
        return (loss * float("nan") if step == 4 else loss), logs

    with pytest.raises(TrainingDiverged, match=r"step 4.*step-0000003"):
        TrainingLoop(tiny_backbone(), goes_nan, config(), tmp_path).run()
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-0000003"]
    assert not list((tmp_path / "checkpoints").glob(".partial-*"))


def test_frozen_model_is_refused():
    backbone = tiny_backbone()
    backbone.trainable.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        TrainingLoop(backbone, objective, config(), "unused")


def test_timestep_sampling():
    generator = torch.Generator().manual_seed(0)
    t = sample_timesteps(10_000, TimestepConfig(mean=0.5), generator)
    assert t.min() > 0 and t.max() < 1 and 0.55 < t.mean() < 0.65
    u = sample_timesteps(10_000, TimestepConfig(sampling="uniform", shift=3.0), generator)
    assert u.mean() > 0.6  # shift > 1 moves mass toward noise
    assert torch.allclose(shift_timesteps(torch.tensor([0.0, 1.0]), 3.0), torch.tensor([0.0, 1.0]))


def test_bf16_autocast_and_a_second_precision_in_one_process(tmp_path):
    losses = {}
    for precision in ("bf16", "no"):
        backbone = tiny_backbone()
        latents = torch.randn(2, *backbone.latent_shape)

        def objective(model, step, generator, latents=latents):
            return flow_matching_loss(model, latents, model.encode_text(PROMPTS), generator, TimestepConfig()), {}

        config = LoopConfig(steps=2, warmup_steps=0, ema_decay=None, mixed_precision=precision, cpu=True)
        loop = TrainingLoop(backbone, objective, config, tmp_path / precision)
        assert loop.accelerator.mixed_precision == precision
        losses[precision] = loop.run().losses
    assert all(math.isfinite(v) for _, v in losses["bf16"])
    assert losses["bf16"][0][1] == pytest.approx(losses["no"][0][1], rel=0.05)  # bf16 rounding only


def test_weighted_velocity_errors_are_a_weighted_mean_of_the_squared_error():
    backbone = tiny_backbone()
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(2, *backbone.latent_shape, generator=generator)
    noise = torch.randn(clean.shape, generator=generator)
    t = torch.tensor([0.3, 0.8])
    text = backbone.encode_text(PROMPTS[:2])
    with torch.no_grad():
        plain = velocity_errors(backbone, clean, text, t, noise)
        ones = velocity_errors(backbone, clean, text, t, noise, weight=torch.ones(2, 1, *clean.shape[2:]))
        region = torch.zeros(2, 1, *clean.shape[2:])
        region[..., 0, :2, :2] = 1.0  # first latent frame, top-left corner only
        masked = velocity_errors(backbone, clean, text, t, noise, weight=region)
        prediction = backbone.predict_velocity(noisy_latents(clean, noise, t), t, text)
    torch.testing.assert_close(ones, plain)
    by_hand = (prediction - (noise - clean)).pow(2)[:, :, 0, :2, :2].flatten(1).mean(1)
    torch.testing.assert_close(masked, by_hand)


def test_run_chain_plot_reads_runs_end_to_end(tmp_path):
    from libragen.train.plots import plot_run_chain

    for name, extra in (("first", {}), ("second", {"contrast_gap": 0.1})):
        (tmp_path / name).mkdir()
        lines = [json.dumps({"step": s, "loss": 1.0 / s, **extra}) for s in range(10, 60, 10)]
        (tmp_path / name / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    png = plot_run_chain([tmp_path / "first", tmp_path / "second"], tmp_path / "chain.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="no records"):
        plot_run_chain([tmp_path / "empty"], tmp_path / "x.png")
