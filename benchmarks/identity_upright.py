"""Experiment for issue #3: can the identity encoder read glyphs once every subject is turned upright?

The shipped encoder learns the look (shape, colour, accent) but barely the glyph: subjects meet their
references at other angles (+-25 degrees, or spinning), and a 4x4 glyph of 2-px cells turned by 30-50 degrees is
a different picture. Here the true angle of each subject in each frame is recovered from the world plan
(LibraWorld is deterministic: ``plan_world`` with the n / seed / split / config of the folder's world.yaml
gives the angles the clips were rendered with), reference crops and windows are turned upright with it,
and the same encoder is trained with the same hard (same-look) batches. The held-out retrieval it reaches is
the ceiling of an encoder with a perfect orientation estimate, the step the shipped encoder lacks
(see docs/results.md).

    python benchmarks/identity_upright.py --train-world /tmp/probe_data/train --test-world /tmp/probe_data/heldout

Oracle angles: this is a measurement of what orientation is worth, not a probe to ship.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from libragen.core.video import read_video
from libragen.eval.probe_data import reference_crop, rotate_reference, window_crop
from libragen.eval.probe_models import IdentityEncoder
from libragen.eval.probe_train import _hard_batch, _identities_by_look, _look, warmup_cosine
from libragen.world.config import WorldConfig
from libragen.world.manifest import decode_masks, read_manifest
from libragen.world.plan import plan_world


def load_upright(world: Path, frames_per_clip: int = 4) -> dict[str, np.ndarray]:
    """Reference crops and windows of every well-visible appearance, turned upright with the plan's angles."""
    made = yaml.safe_load((world / "world.yaml").read_text())
    plan = plan_world(WorldConfig(**made["config"]), made["n"], seed=made["seed"], split=made["split"])
    specs = {s.clip_id: s for s in plan}
    rows = [r for r in read_manifest(world) if r["defect"] is None]
    out: dict[str, list] = {"ids": [], "clip": [], "ref": [], "win": [], "spin": []}
    for clip_index, row in enumerate(rows):
        spec = specs[row["clip_id"]]
        video, masks = read_video(world / row["path"]), decode_masks(row)
        for k, subject in enumerate(row["subjects"]):
            match = [s for s in spec.subjects if s.identity_id == subject["identity_id"]]
            good = np.flatnonzero(np.array(subject["visible_fraction"]) >= 0.7)
            if len(match) != 1 or len(good) < frames_per_clip + 1:
                continue
            angle = np.rad2deg(match[0].trajectory(row["num_frames"])[3])
            picks = good[np.linspace(0, len(good) - 1, frames_per_clip + 1).round().astype(int)]
            boxes = np.array(subject["boxes"])
            out["ids"].append(subject["identity_id"])
            out["clip"].append(clip_index)
            out["ref"].append(rotate_reference(reference_crop(video[picks[0]], masks[k, picks[0]]), angle[picks[0]]))
            out["win"].append(
                [window_crop(video[t], boxes[t], jitter=np.array([0, 0, 1, angle[t]])) for t in picks[1:]]
            )
            out["spin"].append(subject["rotation_deg_per_frame"] != 0)
    return {k: np.array(v) for k, v in out.items()}


def _shifted(crops: np.ndarray, rng: np.random.Generator, shift: int) -> np.ndarray:
    """Each crop moved by up to ``shift`` px (a loose detector's box)."""
    return np.stack([np.roll(c, tuple(rng.integers(-shift, shift + 1, size=2)), axis=(0, 1)) for c in crops])


def train(data: dict[str, np.ndarray], steps: int, batch: int, log_every: int = 50) -> IdentityEncoder:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = IdentityEncoder()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = warmup_cosine(optimiser, steps)
    ids = np.unique(data["ids"])
    rows_of = {int(i): np.flatnonzero(data["ids"] == i) for i in ids}
    looks = _identities_by_look(ids)
    start = time.perf_counter()
    for step in range(steps):
        chosen = _hard_batch(looks, batch, rng)
        anchors = np.array([rng.choice(rows_of[int(i)]) for i in chosen])
        partners = []
        for identity_id, anchor in zip(chosen, anchors, strict=True):
            others = [j for j in rows_of[int(identity_id)] if data["clip"][j] != data["clip"][anchor]]
            partners.append(rng.choice(others) if others else anchor)
        views = data["win"][np.array(partners), rng.integers(data["win"].shape[1], size=len(partners))]
        a = model(torch.from_numpy(_shifted(data["ref"][anchors], rng, 1)))
        b = model(torch.from_numpy(_shifted(views, rng, 2)))
        logits = a @ b.T / 0.07
        target = torch.arange(len(a))
        loss = F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % log_every == 0 or step == steps - 1:
            print(f"step {step}/{steps} loss {loss.item():.3f} ({time.perf_counter() - start:.0f}s)", flush=True)
    return model.eval()


@torch.no_grad()
def retrieval(model: IdentityEncoder, data: dict[str, np.ndarray]) -> dict[str, float]:
    """Top-1 as in probe_train.test_identity_retrieval: one reference per identity, queries from other clips."""
    gallery_rows, query_rows = [], []
    for identity_id in np.unique(data["ids"]):
        rows = np.flatnonzero(data["ids"] == identity_id)
        if len(np.unique(data["clip"][rows])) < 2:
            continue
        gallery_rows.append(rows[0])
        query_rows += [r for r in rows if data["clip"][r] != data["clip"][rows[0]]]
    gallery = model(torch.from_numpy(data["ref"][gallery_rows]))
    windows = data["win"][query_rows]
    queries = model(torch.from_numpy(windows.reshape(-1, *windows.shape[2:]))).unflatten(0, windows.shape[:2])
    gallery_ids, truth = data["ids"][gallery_rows], data["ids"][query_rows]
    same_look = torch.from_numpy(np.array([[_look(g) == _look(t) for g in gallery_ids] for t in truth]))
    spinning = data["spin"][query_rows]
    result = {"identities": float(len(gallery_ids)), "queries": float(len(truth))}
    for name, embedded in (("", queries[:, 0]), ("_clip", F.normalize(queries.mean(1), dim=1))):
        similarity = embedded @ gallery.T
        hit = gallery_ids[similarity.argmax(1).numpy()] == truth
        result[f"top1{name}"] = float(hit.mean())
        result[f"top1{name}_same_look"] = float(
            np.mean(gallery_ids[similarity.masked_fill(~same_look, -2).argmax(1).numpy()] == truth)
        )
        result[f"top1{name}_spinning"] = float(hit[spinning].mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-world", type=Path, required=True)
    parser.add_argument("--test-world", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_data, test_data = load_upright(args.train_world), load_upright(args.test_world)
    print(f"{len(train_data['ids'])} train appearances, {len(test_data['ids'])} test", flush=True)
    model = train(train_data, args.steps, args.batch)
    print(json.dumps(retrieval(model, test_data), indent=2))


if __name__ == "__main__":
    main()
