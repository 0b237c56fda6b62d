"""Train and test the identity reader (:mod:`libragen.eval.identity_reader`) on real LibraWorld clips.

Training needs each subject's in-plane angle per frame (the world manifest's ``angles_deg``):

* orientation net: a subject window or reference turned by a random angle; target a wrapped Gaussian
  (sigma 2.5 degrees, period 90) over the angle bins around the angle left in the crop; cross-entropy;
* trait net: the crop turned upright by the true angle give or take ``angle_noise`` degrees (the orientation
  estimate's error at test time), then by a random quarter turn, with the glyph target turned with it;
  loss = binary cross-entropy per glyph cell + cross-entropy of shape, colour and accent.

Crops come from every frame the appearance offers (reference crop 30 % of the time), shifted and scaled a
little as a loose box would, with a random gain/offset of the pixels.

The test is the retrieval protocol of :func:`libragen.eval.probe_train.test_identity_retrieval`: one
reference per identity, queries = its windows in other clips, score = :func:`match_log_likelihood`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from libragen.eval.identity_reader import (
    GLYPH_CELLS,
    TRAIT_SIZES,
    IdentityReader,
    angle_targets,
    match_log_likelihood,
)
from libragen.eval.probe_data import IdentityCrops, box_square, rotate_reference, window_crop
from libragen.eval.probe_train import _look, gallery_and_queries, warmup_cosine
from libragen.world.identity import ACCENT_NAMES, COLOUR_NAMES, SHAPES, identity

Log = Callable[[str], None]


def _turned_crops(
    crops: IdentityCrops, rows: np.ndarray, turn_by: Callable[[float], float], rng: np.random.Generator
) -> tuple[torch.Tensor, np.ndarray]:
    """Crops of ``rows`` turned by ``turn_by(true angle)``; returns pixels and the angle left in each crop."""
    images, left = [], []
    frames = crops.frames.shape[1]
    for row in rows:
        if rng.random() < 0.3:
            angle = float(crops.reference_angles[row])
            degrees = turn_by(angle)
            images.append(rotate_reference(crops.references[row], degrees))
        else:
            k = int(rng.integers(frames))
            angle = float(crops.angles[row, k])
            degrees = turn_by(angle)
            jitter = np.array([rng.uniform(-0.06, 0.06), rng.uniform(-0.06, 0.06), rng.uniform(0.92, 1.08), degrees])
            images.append(window_crop(crops.frames[row, k], crops.boxes[row, k], jitter=jitter))
        left.append(angle - degrees)
    pixels = torch.from_numpy(np.stack(images)).float()
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, size=(len(rows), 1, 1, 1))).float()
    bias = torch.from_numpy(rng.uniform(-10, 10, size=(len(rows), 1, 1, 1))).float()
    return (pixels * gain + bias).clamp(0, 255), np.array(left)


def _trait_targets(identity_ids: np.ndarray, turns: np.ndarray) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Glyph targets turned with the crops (N, 16) and shape / colour / accent class indices."""
    subjects = [identity(int(i)) for i in identity_ids]
    glyphs = np.stack([np.rot90(s.glyph, int(t)) for s, t in zip(subjects, turns, strict=True)])
    classes = [
        [SHAPES.index(s.shape) for s in subjects],
        [COLOUR_NAMES.index(s.colour) for s in subjects],
        [ACCENT_NAMES.index(s.accent) for s in subjects],
    ]
    return torch.from_numpy(glyphs.reshape(len(subjects), GLYPH_CELLS).astype(np.float32)), [
        torch.tensor(c) for c in classes
    ]


def train_identity_reader(
    crops: IdentityCrops,
    *,
    steps: int,
    batch: int = 96,
    lr: float = 2e-3,
    angle_noise: float = 10.0,
    seed: int = 0,
    init: IdentityReader | None = None,
    log: Log = print,
) -> IdentityReader:
    """Train both nets of an :class:`IdentityReader` for ``steps`` steps (each step one batch for each).

    ``init`` continues from a trained reader (e.g. a second, finer stage: lower ``lr`` and ``angle_noise``).
    """
    if np.isnan(crops.angles).any() or np.isnan(crops.reference_angles).any():
        raise ValueError(
            "the identity reader trains on subject angles, and this world has none recorded (made before "
            "manifests stored angles_deg): make the train world again with `libragen world make`"
        )
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    reader = init.train() if init is not None else IdentityReader()
    optimiser = torch.optim.AdamW(reader.parameters(), lr=lr, weight_decay=1e-4)
    schedule = warmup_cosine(optimiser, steps)
    start = time.perf_counter()
    for step in range(steps):
        rows = rng.integers(len(crops.identity_ids), size=batch)
        pixels, left = _turned_crops(crops, rows, lambda _: rng.uniform(-180, 180), rng)
        orientation_loss = F.cross_entropy(reader.orientation(pixels), angle_targets(left))

        rows = rng.integers(len(crops.identity_ids), size=batch)
        pixels, _ = _turned_crops(crops, rows, lambda a: a + rng.uniform(-angle_noise, angle_noise), rng)
        turns = rng.integers(4, size=batch)
        pixels = torch.stack([torch.rot90(p, int(t), (0, 1)) for p, t in zip(pixels, turns, strict=True)])
        glyph, classes = _trait_targets(crops.identity_ids[rows], turns)
        logits = reader.traits(pixels)
        parts = torch.split(logits[:, GLYPH_CELLS:], list(TRAIT_SIZES.values()), dim=1)
        trait_loss = F.binary_cross_entropy_with_logits(logits[:, :GLYPH_CELLS], glyph) * GLYPH_CELLS / 4
        trait_loss = trait_loss + sum(F.cross_entropy(p, c) for p, c in zip(parts, classes, strict=True))

        optimiser.zero_grad()
        (orientation_loss + trait_loss).backward()
        torch.nn.utils.clip_grad_norm_(reader.parameters(), 2.0)
        optimiser.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            log(
                f"identity reader step {step}/{steps} orientation {orientation_loss.item():.3f} "
                f"traits {trait_loss.item():.3f} ({time.perf_counter() - start:.0f}s)"
            )
    return reader.eval()


@torch.no_grad()
def test_identity_reader(reader: IdentityReader, crops: IdentityCrops, seed: int = 1) -> dict[str, float]:
    """Held-out retrieval with the reader (same protocol and keys as the encoder's test).

    ``top1`` reads one window per query; ``top1_clip`` sums the scores of the appearance's windows;
    ``top1_same_look`` cuts the gallery to the query's shape/colour/accent (only the glyph decides);
    ``orientation_error_deg`` is the median error of the angle estimate (modulo 90) when the world has angles.
    """
    reader.eval()
    gallery_rows, query_rows = gallery_and_queries(crops)
    gallery = reader.read_padded_references(crops.references[gallery_rows])
    frames = crops.frames.shape[1]
    flat_frames = crops.frames[query_rows].reshape(-1, *crops.frames.shape[2:])
    flat_boxes = crops.boxes[query_rows].reshape(-1, 4)
    squares = np.array([box_square(b, flat_frames.shape[1:]) for b in flat_boxes])
    angles = reader.window_angles(flat_frames, squares)
    readings = reader.read_windows(flat_frames, squares, angles)
    scores = match_log_likelihood(readings, gallery).unflatten(0, (len(query_rows), frames))  # (Q, K, G)
    pick = np.random.default_rng(seed).integers(frames, size=len(query_rows))
    single = scores[torch.arange(len(query_rows)), torch.from_numpy(pick)]
    gallery_ids, truth = crops.identity_ids[gallery_rows], crops.identity_ids[query_rows]
    looks = np.array([_look(i) for i in gallery_ids])
    same_look = torch.from_numpy(looks[None, :] == np.array([_look(i) for i in truth])[:, None])
    result = {
        "identities": float(len(gallery_rows)),
        "queries": float(len(query_rows)),
        "top1": float(np.mean(gallery_ids[single.argmax(1).numpy()] == truth)),
        "top1_clip": float(np.mean(gallery_ids[scores.sum(1).argmax(1).numpy()] == truth)),
        "top1_same_look": float(np.mean(gallery_ids[single.masked_fill(~same_look, -1e9).argmax(1).numpy()] == truth)),
        "mean_same_look_identities": float(same_look.sum(1).float().mean()),
    }
    if not np.isnan(crops.angles).any():
        error = (angles - crops.angles[query_rows].reshape(-1) + 45) % 90 - 45
        result["orientation_error_deg"] = float(np.median(np.abs(error)))
    return result
