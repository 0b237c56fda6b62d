"""Sizes of a ``libragen reproduce`` run (YAML, validated by pydantic): the full run and the ``--quick`` smoke run.

The defaults are the full run, sized to finish in about an hour on 2 CPU cores with 3 seeds; ``QUICK`` overrides
them down to a few minutes (CI). Every stage starts from the shipped LibraWorld VGFM: pre-training it is issue #4's
job (hours), not part of the recipe this command reruns.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from libragen.core.config import StrictModel


class DataSettings(StrictModel):
    """The raw pool, how much of it curation and review keep, and the held-out evaluation set."""

    raw_clips: int = Field(1200, ge=20)  # train-split LibraWorld clips with injected defects (the uncurated pool)
    defect_rate: float = Field(0.3, ge=0, le=1)
    world_seed: int = 11
    curated_keep: int = Field(100, ge=4)  # top-N by curation quality score; then the (scripted) review
    heldout_clips: int = Field(80, ge=4)  # held-out identities, never seen in training
    heldout_seed: int = 303
    eval_prompts: int = Field(30, ge=2)  # first N clean held-out clips: one video per prompt and variant


class SFTSettings(StrictModel):
    """The in-pair, cross-pair and mixed LoRAs (the shared SFT trainer)."""

    steps: int = Field(100, ge=1)
    batch_size: int = Field(6, ge=1)
    lr: float = Field(5e-4, gt=0)
    rank: int = Field(16, ge=1)
    generic_ref_share: float = Field(0.5, ge=0, le=1)  # captions naming subjects only as "a creature"
    mixed_cross_share: float = Field(0.5, ge=0, le=1)
    merge_weight: float = Field(0.5, ge=0, le=1)  # in-pair weight of the Tune-to-Balance merge (cross = 1 - w)


class DPOSettingsRun(StrictModel):
    """Consis-DPO and Real-Fake DPO: pair sampling, training, merge."""

    consis_pairs: int = Field(48, ge=2)
    realfake_pairs: int = Field(40, ge=2)
    sampling_steps: int = Field(8, ge=1)
    # rope_shift (the paper's loser) does not drift identity on LibraWorld (docs/results.md, issue #9)
    consis_negative: Literal["rope_shift", "other_refs"] = "other_refs"
    consis_min_gap: float = 0.02
    steps: int = Field(50, ge=1)
    batch_size: int = Field(4, ge=1)
    lr: float = Field(1e-4, gt=0)
    beta: float = Field(2500.0, gt=0)
    merge_weight: float = Field(0.5, ge=0, le=1)  # weight of each DPO LoRA in their sum (0.5: the mean)


class EvalSettings(StrictModel):
    """Generation and evaluation of every row."""

    steps: int = Field(20, ge=1)
    batch: int = Field(15, ge=1)
    text_cfg: float = 4.0  # the rows before "+dynamic CFG": text CFG, references in both branches
    dynamic_ref: str = "0:1,0.49:1,0.5:4,1:2"  # LibraGen's time-dependent reference scale (1 = no pull)
    dynamic_text: str = "linear:2:6"  # ... and text scale, rising towards the end (t runs 1 -> 0)
    generic_tags: str = "a creature"  # models read "Ref 1[a creature] hops …": the look must come from the refs
    gsb_margin: float = 0.02  # automatic GSB judge: composite difference that counts as better


class ReproduceConfig(StrictModel):
    """A whole ``libragen reproduce`` run."""

    seeds: int = Field(3, ge=1)
    workers: int = Field(2, ge=1)  # world, curation and pairs processes
    data: DataSettings = DataSettings()
    sft: SFTSettings = SFTSettings()
    dpo: DPOSettingsRun = DPOSettingsRun()
    eval: EvalSettings = EvalSettings()


#: ``--quick``: the same stages at smoke-test sizes (numbers mean nothing; every code path runs).
QUICK: dict = {
    "seeds": 1,
    "data": {"raw_clips": 120, "curated_keep": 12, "heldout_clips": 16, "eval_prompts": 4},
    "sft": {"steps": 4, "batch_size": 2},
    "dpo": {
        "consis_pairs": 4,
        "realfake_pairs": 4,
        "sampling_steps": 2,
        "consis_min_gap": -1.0,
        "steps": 3,
        "batch_size": 2,
    },
    "eval": {"steps": 3, "batch": 4},
}
