"""DPO pairs (Consis / Real-Fake) and ``libragen train dpo`` on a tiny backbone and a small pairs build."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml
from typer.testing import CliRunner

from libragen.cli import app
from libragen.core.video import read_video
from libragen.train.checkpoint import checkpoint_dirs, load_checkpoint
from libragen.train.dpo_pairs import read_pairs
from libragen.train.merge import load_fused, read_lora

runner = CliRunner()


def pairs_config(path, pairs, kind: str, count: int = 3, generic_ref_share: float = 0.0) -> None:
    config = {
        "kind": kind,
        "data": {
            "pairs": [str(pairs)],
            "use": "cross" if kind == "consis" else "in",
            "generic_ref_share": generic_ref_share,
            "generic_ref_text": "a thing",
        },
        "count": count,
        "steps": 2,
        "guidance": 2.0,
        "ref_offset": [2.0, 3.0, 3.0],
        "min_gap": -1.0,  # keep everything: the tiny model is random, the gap is noise
        "batch_size": 2,
    }
    path.write_text(yaml.safe_dump(config))


def test_consis_and_realfake_pairs(pairs_and_base, tmp_path):
    pairs, base = pairs_and_base
    for kind in ("consis", "realfake"):
        pairs_config(tmp_path / f"{kind}.yaml", pairs, kind)
        out = tmp_path / kind
        args = ["dpo", "pairs", "--config", str(tmp_path / f"{kind}.yaml"), "--out", str(out), "--model", str(base)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        rows = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
        assert len(rows) == 3 and len({r["pair_id"] for r in rows}) == 3
        for row in rows:
            assert row["kept"] and "gap" in row and -1 <= row["consistency_positive"] <= 1
            assert read_video(row["negative"]).shape[:3] == (4, 32, 32)
            assert all(p.endswith(".png") for p in row["refs"]) and row["prompt"].startswith(("Ref 1[", "a ", "the "))
        if kind == "consis":  # same noise, shifted reference slot: related but different videos
            positive, negative = read_video(rows[0]["positive"]), read_video(rows[0]["negative"])
            assert positive.shape == negative.shape and not (positive == negative).all()
        else:  # the positive is the real clip of the pairs build
            assert all("clips" in r["positive"] or r["positive"].endswith(".mp4") for r in rows)
        # rerun: nothing is redone, nothing duplicated; a line torn by a kill is redone
        assert runner.invoke(app, args).exit_code == 0
        assert len((out / "pairs.jsonl").read_text().splitlines()) == 3
        lines = (out / "pairs.jsonl").read_text().splitlines()
        (out / "pairs.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])
        assert runner.invoke(app, args).exit_code == 0
        again = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
        assert sorted(r["pair_id"] for r in again) == sorted(r["pair_id"] for r in rows)


def test_generic_prompts_and_other_refs_negatives(pairs_and_base, tmp_path):
    pairs, base = pairs_and_base
    pairs_config(tmp_path / "consis.yaml", pairs, "consis", count=3, generic_ref_share=1.0)
    config = yaml.safe_load((tmp_path / "consis.yaml").read_text()) | {"negative": "other_refs", "batch_size": 3}
    (tmp_path / "consis.yaml").write_text(yaml.safe_dump(config))
    args = ["dpo", "pairs", "--config", str(tmp_path / "consis.yaml"), "--out", str(tmp_path / "out")]
    result = runner.invoke(app, [*args, "--model", str(base)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (tmp_path / "out" / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all("Ref 1[a thing]" in r["prompt"] for r in rows), rows
    assert all(r["negative_kind"] == "other_refs" for r in rows)
    # same noise and prompt, another pair's references: a different video wherever those references differ
    differ = [r for r, nxt in zip(rows, rows[1:] + rows[:1], strict=True) if r["refs"] != nxt["refs"]]
    assert differ and all((read_video(r["positive"]) != read_video(r["negative"])).any() for r in differ)


def test_review_verdicts_drop_pairs_people_reversed(pairs_and_base, tmp_path):
    pairs, base = pairs_and_base
    pairs_config(tmp_path / "c.yaml", pairs, "consis", count=2)
    runner.invoke(
        app, ["dpo", "pairs", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "c"), "--model", str(base)]
    )
    rows = read_pairs(tmp_path / "c")
    # the review app queues pairs.jsonl as it is
    from libragen.review.config import ReviewConfig
    from libragen.review.importer import import_pairs
    from libragen.review.store import Store

    summary = import_pairs(Store(tmp_path / "review.db"), tmp_path / "c" / "pairs.jsonl", ReviewConfig())
    assert summary.rows == 2 and summary.added == 2
    verdicts = [
        {"pair_id": rows[0]["pair_id"], "human_verdict": "negative_better"},
        {"pair_id": rows[1]["pair_id"], "human_verdict": "positive_better"},
    ]
    pq.write_table(pa.Table.from_pylist(verdicts), tmp_path / "verdicts.parquet")
    kept = read_pairs(tmp_path / "c", tmp_path / "verdicts.parquet")
    assert [r["pair_id"] for r in kept] == [rows[1]["pair_id"]]


def test_train_dpo_on_top_of_a_fused_sft_lora(pairs_and_base, tmp_path):
    from tests.test_merge import make_lora

    pairs, base = pairs_and_base
    pairs_config(tmp_path / "c.yaml", pairs, "consis", count=3)
    runner.invoke(
        app, ["dpo", "pairs", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "c"), "--model", str(base)]
    )
    make_lora(tmp_path / "sft", seed=4)
    config = {
        "model": str(base),
        "sft_lora": str(tmp_path / "sft"),
        "data": {"pairs": [str(tmp_path / "c")]},
        "batch_size": 2,
        "lora": {"rank": 4, "alpha": 4},
        "dpo": {"beta": 500.0},
        "loop": {
            "steps": 2,
            "lr": 1e-3,
            "warmup_steps": 0,
            "checkpoint_every": 1,
            "log_every": 1,
            "ema_decay": None,
            "threads": 1,
        },
    }
    (tmp_path / "dpo.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "dpo", "--config", str(tmp_path / "dpo.yaml"), "--out", str(run)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all({"reward_accuracy", "reward_margin"} <= set(x) for x in lines)
    assert (run / "dpo_curves.png").is_file() and (run / "loss.png").is_file()
    state = load_checkpoint(checkpoint_dirs(run)[-1])
    assert all("lora_" in k for k in state.trainable)
    lora, _ = read_lora(run / "final")
    assert any(float(v.abs().sum()) > 0 for k, v in lora.items() if "lora_B" in k)  # the DPO LoRA learned
    # the reference model is base + SFT LoRA: fusing equals the unfused SFT model
    fused = load_fused(base, tmp_path / "sft").eval()
    from libragen.train.merge import merge_loras
    from tests.test_merge import velocity

    unfused = load_fused(base).eval()
    merge_loras(unfused, [(tmp_path / "sft", 1.0)], "cat")
    assert torch.allclose(velocity(fused), velocity(unfused), atol=1e-5)
