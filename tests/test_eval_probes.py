"""The shipped LibraWorld probes: held-out accuracy, and the sanity comparisons the metrics must pass.

The held-out set here is generated fresh (a seed the probes never saw) from the held-out identity split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from libragen.cli import app
from libragen.core.video import read_video
from libragen.eval.alignment import text_alignment
from libragen.eval.consistency import subject_consistency
from libragen.eval.probe_data import load_identity_crops, load_probe_set
from libragen.eval.probe_train import test_attribute_probe as measure_attributes
from libragen.eval.probe_train import test_identity_retrieval as measure_retrieval
from libragen.eval.probes import load_probes
from libragen.eval.reader_train import test_identity_reader as measure_reader
from libragen.eval.runner import read_meta
from libragen.eval.world_meta import write_world_meta
from libragen.world.config import WorldConfig
from libragen.world.generate import make_world


@pytest.fixture(scope="module")
def probes():
    return load_probes()


@pytest.fixture(scope="module")
def heldout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("heldout")
    make_world(WorldConfig(), 120, root, seed=4242, split="heldout", workers=2)
    return root


@pytest.fixture(scope="module")
def meta(heldout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_world_meta(heldout, tmp_path_factory.mktemp("meta"), limit=24)


def test_shipped_record_holds_what_was_measured(probes) -> None:
    """Regression guard on the numbers measured right after training (libragen/eval/weights/probes.json).

    Issue #3 asks for >= 0.95 on every attribute and on identity retrieval: the attribute probe reaches it on
    every head, the identity reader 0.952 from one window and 0.975 from an appearance's 4 (258 identities).
    The encoder (now only the locator) keeps its old bound.
    """
    accuracy = probes.record["attribute"]["heldout_accuracy"]
    for head in ("scene", "count", "direction", "colour", "shape", "presence"):
        assert accuracy[head] >= 0.95, (head, accuracy)
    retrieval = probes.record["identity"]["heldout_retrieval"]
    assert retrieval["identities"] >= 100 and retrieval["top1"] >= 0.7, retrieval
    reading = probes.record["identity_reader"]["heldout_retrieval"]
    assert reading["identities"] >= 100 and reading["top1_clip"] >= 0.95 and reading["top1"] >= 0.95, reading
    assert reading["orientation_error_deg"] < 3.0, reading


def test_probes_hold_up_on_a_fresh_heldout_set(probes, heldout: Path) -> None:
    accuracy = measure_attributes(probes.attribute, load_probe_set(heldout, probes.attribute.frames))
    for head in ("scene", "count", "direction", "colour", "shape", "presence"):
        assert accuracy[head] >= 0.92, (head, accuracy)
    crops = load_identity_crops(heldout)
    assert measure_retrieval(probes.identity.locator, crops)["top1"] >= 0.75
    reading = measure_reader(probes.identity.reader, crops)  # measured 0.961 / 0.989 over 52 identities
    assert reading["top1"] >= 0.93 and reading["top1_clip"] >= 0.97, reading


def test_prompt_swap_lowers_text_alignment(probes, heldout: Path, meta: Path) -> None:
    items = read_meta(meta, heldout)
    wins = 0
    for item, other in zip(items, items[1:] + items[:1], strict=True):
        frames = read_video(item.video)
        true = text_alignment(probes.attribute, frames, item.prompt)["ta"]
        swapped = text_alignment(probes.attribute, frames, other.prompt)["ta"]
        wins += true > swapped
    assert wins >= 0.9 * len(items)


def test_subject_swap_lowers_consistency(probes, heldout: Path, meta: Path) -> None:
    items = [item for item in read_meta(meta, heldout) if item.refs]
    wins = 0
    for item, other in zip(items, items[1:] + items[:1], strict=True):
        frames = read_video(item.video)
        own = [np.asarray(Image.open(r).convert("RGB")) for r in item.refs]
        foreign = [np.asarray(Image.open(r).convert("RGB")) for r in other.refs][: len(own)]
        wins += (
            subject_consistency(probes.identity, frames, own)["consistency"]
            > subject_consistency(probes.identity, frames, foreign)["consistency"]
        )
    assert wins >= 0.9 * len(items)


def test_eval_command_writes_a_full_report(heldout: Path, meta: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--videos",
            str(heldout),
            "--meta",
            str(meta),
            "--out",
            str(tmp_path),
            "--real",
            str(heldout / "clips"),
            "--label",
            "real",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["count"] == 24
    for metric in ("dynamic_degree", "smoothness", "visual_quality", "ta", "consistency", "copy_paste", "realism_fd"):
        assert np.isfinite(report["summary"][metric]), metric
    assert any("LAION aesthetic skipped" in n for n in report["notices"])
    for name in ("report.md", "radar.png", "metrics.png"):
        assert (tmp_path / name).stat().st_size > 500
    assert Image.open(tmp_path / "radar.png").size[0] > 300


def test_eval_rejects_bad_meta(heldout: Path, tmp_path: Path) -> None:
    bad = tmp_path / "meta.jsonl"
    bad.write_text('{"video": "clips/nope.mp4", "prompt": "x", "refs": []}\n')
    result = CliRunner().invoke(app, ["eval", "--videos", str(heldout), "--meta", str(bad), "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "missing file" in str(result.exception)
