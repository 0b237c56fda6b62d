"""PyTorch dataset and loader over a pairs build, for the trainers.

* :class:`PairsDataset` yields one sample as a dict: ``video`` (T, 3, H, W) float in [-1, 1],
  ``refs`` (R, 3, S, S) float in [-1, 1] (the PNGs the build wrote), ``caption`` (Ref tags
  numbered like ``refs``), ``pair_type`` (``in`` | ``cross``), ``sample_id`` and, when a text
  cache is given, ``text`` (the encoder's output for the caption).
* :class:`TextEncoderCache` wraps any text-encoder callable (list of captions -> a batch tensor
  or a list of tensors) and caches its outputs by caption: in memory, and on disk when given a
  folder, so DataLoader worker processes share work. :meth:`PairsDataset.warm_text_cache`
  encodes every caption once, in batches, before the workers start.
* :func:`collate_samples` pads references to the batch's largest count (``ref_mask`` says which
  are real) and stacks text outputs (padding along the first axis with ``text_mask`` when their
  lengths differ).
* :func:`make_loader` builds the DataLoader: workers, and an optional in/cross balance
  (``cross_share``: the expected share of cross-pair samples drawn, with replacement).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from libragen.core.files import atomic_path
from libragen.core.video import read_video
from libragen.pairs.samples import SAMPLES_NAME, read_samples

TextEncoder = Callable[[list[str]], "torch.Tensor | Sequence[torch.Tensor]"]


class TextEncoderCache:
    """Caption -> encoder output, computed once (memory; plus ``cache_dir`` on disk if given)."""

    def __init__(self, encoder: TextEncoder, *, name: str = "text", cache_dir: str | os.PathLike[str] | None = None):
        self.encoder = encoder
        self.name = name
        self.cache_dir = Path(cache_dir) / name if cache_dir is not None else None
        self._memory: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.encoded = 0  # captions run through the encoder by this process

    def _key(self, caption: str) -> str:
        return hashlib.sha1(f"{self.name}\0{caption}".encode()).hexdigest()

    def _from_disk(self, caption: str) -> torch.Tensor | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / f"{self._key(caption)}.pt"
        if not path.is_file():
            return None
        return torch.load(path, weights_only=True)

    def _store(self, caption: str, value: torch.Tensor) -> None:
        self._memory[caption] = value
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.cache_dir / f"{self._key(caption)}.pt") as tmp:
                torch.save(value, tmp)

    def get_many(self, captions: Sequence[str], batch_size: int = 64) -> list[torch.Tensor]:
        """Outputs for ``captions``; captions not cached yet are encoded together, in batches."""
        missing: list[str] = []
        for caption in dict.fromkeys(captions):
            if caption in self._memory:
                continue
            cached = self._from_disk(caption)
            if cached is not None:
                self._memory[caption] = cached
            else:
                missing.append(caption)
        self.hits += len(captions) - len(missing)
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            with torch.inference_mode():
                outputs = self.encoder(list(chunk))
            if len(outputs) != len(chunk):
                raise ValueError(f"text encoder returned {len(outputs)} outputs for {len(chunk)} captions")
            for caption, output in zip(chunk, outputs, strict=True):
                self._store(caption, output.detach().cpu().clone())
            self.encoded += len(chunk)
        return [self._memory[c] for c in captions]

    def get(self, caption: str) -> torch.Tensor:
        return self.get_many([caption])[0]

    def __len__(self) -> int:
        return len(self._memory)


def _to_unit(images: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0)
    return tensor.movedim(-1, -3).contiguous()


class PairsDataset(Dataset):
    """Samples of a pairs build (folder with ``samples.parquet`` and the reference PNGs)."""

    def __init__(
        self,
        build_dir: str | os.PathLike[str],
        *,
        num_frames: int | None = None,
        size: int | tuple[int, int] | None = None,
        fps: float | None = None,
        pair_types: Sequence[str] | None = None,
        text_cache: TextEncoderCache | None = None,
    ) -> None:
        self.root = Path(build_dir)
        if not (self.root / SAMPLES_NAME).is_file():
            raise FileNotFoundError(f"{self.root}: no {SAMPLES_NAME} (run `libragen pairs build` first)")
        rows = read_samples(self.root)
        if pair_types is not None:
            rows = [r for r in rows if r["pair_type"] in set(pair_types)]
        self.rows = rows
        self.num_frames, self.size, self.fps = num_frames, size, fps
        self.text_cache = text_cache

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def pair_types(self) -> list[str]:
        return [r["pair_type"] for r in self.rows]

    def warm_text_cache(self, batch_size: int = 64) -> int:
        """Encode every caption not cached yet (call before starting workers); returns how many."""
        if self.text_cache is None:
            return 0
        before = self.text_cache.encoded
        self.text_cache.get_many([r["caption"] for r in self.rows], batch_size=batch_size)
        return self.text_cache.encoded - before

    def _video(self, row: dict[str, Any]) -> np.ndarray:
        frames = read_video(row["video_path"], fps=self.fps, size=self.size, max_frames=self.num_frames)
        if self.num_frames is not None and len(frames) < self.num_frames:
            pad = np.repeat(frames[-1:], self.num_frames - len(frames), axis=0)  # hold the last frame
            frames = np.concatenate([frames, pad])
        return frames

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        refs = np.stack([np.asarray(Image.open(self.root / r["image"]).convert("RGB")) for r in row["refs"]])
        item: dict[str, Any] = {
            "video": _to_unit(self._video(row)),
            "refs": _to_unit(refs),
            "caption": row["caption"],
            "pair_type": row["pair_type"],
            "sample_id": row["sample_id"],
        }
        if self.text_cache is not None:
            item["text"] = self.text_cache.get(row["caption"])
        return item


def collate_samples(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples: stack videos, pad references (``ref_mask``) and text outputs (``text_mask``)."""
    batch: dict[str, Any] = {
        "video": torch.stack([it["video"] for it in items]),
        "caption": [it["caption"] for it in items],
        "pair_type": [it["pair_type"] for it in items],
        "is_cross": torch.tensor([it["pair_type"] == "cross" for it in items]),
        "sample_id": [it["sample_id"] for it in items],
    }
    most = max(len(it["refs"]) for it in items)
    refs = torch.zeros((len(items), most, *items[0]["refs"].shape[1:]))
    mask = torch.zeros((len(items), most), dtype=torch.bool)
    for b, it in enumerate(items):
        refs[b, : len(it["refs"])] = it["refs"]
        mask[b, : len(it["refs"])] = True
    batch["refs"], batch["ref_mask"] = refs, mask
    if "text" in items[0]:
        texts = [it["text"] for it in items]
        if all(t.shape == texts[0].shape for t in texts):
            batch["text"] = torch.stack(texts)
        else:
            longest = max(t.shape[0] for t in texts)
            padded = torch.zeros((len(texts), longest, *texts[0].shape[1:]), dtype=texts[0].dtype)
            text_mask = torch.zeros((len(texts), longest), dtype=torch.bool)
            for b, t in enumerate(texts):
                padded[b, : t.shape[0]] = t
                text_mask[b, : t.shape[0]] = True
            batch["text"], batch["text_mask"] = padded, text_mask
    return batch


def make_loader(
    dataset: PairsDataset,
    batch_size: int,
    *,
    workers: int = 0,
    shuffle: bool = True,
    cross_share: float | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset``; ``cross_share`` draws in/cross samples at that ratio."""
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if cross_share is not None:
        if not 0.0 <= cross_share <= 1.0:
            raise ValueError(f"cross_share must be in [0, 1], got {cross_share}")
        is_cross = np.array([t == "cross" for t in dataset.pair_types])
        n_cross, n_in = int(is_cross.sum()), int((~is_cross).sum())
        if (cross_share > 0 and n_cross == 0) or (cross_share < 1 and n_in == 0):
            raise ValueError("cross_share asks for a pair type the dataset does not have")
        weights = np.where(is_cross, cross_share / max(n_cross, 1), (1 - cross_share) / max(n_in, 1))
        sampler = WeightedRandomSampler(
            torch.as_tensor(weights, dtype=torch.double), num_samples or len(dataset), generator=generator
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_samples,
        persistent_workers=workers > 0,
        generator=generator if sampler is None else None,
        drop_last=drop_last,
    )
