"""``libragen train sft``: Tune-to-Balance LoRA fine-tuning on in-pair / cross-pair data.

A LoRA (peft) on any backbone — the LibraWorld VGFM or a Wan folder — trained by the shared loop on
``libragen pairs build`` outputs: in-pair only, cross-pair only, or a mixture (``cross_share``).
Each step draws its samples from the step's generator (so a resumed run replays the same batches),
decodes them at the backbone's size, and caches their video and reference latents in memory (a VAE
runs once per sample, not once per step). Captions keep their Ref tags (``Ref 1[a red round creature] …``),
the training-caption style rephrasing targets; text and references are dropped per sample so the
guidance branches are trained. The run folder ends with ``final/`` — the LoRA (EMA weights when
kept) in the backbone's LoRA format, ready for ``libragen merge`` — and ``loss.png``.
"""

from __future__ import annotations

import json
import os
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from rich.console import Console

from libragen.core.config import StrictModel
from libragen.infer.sampler import TextCFG, sample, to_uint8_frames
from libragen.models.backbone import Backbone
from libragen.pairs.dataset import PairsDataset
from libragen.train.flow import TimestepConfig
from libragen.train.loop import LoopConfig, LoopResult, TrainingLoop, start_run
from libragen.train.lora import LoraSettings, prepare_lora_training
from libragen.train.plots import plot_loss
from libragen.train.sft import (
    ConditionDropout,
    S2VBatch,
    encode_reference_set,
    sft_loss,
    stack_reference_latents,
)
from libragen.train.vgfm import SamplingConfig
from libragen.world.caption import generic_ref_tags, plain_caption


class SFTDataConfig(StrictModel):
    """Which pairs builds to train on and how to mix in-pair and cross-pair samples."""

    pairs: list[str] = Field(min_length=1)  # folders written by `libragen pairs build`
    use: Literal["in", "cross", "mixed"] = "mixed"
    cross_share: float | None = Field(None, ge=0, le=1)  # mixed only: share of cross-pair draws (None: as found)
    captions: Literal["ref_tags", "plain"] = "ref_tags"
    # Share of drawn samples whose Ref-tag descriptions are replaced by ``generic_ref_text`` ("Ref 1[a creature] hops
    # …"), the way the paper's captions name only a category ("Ref 1[a woman]"): the subject's look must then come
    # from its reference, which gives the model a reason to read references that detailed tags take away.
    generic_ref_share: float = Field(0.0, ge=0, le=1)
    generic_ref_text: str = "a creature"


class SFTConfig(StrictModel):
    """An SFT run: base model, data, LoRA, condition dropout, timesteps, loop, interim samples."""

    model: str | None = None  # backbone folder or diffusers Wan folder; default: the shipped VGFM
    data: SFTDataConfig
    batch_size: int = Field(8, ge=1)
    lora: LoraSettings = LoraSettings()
    dropout: ConditionDropout = ConditionDropout()
    timesteps: TimestepConfig = TimestepConfig()
    gradient_checkpointing: float = Field(0.0, ge=0, le=1)  # share of blocks recomputed in backward
    loop: LoopConfig = LoopConfig()
    sampling: SamplingConfig = SamplingConfig()
    sample_count: int = Field(2, ge=0)  # interim samples: the first N samples' references and captions


class PairBank:
    """Samples of one or more pairs builds, drawn by generator, with latents cached per sample."""

    def __init__(self, config: SFTDataConfig, backbone: Backbone) -> None:
        frames, height, width = backbone.video_size
        types = {"in": ["in"], "cross": ["cross"], "mixed": None}[config.use]
        self.datasets = [
            PairsDataset(p, num_frames=frames, size=(width, height), fps=backbone.fps, pair_types=types)
            for p in config.pairs
        ]
        self.index = [(d, i) for d, ds in enumerate(self.datasets) for i in range(len(ds))]
        if not self.index:
            raise ValueError(f"no {config.use} samples in {config.pairs}")
        self.is_cross = np.array([self.datasets[d].rows[i]["pair_type"] == "cross" for d, i in self.index])
        self.cross_share = config.cross_share if config.use == "mixed" else None
        if self.cross_share is not None and 0 < self.cross_share < 1 and self.is_cross.all() | (~self.is_cross).all():
            raise ValueError("cross_share mixes in- and cross-pair samples, but the data has only one kind")
        self.plain = config.captions == "plain"
        self.backbone = backbone
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor, str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.index)

    def draw(self, n: int, generator: torch.Generator) -> list[int]:
        """``n`` sample positions; with ``cross_share``, each is cross-pair with that probability."""
        if self.cross_share is None:
            return torch.randint(len(self.index), (n,), generator=generator).tolist()
        cross, inner = np.flatnonzero(self.is_cross), np.flatnonzero(~self.is_cross)
        picks = []
        for want_cross in (torch.rand(n, generator=generator) < self.cross_share).tolist():
            pool = cross if (want_cross and len(cross)) or not len(inner) else inner
            picks.append(int(pool[int(torch.randint(len(pool), (1,), generator=generator))]))
        return picks

    def item(self, position: int) -> tuple[torch.Tensor, torch.Tensor, str, torch.Tensor]:
        """(video latents, reference images (R, 3, S, S), caption, reference latents) of one sample, cached."""
        if position not in self._cache:
            d, i = self.index[position]
            sample = self.datasets[d][i]
            with torch.no_grad():
                latents = self.backbone.encode_video(sample["video"][None].to(self.backbone.device))[0].cpu()
            caption = plain_caption(sample["caption"]) if self.plain else sample["caption"]
            refs = encode_reference_set(self.backbone, sample["refs"])
            self._cache[position] = (latents, sample["refs"], caption, refs)
        return self._cache[position]

    def batch(self, positions: list[int], generic: list[bool] | None = None, generic_text: str = "") -> S2VBatch:
        """The samples at ``positions``; where ``generic`` is True their Ref tags read ``generic_text``."""
        items = [self.item(p) for p in positions]
        refs = stack_reference_latents(self.backbone, [item[3] for item in items])
        latents = torch.stack([item[0] for item in items]).to(self.backbone.device)
        prompts = [item[2] for item in items]
        if generic is not None:
            prompts = [generic_ref_tags(p, generic_text) if g else p for p, g in zip(prompts, generic, strict=True)]
        return S2VBatch(latents, prompts, refs)


def sft_objective(bank: PairBank, config: SFTConfig):
    share = config.data.generic_ref_share

    def objective(backbone: Backbone, step: int, generator: torch.Generator):
        positions = bank.draw(config.batch_size, generator)
        generic = (torch.rand(len(positions), generator=generator) < share).tolist() if share > 0 else None
        batch = bank.batch(positions, generic, config.data.generic_ref_text)
        return sft_loss(backbone, batch, generator, config.timesteps, config.dropout)

    return objective


def sft_samples(bank: PairBank, config: SFTConfig):
    """Interim samples: the first samples' references and captions, text CFG."""
    positions = list(range(min(config.sample_count, len(bank))))

    def make(backbone: Backbone, step: int) -> dict[str, np.ndarray]:
        if not positions:
            return {}
        batch = bank.batch(positions)
        s = config.sampling
        videos = sample(
            backbone,
            batch.prompts,
            refs=batch.refs,
            steps=s.steps,
            guidance=TextCFG(s.guidance),
            seed=positions,
            shift=s.shift,
        )
        return {f"sample{p:02d}": v for p, v in zip(positions, to_uint8_frames(videos), strict=True)}

    return make


def train_sft(config: SFTConfig, run_dir: str | os.PathLike[str], console: Console | None = None) -> LoopResult:
    """Train (or resume) an SFT LoRA into ``run_dir``; ``final/`` holds the LoRA, ``loss.png`` the curve."""
    from libragen.models import SHIPPED_VGFM, load_backbone

    console = console or Console(stderr=True)
    run = start_run(config, config.loop, run_dir)
    base = config.model or str(SHIPPED_VGFM)
    backbone = load_backbone(base)
    lora_config = prepare_lora_training(backbone, config.lora, config.gradient_checkpointing)
    bank = PairBank(config.data, backbone)
    kinds = int(bank.is_cross.sum())
    console.print(f"SFT on {len(bank)} samples ({len(bank) - kinds} in-pair, {kinds} cross-pair) from {base}")
    loop = TrainingLoop(backbone, sft_objective(bank, config), config.loop, run, sft_samples(bank, config), console)
    result = loop.run()
    if loop.is_main:
        loop.swap_in_ema()
        backbone.save_lora(run / "final", lora_config)
        (run / "final" / "sft.json").write_text(json.dumps({"base": base, "config": config.model_dump(mode="json")}))
        plot_loss(run / "metrics.jsonl", run / "loss.png")
    return result
