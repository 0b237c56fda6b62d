"""Shared fixtures: one LibraWorld set with defects, generated once per test session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from libragen.world.config import WorldConfig
from libragen.world.generate import make_world
from libragen.world.manifest import read_manifest
from libragen.world.plan import plan_world
from libragen.world.spec import ClipSpec

WORLD_N = 200
WORLD_SEED = 7


@dataclass
class World:
    root: Path
    config: WorldConfig
    rows: list[dict[str, Any]]
    specs: list[ClipSpec]

    def path(self, row: dict[str, Any]) -> Path:
        return self.root / row["path"]

    def of_kind(self, kind: str | None) -> list[tuple[dict[str, Any], ClipSpec]]:
        return [(row, spec) for row, spec in zip(self.rows, self.specs, strict=True) if row["defect"] == kind]


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """``libragen world make --n 200 --defects 0.3`` equivalent, with the specs that made it."""
    config = WorldConfig(defect_rate=0.3)
    root = tmp_path_factory.mktemp("world")
    make_world(config, WORLD_N, root, seed=WORLD_SEED, workers=2)
    rows = read_manifest(root)
    return World(root=root, config=config, rows=rows, specs=plan_world(config, WORLD_N, seed=WORLD_SEED))


@pytest.fixture(scope="session")
def pairs_and_base(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A pairs build of 32 world clips and a saved tiny LibraWorld backbone (the SFT/DPO tests' base)."""
    from libragen.pairs.build import build_pairs
    from libragen.pairs.config import PairsConfig
    from libragen.world.manifest import write_manifest
    from tests.test_models import tiny_backbone

    tmp = tmp_path_factory.mktemp("sft")
    rows = [dict(row, path=str(world.root / row["path"])) for row in world.rows[:32]]
    write_manifest(rows, tmp / "approved.parquet")
    summary = build_pairs(tmp / "approved.parquet", tmp / "pairs", PairsConfig(embed_views=2))
    tiny_backbone().save(tmp / "base")
    return summary.out_dir, tmp / "base"
