"""Subject consistency: how well each reference's identity shows up in the video.

LibraWorld, two steps per frame and reference, no detector:

1. *find* — the identity encoder (trained contrastively on real clips) embeds every 32 px window of the
   frame at several zooms; at each zoom the window most similar to the reference's embedding is a
   candidate (the encoder knows a subject's look well, its glyph poorly);
2. *read* — the identity reader (:mod:`libragen.eval.identity_reader`) reads each candidate's traits
   (glyph cells, shape, colour, accent) and the reference's, and the frame's score is the best
   candidate's *trait agreement*: the expected share of the 19 traits that match, in [0, 1].

The video's score for a reference is the mean over frames; its consistency is the mean over references.
Without a reader (older probe folders) step 2 falls back to the encoder's cosine similarity.
Real footage plugs DINO/CLIP-I/face embedders in through :class:`libragen.core.embed.ImageEmbedder`
(see :mod:`libragen.eval.scorers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from libragen.eval.identity_reader import IdentityReader, trait_agreement
from libragen.eval.probe_data import pad_reference, sample_frames
from libragen.eval.probe_models import IdentityEncoder

#: Frame zooms searched: subjects 16-30 px tall fill the encoder's 32 px window at one of them.
ZOOMS: tuple[float, ...] = (1.0, 1.3, 1.7, 2.2)


@dataclass
class IdentityProbe:
    """The shipped identity probe: an encoder that finds a subject and a reader that checks who it is."""

    locator: IdentityEncoder
    reader: IdentityReader | None = None


@torch.no_grad()
def embed_references(encoder: IdentityEncoder, references: Sequence[np.ndarray]) -> torch.Tensor:
    """(R, D) embeddings of reference images (any size; white-padded to the encoder window)."""
    crops = np.stack([pad_reference(np.asarray(ref)) for ref in references])
    return encoder(torch.from_numpy(crops))


def _zoomed(video: torch.Tensor, zoom: float) -> torch.Tensor:
    if zoom == 1.0:
        return video
    size = (round(video.shape[1] * zoom), round(video.shape[2] * zoom))
    scaled = F.interpolate(video.permute(0, 3, 1, 2).float(), size=size, mode="bilinear", align_corners=False)
    return scaled.round().clamp(0, 255).byte().permute(0, 2, 3, 1)


@torch.no_grad()
def locate(encoder: IdentityEncoder, frames: np.ndarray, references: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """Best window per reference, frame and zoom: similarity (R, T, Z) and square (R, T, Z, 3) = cx, cy, side.

    Squares are in the frame's own pixels, in the convention of :func:`libragen.eval.probe_data.square_crop`.
    """
    video = torch.from_numpy(np.ascontiguousarray(frames))
    stride, window = IdentityEncoder.stride, IdentityEncoder.window
    similarities, squares = [], []
    for zoom in ZOOMS:
        windows = encoder.embed_windows(_zoomed(video, zoom))  # (T, D, h, w)
        similarity = torch.einsum("rd,tdhw->rthw", references, windows)
        best, where = similarity.flatten(2).max(-1)  # (R, T)
        row, col = (where // similarity.shape[-1]).numpy(), (where % similarity.shape[-1]).numpy()
        scale_y, scale_x = video.shape[1] / round(video.shape[1] * zoom), video.shape[2] / round(video.shape[2] * zoom)
        centre_x, centre_y = (col * stride + window / 2) * scale_x, (row * stride + window / 2) * scale_y
        side = np.full_like(centre_x, window * scale_x, dtype=np.float64)
        similarities.append(best)
        squares.append(np.stack([centre_x, centre_y, side], axis=-1))
    return torch.stack(similarities, dim=-1), np.stack(squares, axis=2)


def window_similarity(encoder: IdentityEncoder, frames: np.ndarray, references: torch.Tensor) -> torch.Tensor:
    """(R, T) best cosine similarity of each reference to any window of each frame, over all zooms."""
    return locate(encoder, frames, references)[0].amax(-1)


def _read_agreement(
    reader: IdentityReader, frames: np.ndarray, squares: np.ndarray, references: Sequence[np.ndarray]
) -> torch.Tensor:
    """(R, T) trait agreement of each reference with its best candidate window (over zooms) in each frame."""
    refs, count, zooms = squares.shape[:3]
    reference_of, frame_of, _ = np.indices((refs, count, zooms)).reshape(3, -1)
    candidates = reader.read_windows(frames[frame_of], squares.reshape(-1, 3))
    agreement = trait_agreement(candidates, reader.read_references(references)).mean(-1)  # (R*T*Z, R)
    own = agreement[torch.arange(len(reference_of)), torch.from_numpy(reference_of)]
    return own.reshape(refs, count, zooms).amax(-1)


def subject_consistency(
    probe: IdentityProbe, frames: np.ndarray, references: Sequence[np.ndarray], frame_count: int = 8
) -> dict[str, float]:
    """``consistency``: mean over references of the per-frame score (trait agreement in [0, 1] with a reader)."""
    if not references:
        return {"consistency": float("nan")}
    sampled = sample_frames(np.asarray(frames), frame_count)
    similarity, squares = locate(probe.locator, sampled, embed_references(probe.locator, references))
    if probe.reader is None:
        per_frame = similarity.amax(-1)
    else:
        per_frame = _read_agreement(probe.reader, sampled, squares, references)
    per_reference = per_frame.mean(dim=1)
    scores = {f"consistency_ref{k + 1}": float(v) for k, v in enumerate(per_reference)}
    scores["consistency"] = float(per_reference.mean())
    return scores
