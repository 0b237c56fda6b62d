"""Subject consistency: how well each reference's identity shows up in the video.

LibraWorld: the identity encoder (trained contrastively on real clips) embeds every 32 px window of each
frame at several zooms, with no detector; per frame, the best cosine similarity to the reference's
embedding says how well the subject is there; the video's score for a reference is the mean over
frames, and the video's consistency is the mean over its references. Real footage plugs DINO/CLIP-I/face
embedders in through :class:`libragen.core.embed.ImageEmbedder` (see :mod:`libragen.eval.scorers`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from libragen.eval.probe_data import pad_reference, sample_frames
from libragen.eval.probe_models import IdentityEncoder

#: Frame zooms searched: subjects 16-30 px tall fill the encoder's 32 px window at one of them.
ZOOMS: tuple[float, ...] = (1.0, 1.3, 1.7, 2.2)


@torch.no_grad()
def embed_references(encoder: IdentityEncoder, references: Sequence[np.ndarray]) -> torch.Tensor:
    """(R, D) embeddings of reference images (any size; white-padded to the encoder window)."""
    crops = np.stack([pad_reference(np.asarray(ref)) for ref in references])
    return encoder(torch.from_numpy(crops))


@torch.no_grad()
def window_similarity(encoder: IdentityEncoder, frames: np.ndarray, references: torch.Tensor) -> torch.Tensor:
    """(R, T) best cosine similarity of each reference to any window of each frame, over all zooms."""
    video = torch.from_numpy(np.ascontiguousarray(frames))
    best = torch.full((len(references), len(frames)), -1.0)
    for zoom in ZOOMS:
        scaled = video
        if zoom != 1.0:
            size = (round(frames.shape[1] * zoom), round(frames.shape[2] * zoom))
            scaled = (
                F.interpolate(video.permute(0, 3, 1, 2).float(), size=size, mode="bilinear", align_corners=False)
                .round()
                .clamp(0, 255)
                .byte()
                .permute(0, 2, 3, 1)
            )
        windows = encoder.embed_windows(scaled)  # (T, D, h, w)
        similarity = torch.einsum("rd,tdhw->rthw", references, windows).flatten(2).amax(-1)
        best = torch.maximum(best, similarity)
    return best


def subject_consistency(
    encoder: IdentityEncoder, frames: np.ndarray, references: Sequence[np.ndarray], frame_count: int = 8
) -> dict[str, float]:
    """``consistency`` in [-1, 1] (mean over references of the per-frame best window similarity)."""
    if not references:
        return {"consistency": float("nan")}
    sampled = sample_frames(np.asarray(frames), frame_count)
    per_reference = window_similarity(encoder, sampled, embed_references(encoder, references)).mean(dim=1)
    scores = {f"consistency_ref{k + 1}": float(v) for k, v in enumerate(per_reference)}
    scores["consistency"] = float(per_reference.mean())
    return scores
