"""Train and test the LibraWorld probes on real clips (``libragen eval train-probes``).

Attribute probe: per clip, queries for each present subject (its direction) and for absent (colour, shape)
pairs — two thirds of them sharing the colour or the shape of a present subject, so the probe must read
both. Targets: is the queried colour in the clip; the shape of the subject wearing that colour (when exactly
one does); the direction of a present subject; scene and subject count.

Identity encoder: InfoNCE between a reference-style crop of a subject (masked, white background) and
a jittered, turned window of the same identity in *another* clip when one exists (else another frame),
with background-only windows as extra negatives so that empty regions never look like a subject. Each
batch is built from a few (shape, colour, accent) looks with several identities each, so most negatives
differ only in the glyph — the part of an identity that text cannot name.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from libragen.eval.probe_data import IdentityCrops, ProbeSet, rotate_reference, window_crop
from libragen.eval.probe_models import AttributeProbe, IdentityEncoder
from libragen.world.identity import COLOUR_NAMES, SHAPES, identity

Log = Callable[[str], None]


def warmup_cosine(
    optimiser: torch.optim.Optimizer, steps: int, warmup: float = 0.05
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first ``warmup`` share of steps, then cosine decay to zero."""
    warm = max(1, int(steps * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, steps - warm))
        return 0.5 * (1 + np.cos(np.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def _optimise(model: torch.nn.Module, optimiser: torch.optim.Optimizer, schedule, loss: torch.Tensor) -> None:
    """One clipped optimiser step and one schedule step."""
    optimiser.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimiser.step()
    schedule.step()


@dataclass
class Queries:
    clip: np.ndarray  # (Q,) index into the probe set
    colour: np.ndarray
    shape: np.ndarray
    present: np.ndarray  # (Q,) 0/1
    direction: np.ndarray  # (Q,) direction index, -1 where not applicable
    colour_present: np.ndarray  # (Q,) 0/1: some subject has the queried colour
    colour_shape: np.ndarray  # (Q,) shape of the one subject with the queried colour, -1 if none or several


def make_queries(labels, rng: np.random.Generator, negatives_per_clip: int = 2) -> Queries:
    """All positive queries and ``negatives_per_clip`` absent ones per clip."""
    clip, colour, shape, present, direction = [], [], [], [], []
    for i, label in enumerate(labels):
        pairs = [(s.colour, s.shape) for s in label.subjects]
        for s in label.subjects:
            ambiguous = pairs.count((s.colour, s.shape)) > 1
            clip.append(i), colour.append(s.colour), shape.append(s.shape), present.append(1)
            direction.append(-1 if ambiguous else s.direction)
        for _ in range(negatives_per_clip):
            while True:
                anchor = label.subjects[rng.integers(len(label.subjects))]
                mode = rng.integers(3)
                c = anchor.colour if mode == 0 else int(rng.integers(len(COLOUR_NAMES)))
                h = anchor.shape if mode == 1 else int(rng.integers(len(SHAPES)))
                if (c, h) not in pairs:
                    break
            clip.append(i), colour.append(c), shape.append(h), present.append(0), direction.append(-1)
    colour_present, colour_shape = [], []
    for i, c in zip(clip, colour, strict=True):
        shapes = [s.shape for s in labels[i].subjects if s.colour == c]
        colour_present.append(int(bool(shapes)))
        colour_shape.append(shapes[0] if len(shapes) == 1 else -1)
    return Queries(*(np.array(v) for v in (clip, colour, shape, present, direction, colour_present, colour_shape)))


def _attribute_batch(data: ProbeSet, queries: Queries, idx: np.ndarray) -> dict[str, torch.Tensor]:
    clips = queries.clip[idx]
    return {
        "video": torch.from_numpy(data.videos[clips]),
        "colour": torch.from_numpy(queries.colour[idx]).long()[:, None],
        "shape": torch.from_numpy(queries.shape[idx]).long()[:, None],
        "present": torch.from_numpy(queries.present[idx]).float(),
        "direction": torch.from_numpy(queries.direction[idx]).long(),
        "colour_present": torch.from_numpy(queries.colour_present[idx]).float(),
        "colour_shape": torch.from_numpy(queries.colour_shape[idx]).long(),
        "scene": torch.tensor([data.labels[c].scene for c in clips]),
        "count": torch.tensor([data.labels[c].count - 1 for c in clips]),
    }


def _augment_video(video: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Brightness/contrast jitter (the generator's colours will not be exact)."""
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, size=(len(video), 1, 1, 1, 1))).float()
    bias = torch.from_numpy(rng.uniform(-12, 12, size=(len(video), 1, 1, 1, 1))).float()
    return (video.float() * gain + bias).clamp(0, 255)


def train_attribute_probe(
    train: ProbeSet, *, steps: int, batch: int = 24, lr: float = 2e-3, seed: int = 0, log: Log = print
) -> AttributeProbe:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AttributeProbe(frames=train.videos.shape[1])
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = warmup_cosine(optimiser, steps)
    start = time.perf_counter()
    queries = make_queries(train.labels, rng)
    for step in range(steps):
        if step and step % 200 == 0:
            queries = make_queries(train.labels, rng)  # fresh absent-subject queries
        b = _attribute_batch(train, queries, rng.integers(len(queries.clip), size=batch))
        out = model(_augment_video(b["video"], rng), b["colour"], b["shape"])
        has_dir, has_shape = b["direction"] >= 0, b["colour_shape"] >= 0
        loss = (
            F.binary_cross_entropy_with_logits(out["colour_logit"][:, 0], b["colour_present"])
            + (
                F.cross_entropy(out["shape_logits"][:, 0][has_shape], b["colour_shape"][has_shape])
                if has_shape.any()
                else 0.0
            )
            + (F.cross_entropy(out["direction"][:, 0][has_dir], b["direction"][has_dir]) if has_dir.any() else 0.0)
            + 0.5 * F.cross_entropy(out["scene"], b["scene"])
            + 0.5 * F.cross_entropy(out["count"], b["count"])
        )
        _optimise(model, optimiser, schedule, loss)
        if step % 100 == 0 or step == steps - 1:
            log(f"attribute probe step {step}/{steps} loss {loss.item():.3f} ({time.perf_counter() - start:.0f}s)")
    return model.eval()


@torch.no_grad()
def test_attribute_probe(model: AttributeProbe, data: ProbeSet, seed: int = 1) -> dict[str, float]:
    """Accuracy of each head on ``data`` (presence on balanced positive/absent queries)."""
    queries = make_queries(data.labels, np.random.default_rng(seed))
    correct: dict[str, list[bool]] = defaultdict(list)
    for start in range(0, len(data.videos), 32):
        clips = np.arange(start, min(start + 32, len(data.videos)))
        video = torch.from_numpy(data.videos[clips])
        maps = model.features(video)
        pooled = model.pooled(maps)
        for name, logits in (("scene", model.scene(pooled)), ("count", model.count_logits(maps))):
            predicted = logits.argmax(1).numpy()
            target = name
            truth = np.array([getattr(data.labels[c], target) - (1 if target == "count" else 0) for c in clips])
            correct[name].extend((predicted == truth).tolist())
        for local, c in enumerate(clips):
            mine = np.flatnonzero(queries.clip == c)
            out = model.query(
                maps[local : local + 1],
                torch.from_numpy(queries.colour[mine])[None],
                torch.from_numpy(queries.shape[mine])[None],
                video[local : local + 1],
            )
            present = (out["present"][0] > 0.5).numpy()
            correct["presence"].extend((present == queries.present[mine].astype(bool)).tolist())
            colour = (out["colour_logit"][0] > 0).numpy()
            correct["colour"].extend((colour == queries.colour_present[mine].astype(bool)).tolist())
            has_shape = queries.colour_shape[mine] >= 0
            shape = out["shape_logits"][0].argmax(-1).numpy()
            correct["shape"].extend((shape[has_shape] == queries.colour_shape[mine][has_shape]).tolist())
            direction = out["direction"][0].argmax(-1).numpy()
            has = queries.direction[mine] >= 0
            correct["direction"].extend((direction[has] == queries.direction[mine][has]).tolist())
    return {name: float(np.mean(values)) for name, values in correct.items()}


def _identity_views(crops: IdentityCrops, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each anchor, a window of the same identity from another clip when there is one."""
    by_identity: dict[int, list[int]] = defaultdict(list)
    for i, identity_id in enumerate(crops.identity_ids):
        by_identity[int(identity_id)].append(i)
    partners = []
    for i in idx:
        others = [j for j in by_identity[int(crops.identity_ids[i])] if crops.clip_index[j] != crops.clip_index[i]]
        partners.append(int(rng.choice(others)) if others else int(i))
    partners_arr = np.array(partners)
    return crops.windows(partners_arr, rng.integers(crops.frames.shape[1], size=len(idx)), rng)


def _background_windows(crops: IdentityCrops, count: int, rng: np.random.Generator) -> np.ndarray:
    """Windows far from the subject in random frames: mostly scene, sometimes a different subject's edge."""
    out = []
    height, width = crops.frames.shape[2:4]
    for _ in range(count):
        i, k = rng.integers(len(crops.identity_ids)), rng.integers(crops.frames.shape[1])
        side = rng.uniform(12, 28)
        x0, y0 = rng.uniform(0, width - side), rng.uniform(0, height - side)
        box = np.array([x0, y0, x0 + side, y0 + side])
        subject = crops.boxes[i, k]
        overlap_x = max(0.0, min(box[2], subject[2]) - max(box[0], subject[0]))
        overlap_y = max(0.0, min(box[3], subject[3]) - max(box[1], subject[1]))
        if overlap_x * overlap_y > 0.15 * side * side:
            continue
        out.append(window_crop(crops.frames[i, k], box))
    return np.stack(out) if out else np.zeros((0, *crops.references.shape[1:]), np.uint8)


def train_identity_encoder(
    crops: IdentityCrops,
    *,
    steps: int,
    batch: int = 96,
    lr: float = 2e-3,
    temperature: float = 0.07,
    seed: int = 0,
    log: Log = print,
) -> IdentityEncoder:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = IdentityEncoder()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = warmup_cosine(optimiser, steps)
    start = time.perf_counter()
    unique_ids = np.unique(crops.identity_ids)
    first_of = {int(i): np.flatnonzero(crops.identity_ids == i) for i in unique_ids}
    looks = _identities_by_look(unique_ids)
    for step in range(steps):
        chosen = _hard_batch(looks, min(batch, len(unique_ids)), rng)
        anchors = np.array([rng.choice(first_of[int(i)]) for i in chosen])
        turned = [rotate_reference(r, rng.uniform(-30, 30)) for r in crops.references[anchors]]
        refs = torch.from_numpy(np.stack(turned))
        views = torch.from_numpy(_identity_views(crops, anchors, rng))
        background = torch.from_numpy(_background_windows(crops, batch // 3, rng))
        a = model(_augment_crops(refs, rng))
        b = model(_augment_crops(torch.cat([views, background]), rng))
        logits = a @ b.T / temperature
        target = torch.arange(len(a))
        loss = F.cross_entropy(logits, target) + F.cross_entropy(logits[:, : len(a)].T, target)
        _optimise(model, optimiser, schedule, loss)
        if step % 100 == 0 or step == steps - 1:
            log(f"identity encoder step {step}/{steps} loss {loss.item():.3f} ({time.perf_counter() - start:.0f}s)")
    return model.eval()


def _identities_by_look(identity_ids: np.ndarray) -> list[np.ndarray]:
    """Identity ids grouped by look (shape, colour, accent): within a group only the glyph differs."""
    groups: dict[str, list[int]] = defaultdict(list)
    for identity_id in identity_ids:
        groups[_look(int(identity_id))].append(int(identity_id))
    return [np.array(ids) for ids in groups.values()]


def _hard_batch(looks: list[np.ndarray], size: int, rng: np.random.Generator, per_look: int = 8) -> np.ndarray:
    """``size`` distinct identity ids, up to ``per_look`` from each randomly picked look."""
    chosen: list[int] = []
    for look in rng.permutation(len(looks)):
        take = min(per_look, len(looks[look]), size - len(chosen))
        chosen.extend(int(i) for i in rng.choice(looks[look], size=take, replace=False))
        if len(chosen) == size:
            break
    return np.array(chosen)


def _augment_crops(crops: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, size=(len(crops), 1, 1, 1))).float()
    bias = torch.from_numpy(rng.uniform(-10, 10, size=(len(crops), 1, 1, 1))).float()
    return (crops.float() * gain + bias).clamp(0, 255)


@torch.no_grad()
def test_identity_retrieval(model: IdentityEncoder, crops: IdentityCrops, seed: int = 1) -> dict[str, float]:
    """Top-1 retrieval: gallery = one reference per identity; queries = appearances in other clips.

    ``top1`` scores each query on one window; ``top1_clip`` on the mean embedding of the appearance's
    windows (the frames a consistency score averages over); ``top1_same_look`` is ``top1`` with the
    gallery cut to identities sharing the query's shape, colour and accent (the glyph alone decides).
    """
    rng = np.random.default_rng(seed)
    gallery_idx, query_idx = gallery_and_queries(crops)
    gallery = model(torch.from_numpy(crops.references[gallery_idx]))
    frames = crops.frames.shape[1]
    windows = np.concatenate([crops.windows(query_idx, np.full(len(query_idx), k)) for k in range(frames)])
    every = model(torch.from_numpy(windows)).unflatten(0, (frames, len(query_idx)))  # (K, Q, D)
    queries = every[torch.from_numpy(rng.integers(frames, size=len(query_idx))), torch.arange(len(query_idx))]
    clip_queries = F.normalize(every.mean(0), dim=1)
    gallery_ids, truth = crops.identity_ids[gallery_idx], crops.identity_ids[query_idx]
    looks = np.array([_look(i) for i in gallery_ids])
    same_look = looks[None, :] == np.array([_look(i) for i in truth])[:, None]
    similarity = queries @ gallery.T
    return {
        "identities": float(len(gallery_idx)),
        "queries": float(len(query_idx)),
        "top1": float(np.mean(gallery_ids[similarity.argmax(1).numpy()] == truth)),
        "top1_clip": float(np.mean(gallery_ids[(clip_queries @ gallery.T).argmax(1).numpy()] == truth)),
        "top1_same_look": float(
            np.mean(gallery_ids[similarity.masked_fill(~torch.from_numpy(same_look), -2).argmax(1).numpy()] == truth)
        ),
        "mean_same_look_identities": float(same_look.sum(1).mean()),
    }


def gallery_and_queries(crops: IdentityCrops) -> tuple[np.ndarray, np.ndarray]:
    """Retrieval protocol: the first appearance of each identity seen in >= 2 clips is its gallery
    reference; its appearances in the other clips are the queries. Returns (gallery rows, query rows)."""
    gallery_rows, query_rows = [], []
    for identity_id in np.unique(crops.identity_ids):
        rows = np.flatnonzero(crops.identity_ids == identity_id)
        if len(np.unique(crops.clip_index[rows])) < 2:
            continue
        gallery = int(rows[0])
        gallery_rows.append(gallery)
        query_rows.extend(int(r) for r in rows if crops.clip_index[r] != crops.clip_index[gallery])
    return np.array(gallery_rows, dtype=np.int64), np.array(query_rows, dtype=np.int64)


def _look(identity_id: int) -> str:
    """An identity's look, "shape/colour/accent": what text and outline show; the glyph is the rest."""
    subject = identity(int(identity_id))
    return f"{subject.shape}/{subject.colour}/{subject.accent}"
