"""Pluggable learned scorers for real footage, loaded from local folders (never from a hub).

* ``clip`` — a CLIP model folder (transformers format): CLIPScore-style text alignment (mean over frames
  of the image–text cosine) and CLIP-I subject similarity.
* ``dino`` — any transformers vision backbone folder (DINOv2, ViT, …): reference-vs-frame similarity of
  CLS embeddings, an :class:`~libragen.core.embed.ImageEmbedder`.
* ``aesthetic`` — LAION-style aesthetic predictor: a CLIP folder plus a linear head in safetensors
  (``weight`` (1, D), ``bias`` (1,)) applied to normalised image embeddings.

A scorer whose path is not given is skipped with a notice in the report; a path that does not load is
an error (the user asked for it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from libragen.core.config import StrictModel
from libragen.core.embed import cosine_matrix


class ScorerLoadError(RuntimeError):
    """A scorer path was given but could not be loaded."""


class ScorerPaths(StrictModel):
    """Local folders of optional learned scorers (YAML: ``--scorers scorers.yaml``)."""

    clip: Path | None = None
    dino: Path | None = None
    aesthetic_clip: Path | None = None
    aesthetic_head: Path | None = None


def _require(path: Path) -> Path:
    if not Path(path).exists():
        raise ScorerLoadError(f"{path}: scorer weights not found (give a local transformers folder)")
    return Path(path)


def _images(frames: np.ndarray) -> list[np.ndarray]:
    return [np.ascontiguousarray(f) for f in np.asarray(frames)]


class HFImageEmbedder:
    """CLS/pooled embeddings of a local transformers vision model (DINOv2, ViT, CLIP vision)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from transformers import AutoImageProcessor, AutoModel

        folder = _require(Path(path))
        try:
            self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        except (OSError, ValueError) as err:
            raise ScorerLoadError(f"{folder}: cannot load vision model ({err})") from err
        self.name = f"hf:{folder.name}"

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> np.ndarray:
        inputs = self.processor(images=_images(images), return_tensors="pt")
        out = self.model(**inputs)
        pooled = getattr(out, "image_embeds", None)
        if pooled is None:
            pooled = out.last_hidden_state[:, 0]
        return torch.nn.functional.normalize(pooled.float(), dim=-1).numpy()


class CLIPScorer:
    """Text alignment and CLIP-I similarity with a local CLIP folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from transformers import CLIPModel, CLIPProcessor

        folder = _require(Path(path))
        try:
            self.processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)
            self.model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
        except (OSError, ValueError) as err:
            raise ScorerLoadError(f"{folder}: cannot load CLIP ({err})") from err
        self.name = f"clip:{folder.name}"

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> np.ndarray:
        inputs = self.processor(images=_images(images), return_tensors="pt")
        features = self.model.get_image_features(**inputs)
        return torch.nn.functional.normalize(features.float(), dim=-1).numpy()

    @torch.no_grad()
    def text_alignment(self, frames: np.ndarray, prompt: str) -> float:
        tokens = self.processor(text=[prompt], return_tensors="pt", padding=True, truncation=True)
        text = torch.nn.functional.normalize(self.model.get_text_features(**tokens).float(), dim=-1).numpy()
        return float(cosine_matrix(self.embed(frames), text).mean())


class AestheticScorer:
    """LAION-style linear aesthetic head on CLIP image embeddings."""

    def __init__(self, clip_path: str | os.PathLike[str], head_path: str | os.PathLike[str]) -> None:
        from safetensors.torch import load_file

        self.clip = CLIPScorer(clip_path)
        head = load_file(str(_require(Path(head_path))))
        if set(head) != {"weight", "bias"}:
            raise ScorerLoadError(f"{head_path}: expected tensors 'weight' and 'bias', got {sorted(head)}")
        self.weight, self.bias = head["weight"].float().numpy(), head["bias"].float().numpy()
        self.name = "laion-aesthetic"

    def score(self, frames: np.ndarray) -> float:
        return float((self.clip.embed(frames) @ self.weight.T + self.bias).mean())


@dataclass
class LearnedScorers:
    clip: CLIPScorer | None = None
    dino: HFImageEmbedder | None = None
    aesthetic: AestheticScorer | None = None
    notices: list[str] = field(default_factory=list)


def skipped_notices(paths: ScorerPaths) -> list[str]:
    """One line per scorer that will be skipped because its path is not given (nothing is loaded)."""
    notices = []
    if paths.clip is None:
        notices.append("CLIP text alignment / CLIP-I skipped: no clip path given")
    if paths.dino is None:
        notices.append("DINO subject similarity skipped: no dino path given")
    if paths.aesthetic_clip is None or paths.aesthetic_head is None:
        notices.append("LAION aesthetic skipped: aesthetic_clip and aesthetic_head paths not both given")
    return notices


def missing_paths(paths: ScorerPaths) -> list[Path]:
    """Given scorer paths that do not exist (checked before any work starts)."""
    return [Path(p) for p in paths.model_dump().values() if p is not None and not Path(p).exists()]


def load_scorers(paths: ScorerPaths) -> LearnedScorers:
    """Load the scorers whose folders are given; note the ones skipped."""
    scorers = LearnedScorers(notices=skipped_notices(paths))
    if paths.clip is not None:
        scorers.clip = CLIPScorer(paths.clip)
    if paths.dino is not None:
        scorers.dino = HFImageEmbedder(paths.dino)
    if paths.aesthetic_clip is not None and paths.aesthetic_head is not None:
        scorers.aesthetic = AestheticScorer(paths.aesthetic_clip, paths.aesthetic_head)
    return scorers
