"""The data half of the recipe, shared by every seed: raw pool -> automatic curation -> (scripted) review -> pairs,
the same pairs from the raw pool for the quality-over-quantity arm, and the held-out evaluation prompts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from libragen.curate.config import CurateConfig
from libragen.curate.pipeline import run_curation
from libragen.eval.world_meta import write_world_meta
from libragen.pairs.build import build_pairs
from libragen.pairs.config import PairsConfig
from libragen.pairs.subjects import WorldMasks
from libragen.reproduce.config import ReproduceConfig
from libragen.reproduce.stages import StageRunner
from libragen.review.scripted import scripted_review
from libragen.world.config import WorldConfig
from libragen.world.generate import make_world
from libragen.world.manifest import MANIFEST_NAME


@dataclass(frozen=True)
class RecipeData:
    """Where the data stages left their outputs (stage names in ``runner.fingerprints``)."""

    pairs: dict[str, Path]  # arm ("curated" / "raw") -> pairs build folder
    meta: Path  # held-out meta.jsonl (world-meta format)
    heldout_world: Path
    funnel: dict  # clip counts through the data stages


def _pairs_counts(summary) -> dict:
    return {"clips": summary.data["clips_with_samples"], "samples": summary.data["samples"]}


def prepare_data(runner: StageRunner, config: ReproduceConfig, console: Console) -> RecipeData:
    """Run (or reuse) every data stage; returns their outputs."""
    data, workers = config.data, config.workers
    world_config = WorldConfig(defect_rate=data.defect_rate)

    def make_raw(folder: Path) -> dict:
        summary = make_world(world_config, data.raw_clips, folder, seed=data.world_seed, split="train", workers=workers)
        return {"clips": summary.clips, "defects": dict(summary.defects)}

    raw_settings = {"world": world_config.model_dump(), "n": data.raw_clips, "seed": data.world_seed}
    raw = runner.run("data/raw_world", raw_settings, [], make_raw)
    raw_dir = runner.folder("data/raw_world")

    def curate(folder: Path) -> dict:
        summary = run_curation(raw_dir / MANIFEST_NAME, folder, CurateConfig(), keep=data.curated_keep, workers=workers)
        return {"records": summary.records, "kept": summary.kept, "rejected": dict(summary.reasons)}

    curated = runner.run("data/curated", {"keep": data.curated_keep}, ["data/raw_world"], curate)

    def review(folder: Path) -> dict:
        return scripted_review(
            runner.folder("data/curated") / "curated.parquet",
            raw_dir,
            folder / "review.db",
            folder / "approved.parquet",
        )

    reviewed = runner.run("data/reviewed", {}, ["data/curated"], review)
    pairs_config = PairsConfig(workers=workers)

    def pairs_from(source: Path, locator: WorldMasks | None):
        def build(folder: Path) -> dict:
            return _pairs_counts(build_pairs(source, folder, pairs_config, locator=locator))

        return build

    approved = runner.folder("data/reviewed") / "approved.parquet"
    settings = pairs_config.model_dump()
    curated_pairs = runner.run(
        "data/pairs_curated", settings, ["data/reviewed"], pairs_from(approved, WorldMasks(raw_dir / MANIFEST_NAME))
    )
    raw_pairs = runner.run("data/pairs_raw", settings, ["data/raw_world"], pairs_from(raw_dir / MANIFEST_NAME, None))

    def heldout(folder: Path) -> dict:
        summary = make_world(
            WorldConfig(),
            data.heldout_clips,
            folder / "world",
            seed=data.heldout_seed,
            split="heldout",
            workers=workers,
        )
        meta = write_world_meta(folder / "world", folder / "meta", limit=data.eval_prompts)
        return {"clips": summary.clips, "prompts": len(meta.read_text().splitlines())}

    held = runner.run(
        "data/heldout", {k: getattr(data, k) for k in ("heldout_clips", "heldout_seed", "eval_prompts")}, [], heldout
    )
    if held["prompts"] < 2:
        raise ValueError(f"only {held['prompts']} held-out prompts: raise data.heldout_clips")
    funnel = {
        "raw": raw,
        "curated": curated,
        "reviewed": reviewed,
        "pairs_curated": curated_pairs,
        "pairs_raw": raw_pairs,
        "heldout": held,
    }
    console.print(
        f"data: {raw['clips']} raw clips -> {curated['kept']} kept by curation -> {reviewed['approved']} approved "
        f"by the scripted reviewer -> {curated_pairs['samples']} pair samples (raw pool: {raw_pairs['samples']})"
    )
    return RecipeData(
        pairs={"curated": runner.folder("data/pairs_curated"), "raw": runner.folder("data/pairs_raw")},
        meta=runner.folder("data/heldout") / "meta" / "meta.jsonl",
        heldout_world=runner.folder("data/heldout") / "world",
        funnel=funnel,
    )
