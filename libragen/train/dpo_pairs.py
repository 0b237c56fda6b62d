"""``libragen dpo pairs``: preference pairs for Consis-DPO and Real-Fake DPO, filtered automatically.

* ``consis`` (run it on the cross-pair SFT model): winner and loser are sampled from the *same*
  noise, prompt and references; the loser's references sit at a shifted RoPE slot (``ref_offset``)
  at every denoising step, so the subject's identity drifts while scene and layout stay. A model that
  reads its references by content rather than by position does not drift that way (the LibraWorld
  model does not: docs/results.md); ``negative: other_refs`` samples the loser from the same noise and
  prompt with *another* pair's references instead, so it shows someone else's look.
* ``realfake`` (on the in-pair SFT model): the winner is the real training clip, the loser the
  model's own sample from the same references and prompt.

Automatic filter: with the LibraWorld identity probe, a pair is kept when the winner's subject
consistency beats the loser's by at least ``min_gap`` (without probes the filter is skipped with a
notice). ``pairs.jsonl`` has one row per pair — ``pair_id``, ``positive``, ``negative``, ``prompt``
(the review app imports it as is: ``libragen review import-pairs``), the reference
images, the seed and offset, the scores, ``kept`` and the reason. A rerun skips pairs already written.
With ``data.generic_ref_share``, that share of prompts name their subjects only by ``data.generic_ref_text``
("Ref 1[a creature] …", as in SFT), so the subject's look has to come from its reference.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from rich.console import Console

from libragen.core.config import StrictModel
from libragen.core.files import atomic_path
from libragen.core.progress import progress_bar
from libragen.core.video import read_video, write_video
from libragen.infer.sampler import TextCFG, sample, to_uint8_frames
from libragen.models.backbone import Backbone
from libragen.train.sft_trainer import PairBank, SFTDataConfig

PAIRS_FILE = "pairs.jsonl"


class DPOPairsConfig(StrictModel):
    """How preference pairs are made and filtered."""

    kind: Literal["consis", "realfake"]
    data: SFTDataConfig  # where prompts, references (and realfake's real clips) come from
    count: int = Field(64, ge=1)
    steps: int = Field(20, ge=1)
    guidance: float = Field(4.0, ge=0)
    ref_offset: tuple[float, float, float] = (4.0, 4.0, 4.0)  # consis loser: RoPE slot shift (t, h, w) in tokens
    # consis loser: the pair's references at a shifted RoPE slot (the paper) or the next drawn pair's references
    negative: Literal["rope_shift", "other_refs"] = "rope_shift"
    min_gap: float = 0.05  # winner − loser subject consistency needed to keep a pair
    batch_size: int = Field(8, ge=1)
    seed: int = 0


def _reference_images(refs: torch.Tensor) -> list[np.ndarray]:
    """(R, 3, S, S) in [-1, 1] -> R uint8 (S, S, 3) images (what the identity probe reads)."""
    images = ((refs.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
    return [image.numpy() for image in images]


def make_dpo_pairs(
    backbone: Backbone, config: DPOPairsConfig, out: str | os.PathLike[str], console: Console | None = None
) -> Path:
    """Generate ``config.count`` pairs into ``out`` (resumable); returns the pairs.jsonl path."""
    console = console or Console(stderr=True)
    root = Path(out)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    table = root / PAIRS_FILE
    done = {row["pair_id"] for row in _intact_rows(table)}
    bank = PairBank(config.data, backbone)
    generator = torch.Generator().manual_seed(config.seed)
    positions = bank.draw(config.count, generator)
    share = config.data.generic_ref_share  # drawn for all pairs up front, so a resumed run words them the same
    generic = (torch.rand(config.count, generator=generator) < share).tolist() if share > 0 else [False] * config.count
    shifted = config.kind == "consis" and config.negative == "rope_shift"
    probes = _load_identity_probe(console)
    todo = [(k, p) for k, p in enumerate(positions) if f"{config.kind}-{k:05d}" not in done]
    with progress_bar(f"{config.kind} pairs", console) as progress, open(table, "a") as sink:
        task = progress.add_task("", total=len(positions), completed=len(positions) - len(todo))
        for start in range(0, len(todo), config.batch_size):
            chunk = todo[start : start + config.batch_size]
            batch = bank.batch([p for _, p in chunk], [generic[k] for k, _ in chunk], config.data.generic_ref_text)
            seeds = [config.seed * 100_003 + k for k, _ in chunk]
            kwargs = {"refs": batch.refs, "steps": config.steps, "guidance": TextCFG(config.guidance)}
            noise = torch.stack(
                [torch.randn(backbone.latent_shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
            )
            fakes = to_uint8_frames(sample(backbone, batch.prompts, noise=noise, **kwargs))
            if config.kind == "consis":  # the loser: same noise and prompt, shifted or someone else's references
                positives = fakes
                if config.negative == "other_refs":
                    loser = {"refs": bank.batch([positions[(k + 1) % len(positions)] for k, _ in chunk]).refs}
                else:
                    loser = {"ref_offset": config.ref_offset}
                negatives = to_uint8_frames(sample(backbone, batch.prompts, noise=noise, **(kwargs | loser)))
            else:
                positives, negatives = [None] * len(chunk), fakes
            for row_index, ((k, position), positive, negative) in enumerate(
                zip(chunk, positives, negatives, strict=True)
            ):
                pair_id = f"{config.kind}-{k:05d}"
                d, i = bank.index[position]
                source = bank.datasets[d].rows[i]
                negative_path = write_video(root / "videos" / f"{pair_id}-negative.mp4", negative, backbone.fps)
                if positive is None:  # realfake: the real clip, as the trainer will decode it
                    positive_path = Path(source["video_path"])
                    frames, height, width = backbone.video_size
                    positive = read_video(positive_path, fps=backbone.fps, size=(width, height), max_frames=frames)
                else:
                    positive_path = write_video(root / "videos" / f"{pair_id}-positive.mp4", positive, backbone.fps)
                refs = _reference_images(bank.item(position)[1])
                record = {
                    "pair_id": pair_id,
                    "kind": config.kind,
                    "prompt": batch.prompts[row_index],
                    "positive": str(Path(positive_path).resolve()),
                    "negative": str(Path(negative_path).resolve()),
                    "refs": [str(bank.datasets[d].root / r["image"]) for r in source["refs"]],
                    "sample_id": source["sample_id"],
                    "seed": seeds[row_index],
                    "ref_offset": list(config.ref_offset) if shifted else None,
                    "negative_kind": config.negative if config.kind == "consis" else "model sample",
                }
                record |= _filter(probes, positive, negative, refs, config.min_gap)
                sink.write(json.dumps(record) + "\n")
                sink.flush()
            progress.update(task, advance=len(chunk))
    return table


def _intact_rows(table: Path) -> list[dict]:
    """Rows of a pairs.jsonl; a line cut short by a killed run is dropped from the file (it will be redone)."""
    if not table.is_file():
        return []
    rows, lines, torn = [], [], False
    for line in table.read_text().splitlines():
        try:
            rows.append(json.loads(line))
            lines.append(line)
        except json.JSONDecodeError:
            torn = True
    if torn:
        with atomic_path(table) as tmp:
            tmp.write_text("".join(line + "\n" for line in lines))
    return rows


def _load_identity_probe(console: Console):
    from libragen.eval.probes import ProbesMissing, load_probes

    try:
        return load_probes().identity
    except ProbesMissing as error:
        console.print(f"[yellow]no identity probe ({error}); pairs are kept without the consistency filter")
        return None


def _filter(probe, positive: np.ndarray, negative: np.ndarray, refs: list[np.ndarray], min_gap: float) -> dict:
    if probe is None:
        return {"kept": True, "reason": "unfiltered (no identity probe)"}
    from libragen.eval.consistency import subject_consistency

    winner = subject_consistency(probe, np.asarray(positive), refs)["consistency"]
    loser = subject_consistency(probe, np.asarray(negative), refs)["consistency"]
    gap = winner - loser
    kept = gap >= min_gap
    reason = "consistency gap" if kept else f"consistency gap {gap:.3f} < {min_gap}"
    return {"consistency_positive": winner, "consistency_negative": loser, "gap": gap, "kept": kept, "reason": reason}


def read_pairs(path: str | os.PathLike[str], verdicts: str | os.PathLike[str] | None = None) -> list[dict]:
    """Kept rows of a pairs.jsonl (folder or file); with a review export, pairs people judged the other
    way round (``negative_better``) are dropped too."""
    target = Path(path)
    if target.is_dir():
        target = target / PAIRS_FILE
    if not target.is_file():
        raise FileNotFoundError(f"{path}: no {PAIRS_FILE} (run `libragen dpo pairs` first)")
    rows = [json.loads(line) for line in target.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("kept", True)]
    if verdicts is not None:
        import pyarrow.parquet as pq

        rejected = {
            r["pair_id"] for r in pq.read_table(verdicts).to_pylist() if r["human_verdict"] == "negative_better"
        }
        rows = [r for r in rows if r["pair_id"] not in rejected]
    return rows
