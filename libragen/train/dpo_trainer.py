"""``libragen train dpo``: Flow-DPO LoRA training on preference pairs (Consis-DPO or Real-Fake DPO).

The model starts from the base backbone with the SFT LoRA baked in (``sft_lora``); a fresh LoRA is
trained on top, so the DPO reference model — the SFT model — is the same network with that LoRA
switched off (no second copy in memory). Pairs come from ``libragen dpo pairs`` (only kept rows;
with ``verdicts``, a review export, pairs people judged the other way round are dropped). Winner and
loser latents are encoded once per pair and cached. Logs the DPO loss, implicit reward accuracy and
margin (metrics.jsonl, TensorBoard); the run ends with ``final/`` (the LoRA, EMA when kept),
``loss.png`` and ``dpo_curves.png``. Merge the Consis and Real-Fake LoRAs with ``libragen merge``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from PIL import Image
from pydantic import Field
from rich.console import Console

from libragen.core.config import StrictModel
from libragen.core.video import read_video
from libragen.models.backbone import Backbone
from libragen.train.dpo import DPOSettings, PreferenceBatch, flow_dpo_loss
from libragen.train.dpo_pairs import read_pairs
from libragen.train.flow import TimestepConfig
from libragen.train.loop import LoopConfig, LoopResult, TrainingLoop, start_run
from libragen.train.lora import LoraSettings, prepare_lora_training
from libragen.train.plots import plot_loss, plot_metrics
from libragen.train.sft import encode_reference_set, stack_reference_latents


class DPODataConfig(StrictModel):
    pairs: list[str] = Field(min_length=1)  # folders written by `libragen dpo pairs`
    verdicts: str | None = None  # `libragen review export --mode pair` parquet (optional human filter)


class DPOConfig(StrictModel):
    """A DPO run: base model + SFT LoRA (the reference), preference data, the new LoRA, β, loop."""

    model: str | None = None  # default: the shipped VGFM
    sft_lora: str | None = None  # baked into the base weights: DPO's reference model
    data: DPODataConfig
    batch_size: int = Field(4, ge=1)
    lora: LoraSettings = LoraSettings()
    dpo: DPOSettings = DPOSettings()
    timesteps: TimestepConfig = TimestepConfig()
    gradient_checkpointing: float = Field(0.0, ge=0, le=1)
    loop: LoopConfig = LoopConfig()


class PreferenceBank:
    """Kept preference pairs with their winner/loser latents and references cached per pair."""

    def __init__(self, config: DPODataConfig, backbone: Backbone) -> None:
        self.rows = [row for folder in config.pairs for row in read_pairs(folder, config.verdicts)]
        if not self.rows:
            raise ValueError(f"no kept preference pairs in {config.pairs}")
        self.backbone = backbone
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _latents(self, path: str) -> torch.Tensor:
        frames, height, width = self.backbone.video_size
        video = read_video(path, fps=self.backbone.fps, size=(width, height), max_frames=frames)
        if len(video) < frames:
            video = np.concatenate([video, np.repeat(video[-1:], frames - len(video), axis=0)])
        tensor = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        with torch.no_grad():
            return self.backbone.encode_video(tensor[None].to(self.backbone.device))[0].cpu()

    def item(self, position: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(winner latents, loser latents, reference latents) of one pair, cached."""
        if position not in self._cache:
            row = self.rows[position]
            images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in row["refs"]])
            refs = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            self._cache[position] = (
                self._latents(row["positive"]),
                self._latents(row["negative"]),
                encode_reference_set(self.backbone, refs),
            )
        return self._cache[position]

    def batch(self, positions: list[int]) -> PreferenceBatch:
        items = [self.item(p) for p in positions]
        device = self.backbone.device
        return PreferenceBatch(
            torch.stack([winner for winner, _, _ in items]).to(device),
            torch.stack([loser for _, loser, _ in items]).to(device),
            [self.rows[p]["prompt"] for p in positions],
            stack_reference_latents(self.backbone, [refs for _, _, refs in items]),
        )


def dpo_objective(bank: PreferenceBank, config: DPOConfig):
    def objective(backbone: Backbone, step: int, generator: torch.Generator):
        positions = torch.randint(len(bank), (config.batch_size,), generator=generator).tolist()
        return flow_dpo_loss(backbone, bank.batch(positions), generator, config.timesteps, config.dpo)

    return objective


def train_dpo(config: DPOConfig, run_dir: str | os.PathLike[str], console: Console | None = None) -> LoopResult:
    """Train (or resume) a DPO LoRA into ``run_dir``; ``final/`` holds the LoRA, plus loss and reward curves."""
    from libragen.models import SHIPPED_VGFM
    from libragen.train.merge import load_fused

    console = console or Console(stderr=True)
    run = start_run(config, config.loop, run_dir)
    base = config.model or str(SHIPPED_VGFM)
    backbone = load_fused(base, config.sft_lora)
    lora_config = prepare_lora_training(backbone, config.lora, config.gradient_checkpointing)
    bank = PreferenceBank(config.data, backbone)
    console.print(f"DPO on {len(bank)} pairs from {base} + {config.sft_lora or 'no SFT LoRA'} (beta {config.dpo.beta})")
    loop = TrainingLoop(backbone, dpo_objective(bank, config), config.loop, run, None, console)
    result = loop.run()
    if loop.is_main:
        loop.swap_in_ema()
        backbone.save_lora(run / "final", lora_config)
        record = {"base": base, "sft_lora": config.sft_lora, "config": config.model_dump(mode="json")}
        (run / "final" / "dpo.json").write_text(json.dumps(record, indent=2))
        plot_loss(run / "metrics.jsonl", run / "loss.png", title="Flow-DPO loss")
        plot_metrics(run / "metrics.jsonl", ["reward_accuracy", "reward_margin"], run / "dpo_curves.png", "Flow-DPO")
    return result
