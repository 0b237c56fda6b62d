"""``libragen reproduce``: cached stages, the scripted reviewer, the verdict rules, and the quick run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

from libragen.cli import app
from libragen.core.config import load_config
from libragen.reproduce.config import ReproduceConfig
from libragen.reproduce.report import BEGIN, END, replace_section, results_table, verdicts
from libragen.reproduce.stages import MARKER, StageRunner
from libragen.review.demo import make_demo
from libragen.review.scripted import REVIEWER, scripted_review
from libragen.review.store import Store
from libragen.world.manifest import read_manifest


def test_stages_are_cached_by_fingerprint_and_changes_flow_downstream(tmp_path: Path) -> None:
    calls: list[str] = []

    def work(name: str):
        def run(folder: Path) -> dict:
            calls.append(name)
            (folder / "out.txt").write_text(name)
            return {"made": name}

        return run

    def pipeline(size: int) -> StageRunner:
        runner = StageRunner(tmp_path, Console(quiet=True))
        runner.run("a", {"size": size}, [], work("a"))
        runner.run("b", {}, ["a"], work("b"))
        runner.run("c", {}, [], work("c"))
        return runner

    pipeline(1)
    assert calls == ["a", "b", "c"]
    again = pipeline(1)
    assert calls == ["a", "b", "c"] and again.cached == ["a", "b", "c"]
    (tmp_path / "a" / "stale.txt").write_text("from the old settings")
    pipeline(2)  # a's settings changed: a and b (which reads a) run again, c does not
    assert calls == ["a", "b", "c", "a", "b"]
    assert not (tmp_path / "a" / "stale.txt").exists()
    (tmp_path / "c" / MARKER).unlink()  # killed before it finished: runs again
    pipeline(2)
    assert calls[-1] == "c" and len(calls) == 6
    assert json.loads((tmp_path / "b" / MARKER).read_text())["result"] == {"made": "b"}


def test_the_shipped_config_is_the_built_in_default() -> None:
    assert load_config(ReproduceConfig, Path(__file__).parents[1] / "configs" / "reproduce.yaml") == ReproduceConfig()


def test_a_stage_cannot_run_before_its_inputs(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="needs"):
        StageRunner(tmp_path, Console(quiet=True)).run("b", {}, ["a"], lambda folder: {})


def test_scripted_reviewer_accepts_exactly_the_clean_clips_through_the_review_database(tmp_path: Path) -> None:
    paths = make_demo(tmp_path / "demo", n=24, seed=4)
    result = scripted_review(paths["curated"], paths["world"], tmp_path / "review.db", tmp_path / "approved.parquet")
    world = {Path(r["path"]).name: r["defect"] for r in read_manifest(paths["world"])}
    curated = pq.read_table(paths["curated"]).to_pylist()
    queued = [r for r in curated if r["keep"] and r["path"] is not None]
    clean = {r["clip_id"] for r in queued if world[Path(r["source_path"]).name] is None}
    approved = {r["clip_id"] for r in pq.read_table(tmp_path / "approved.parquet").to_pylist()}
    assert approved == clean and result["approved"] == len(clean)
    assert 0 < len(clean) < len(queued)  # the simulated curation lets defects through: the reviewer must reject some
    events = Store(tmp_path / "review.db").events("clip")
    assert len(events) == len(queued) and {e["reviewer"] for e in events} == {REVIEWER}
    rejected = [e for e in events if e["decision"] == "reject"]
    assert rejected and all(e["reasons"] for e in rejected)


def _report(values: dict[str, list[float]]) -> dict:
    videos = len(next(iter(values.values())))
    per_video = {f"v{i}": {key: column[i] for key, column in values.items()} for i in range(videos)}
    summary = {key: sum(column) / videos for key, column in values.items()}
    summary["dynamic_degree"] = summary.pop("dynamic")
    return {"per_video": per_video, "summary": summary}


def _rows(libragen_consistency: float, libragen_ta: float, noise: float) -> dict[str, list[dict]]:
    salts = iter(range(100))

    def row(consistency: float, copy_paste: float = 0.6, ta: float = 0.4) -> list[dict]:
        salt = next(salts)  # every row its own per-video noise, so paired differences do not cancel it
        wobble = [noise * ((i * 7919 + salt * 31) % 13 - 6) / 6 for i in range(40)]
        wobble_ta = [noise * ((i * 104729 + salt * 17) % 11 - 5) / 5 for i in range(40)]
        return [
            _report(
                {
                    "consistency": [consistency + w for w in wobble],
                    "dynamic": [1.0] * 40,
                    "ta": [ta + w for w in wobble_ta],
                    "visual_quality": [0.6] * 40,
                    "copy_paste": [copy_paste] * 40,
                    "smoothness": [0.95] * 40,
                }
            )
        ]

    return {
        "VGFM (text only)": row(0.50),
        "in-pair SFT": row(0.53, copy_paste=0.70),
        "cross-pair SFT": row(0.53),
        "mixed SFT": row(0.53),
        "merged SFT": row(0.53),
        "+Consis-DPO": row(0.54),
        "+Real-Fake DPO": row(0.53),
        "+merged DPO": row(0.53),
        "+dynamic CFG (= LibraGen)": row(libragen_consistency, ta=libragen_ta),
        "raw-data LibraGen": row(0.50),
    }


def test_verdicts_follow_the_declared_rules() -> None:
    holds = {question[:3]: ok for question, ok, _ in verdicts(_rows(0.60, 0.5, noise=0.01), margin=0.02)}
    assert holds == {"RQ1": True, "RQ2": True, "RQ3": True, "RQ4": False, "RQ5": True}
    # the same means buried in per-video noise: nothing is "up" any more
    noisy = {question[:3]: ok for question, ok, _ in verdicts(_rows(0.505, 0.405, noise=0.3), margin=0.02)}
    assert noisy["RQ1"] is False and noisy["RQ2"] is False and noisy["RQ5"] is False


def test_results_table_has_every_row_and_gsb_against_merged_sft() -> None:
    table = results_table(_rows(0.60, 0.5, noise=0.01), margin=0.02)
    lines = table.splitlines()
    assert len(lines) == 2 + 10
    libragen = next(line for line in lines if line.startswith("| +dynamic CFG"))
    assert libragen.rstrip(" |").endswith("1.00")  # better composite on every video
    assert next(line for line in lines if line.startswith("| merged SFT")).rstrip(" |").endswith("—")


def test_replace_section_keeps_the_rest_of_the_document(tmp_path: Path) -> None:
    doc = tmp_path / "results.md"
    doc.write_text("# Measured results\n\nhand-written table\n")
    replace_section(doc, "first")
    replace_section(doc, "second")
    text = doc.read_text()
    assert "hand-written table" in text and "second" in text and "first" not in text
    assert text.count(BEGIN) == 1 and text.count(END) == 1


def test_quick_reproduce_runs_every_stage_then_resumes_from_the_cache(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "reproduce.json").read_text())
    assert not record["cached_stages"]
    stages = set(record["stage_seconds"])
    assert {"data/curated", "data/reviewed", "data/pairs_raw", "seed0/raw/dpo_merged"} <= stages
    assert len(record["summaries"]) == 10 and len(record["verdicts"]) == 5
    text = (out / "results.md").read_text()
    assert "| +dynamic CFG (= LibraGen) |" in text and "| raw-data LibraGen |" in text
    assert text.count("holds** —") + text.count("does not hold** —") == 5
    assert (out / "examples" / "reproduce" / "balance_radar.png").stat().st_size > 10_000
    again = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert set(json.loads((out / "reproduce.json").read_text())["cached_stages"]) == stages
