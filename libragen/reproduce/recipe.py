"""The model half of the recipe, once per seed and data arm: SFT in / cross / mixed -> merge -> Consis-DPO and
Real-Fake DPO -> merge; then one evaluation stage per table row (generation from the same noise for every row).

Every training stage starts from the shipped LibraWorld VGFM. Both DPO LoRAs are trained on the merged SFT model
(their reference model), so the "+Consis-DPO", "+Real-Fake DPO" and "+merged DPO" rows all sit on the same base.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from libragen.core.progress import progress_bar
from libragen.eval.heldout import generate_videos, read_jobs, write_and_evaluate
from libragen.infer.guidance import DynamicCFG, parse_schedule
from libragen.infer.sampler import Guidance, TextCFG
from libragen.models import SHIPPED_VGFM, load_backbone
from libragen.reproduce.config import ReproduceConfig
from libragen.reproduce.data import RecipeData
from libragen.reproduce.stages import StageRunner
from libragen.train.dpo import DPOSettings
from libragen.train.dpo_pairs import DPOPairsConfig, make_dpo_pairs, read_pairs
from libragen.train.dpo_trainer import DPOConfig, DPODataConfig, train_dpo
from libragen.train.flow import TimestepConfig
from libragen.train.loop import LoopConfig
from libragen.train.lora import LoraSettings
from libragen.train.merge import fuse_lora, load_fused, write_merge
from libragen.train.sft_trainer import SFTConfig, SFTDataConfig, train_sft


@dataclass(frozen=True)
class Row:
    """One table row: LoRAs fused on the VGFM in order, whether it reads references, and its guidance."""

    name: str
    loras: tuple[str, ...]  # stage names whose ``final`` LoRA folder (or merged folder) is fused
    with_refs: bool
    dynamic_cfg: bool = False


def _lora_path(runner: StageRunner, stage: str) -> Path:
    folder = runner.folder(stage)
    return folder / "final" if (folder / "final").is_dir() else folder / "lora"


def _loop(steps: int, lr: float, seed: int, ema: float | None) -> LoopConfig:
    return LoopConfig(
        steps=steps,
        lr=lr,
        warmup_steps=max(1, min(50, steps // 5)),
        cosine_decay=True,
        ema_decay=ema,
        seed=seed,
        checkpoint_every=max(1, steps // 2),
        sample_every=0,
        log_every=max(1, min(10, steps // 4)),
    )


def train_arm(runner: StageRunner, config: ReproduceConfig, data: RecipeData, arm: str, seed: int, console: Console):
    """SFT (in, cross and, for the curated arm, mixed), their merge, both DPOs and their merge; stage prefix."""
    prefix = f"seed{seed}/{arm}"
    pairs_stage = f"data/pairs_{arm}"
    sft = config.sft
    uses = ["in", "cross", "mixed"] if arm == "curated" else ["in", "cross"]
    for use in uses:
        sft_config = SFTConfig(
            data=SFTDataConfig(
                pairs=[str(data.pairs[arm])],
                use=use,  # type: ignore[arg-type]
                cross_share=sft.mixed_cross_share if use == "mixed" else None,
                generic_ref_share=sft.generic_ref_share,
            ),
            batch_size=sft.batch_size,
            lora=LoraSettings(rank=sft.rank, alpha=float(sft.rank)),
            timesteps=TimestepConfig(sampling="logit_normal", mean=0.5, std=1.0),
            loop=_loop(sft.steps, sft.lr, seed, 0.99),
            sample_count=0,
        )

        def train(folder: Path, sft_config: SFTConfig = sft_config) -> dict:
            result = train_sft(sft_config, folder, console)
            return {"final_loss": result.final_loss, "steps": result.steps_done}

        runner.run(f"{prefix}/sft_{use}", sft_config.model_dump(), [pairs_stage], train)

    def merge_sft(folder: Path) -> dict:
        weights = [
            (_lora_path(runner, f"{prefix}/sft_in"), sft.merge_weight),
            (_lora_path(runner, f"{prefix}/sft_cross"), 1.0 - sft.merge_weight),
        ]
        write_merge(SHIPPED_VGFM, weights, folder / "lora", "cat")
        return {}

    runner.run(f"{prefix}/sft_merged", {"w": sft.merge_weight}, [f"{prefix}/sft_in", f"{prefix}/sft_cross"], merge_sft)
    merged_sft = _lora_path(runner, f"{prefix}/sft_merged")
    dpo = config.dpo
    for kind in ("consis", "realfake"):
        consis = kind == "consis"
        pairs_config = DPOPairsConfig(
            kind=kind,  # type: ignore[arg-type]
            data=SFTDataConfig(
                pairs=[str(data.pairs[arm])],
                use="cross" if consis else "in",
                generic_ref_share=1.0 if consis else sft.generic_ref_share,
            ),
            count=dpo.consis_pairs if consis else dpo.realfake_pairs,
            steps=dpo.sampling_steps,
            guidance=config.eval.text_cfg,
            negative=dpo.consis_negative,  # type: ignore[arg-type]
            min_gap=dpo.consis_min_gap if consis else -1.0,
            batch_size=16,
            seed=seed,
        )

        def sample_pairs(folder: Path, pairs_config: DPOPairsConfig = pairs_config) -> dict:
            backbone = load_fused(SHIPPED_VGFM, merged_sft).eval()
            table = make_dpo_pairs(backbone, pairs_config, folder, console)
            return {"pairs": len(table.read_text().splitlines()), "kept": len(read_pairs(table))}

        pairs_stage_name = f"{prefix}/dpo_pairs_{kind}"
        made = runner.run(pairs_stage_name, pairs_config.model_dump(), [f"{prefix}/sft_merged"], sample_pairs)
        if made["kept"] == 0:
            raise ValueError(f"{pairs_stage_name}: no pair passed min_gap {pairs_config.min_gap}; lower it")
        dpo_config = DPOConfig(
            model=str(SHIPPED_VGFM),
            sft_lora=str(merged_sft),
            data=DPODataConfig(pairs=[str(runner.folder(pairs_stage_name))]),
            batch_size=dpo.batch_size,
            lora=LoraSettings(rank=sft.rank, alpha=float(sft.rank)),
            dpo=DPOSettings(beta=dpo.beta),
            timesteps=TimestepConfig(sampling="logit_normal", mean=0.5, std=1.0),
            loop=_loop(dpo.steps, dpo.lr, seed, None),
        )

        def train(folder: Path, dpo_config: DPOConfig = dpo_config) -> dict:
            result = train_dpo(dpo_config, folder, console)
            return {"final_loss": result.final_loss, "steps": result.steps_done}

        runner.run(f"{prefix}/dpo_{kind}", dpo_config.model_dump(), [pairs_stage_name], train)

    def merge_dpo(folder: Path) -> dict:
        weights = [(_lora_path(runner, f"{prefix}/dpo_{kind}"), dpo.merge_weight) for kind in ("consis", "realfake")]
        write_merge(SHIPPED_VGFM, weights, folder / "lora", "cat")
        return {}

    runner.run(
        f"{prefix}/dpo_merged", {"w": dpo.merge_weight}, [f"{prefix}/dpo_consis", f"{prefix}/dpo_realfake"], merge_dpo
    )


def table_rows(seed: int) -> list[Row]:
    """The rows of the reproduce table for one seed (the VGFM row is shared by all seeds)."""
    c, r = f"seed{seed}/curated", f"seed{seed}/raw"
    return [
        Row("in-pair SFT", (f"{c}/sft_in",), True),
        Row("cross-pair SFT", (f"{c}/sft_cross",), True),
        Row("mixed SFT", (f"{c}/sft_mixed",), True),
        Row("merged SFT", (f"{c}/sft_merged",), True),
        Row("+Consis-DPO", (f"{c}/sft_merged", f"{c}/dpo_consis"), True),
        Row("+Real-Fake DPO", (f"{c}/sft_merged", f"{c}/dpo_realfake"), True),
        Row("+merged DPO", (f"{c}/sft_merged", f"{c}/dpo_merged"), True),
        Row("+dynamic CFG (= LibraGen)", (f"{c}/sft_merged", f"{c}/dpo_merged"), True, dynamic_cfg=True),
        Row("raw-data LibraGen", (f"{r}/sft_merged", f"{r}/dpo_merged"), True, dynamic_cfg=True),
    ]


VGFM_ROW = Row("VGFM (text only)", (), False)


def slug(name: str) -> str:
    words = "".join(ch if ch.isalnum() else " " for ch in name.lower()).split()
    return "_".join(words)


def evaluate_row(
    runner: StageRunner, config: ReproduceConfig, data: RecipeData, row: Row, stage: str, probes, console: Console
) -> dict:
    """Generate the held-out videos of ``row`` and evaluate them (stage ``stage``); returns the report."""
    ev = config.eval
    guidance: Guidance = TextCFG(ev.text_cfg)
    if row.dynamic_cfg:
        guidance = DynamicCFG(parse_schedule(ev.dynamic_ref), parse_schedule(ev.dynamic_text))
    settings = {
        "row": row.name,
        "with_refs": row.with_refs,
        "guidance": guidance.describe(),
        **ev.model_dump(exclude={"gsb_margin"}),
    }

    def work(folder: Path) -> dict:
        jobs = read_jobs(data.meta, None, ev.generic_tags)
        torch.manual_seed(0)
        started = time.perf_counter()
        backbone = load_backbone(SHIPPED_VGFM)
        for lora_stage in row.loras:
            fuse_lora(backbone, _lora_path(runner, lora_stage))
        backbone.eval()
        with progress_bar("generate", console) as progress:
            task = progress.add_task("videos", total=len(jobs))
            videos = generate_videos(
                backbone, jobs, row.with_refs, ev.steps, guidance, ev.batch, lambda k: progress.advance(task, k)
            )
        real = [data.heldout_world / job["real"] for job in jobs]
        report = write_and_evaluate(folder, jobs, videos, backbone.fps, probes, time.perf_counter() - started, real)
        report["guidance"] = guidance.describe()
        return report

    return runner.run(stage, settings, ["data/heldout", *row.loras], work)
