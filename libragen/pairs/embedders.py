"""Identity embedders for cross-pair retrieval, chosen by name, path or object.

Any :class:`~libragen.core.embed.ImageEmbedder` works. By name (``--embedder`` / ``embedder:``):

* ``libraworld-glyph`` — weight-free LibraWorld reader (:mod:`libragen.pairs.glyph_embed`).
* ``torch:PATH`` — real footage: an exported image model at a local path (e.g. DINOv2 or a face
  model; ``.pt2`` from ``torch.export.save`` with a dynamic batch dimension, or a TorchScript
  file) taking (N, 3, S, S) float images normalised with ImageNet statistics and returning (N, D)
  features; outputs are L2-normalised here. ``torchscript:PATH`` is an alias.
* ``package.module:attr`` — any importable factory/class returning an ``ImageEmbedder``.
* names added with :func:`register_embedder` (e.g. the trained LibraWorld identity encoder).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from libragen.core.embed import ImageEmbedder
from libragen.pairs.errors import MissingWeightsError, PairsInputError
from libragen.pairs.glyph_embed import LibraWorldGlyphEmbedder

_REGISTRY: dict[str, Callable[[], ImageEmbedder]] = {"libraworld-glyph": LibraWorldGlyphEmbedder}
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def register_embedder(name: str, factory: Callable[[], ImageEmbedder]) -> None:
    """Make ``factory`` available as ``--embedder NAME``."""
    _REGISTRY[name] = factory


def available_embedders() -> list[str]:
    return sorted(_REGISTRY)


class TorchModelEmbedder:
    """An ``ImageEmbedder`` around an exported model file (weights by local path)."""

    def __init__(self, path: str | os.PathLike[str], *, batch_size: int = 64, device: str = "cpu") -> None:
        import torch

        self.path = Path(path)
        if not self.path.is_file():
            raise MissingWeightsError(
                "torch identity embedder", self.path, "export a model with torch.export.save (.pt2)"
            )
        try:
            if self.path.suffix == ".pt2":
                self.model = torch.export.load(str(self.path)).module()
            else:
                self.model = torch.jit.load(str(self.path), map_location=device).eval()
        except (RuntimeError, ValueError, OSError) as err:
            raise PairsInputError(f"{self.path}: not an exported model ({str(err).splitlines()[0][:160]})") from err
        self.model = self.model.to(device)
        self.name = f"torch:{self.path.name}"
        self.batch_size = batch_size
        self.device = device

    def embed(self, images: np.ndarray) -> np.ndarray:
        import torch

        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (N, S, S, 3) images, got shape {images.shape}")
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = (
                    images[start : start + self.batch_size].astype(np.float32) / 255.0 - _IMAGENET_MEAN
                ) / _IMAGENET_STD
                tensor = torch.from_numpy(batch.transpose(0, 3, 1, 2).copy()).to(self.device)
                outputs.append(self.model(tensor).float().reshape(len(batch), -1).cpu().numpy())
        features = np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)
        return (features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def get_embedder(spec: str | ImageEmbedder) -> ImageEmbedder:
    """Resolve an embedder name / ``torch:PATH`` / ``module:attr``, or pass an object through."""
    if not isinstance(spec, str):
        if isinstance(spec, type) or not isinstance(spec, ImageEmbedder):
            raise PairsInputError(f"{spec!r} is not an ImageEmbedder (needs .name and .embed(images))")
        return spec
    if spec in _REGISTRY:
        return _REGISTRY[spec]()
    if spec.startswith(("torch:", "torchscript:")):
        return TorchModelEmbedder(spec.split(":", 1)[1])
    if ":" in spec:
        module_name, attr = spec.split(":", 1)
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise PairsInputError(f"embedder {spec!r}: cannot import ({err})") from err
        is_instance = isinstance(factory, ImageEmbedder) and not isinstance(factory, type)
        embedder = factory if is_instance else factory()
        if not isinstance(embedder, ImageEmbedder):
            raise PairsInputError(f"embedder {spec!r} did not give an ImageEmbedder")
        return embedder
    raise PairsInputError(
        f"unknown embedder {spec!r} (known: {', '.join(available_embedders())}, torch:PATH, module:attr)"
    )
