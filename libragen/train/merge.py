"""LoRA merging through peft (``add_weighted_adapter``): the Tune-to-Balance lever.

``merge_loras(backbone, [(path, weight), …], method)`` loads each LoRA as a named adapter of
``backbone.trainable`` (wrapped in a ``peft.PeftModel``), lets peft combine them, and leaves the
merged adapter active. Semantics are peft's (see its docs and ``../shared/PAPER_NOTES.md``):

* ``linear`` / ``ties`` / ``dare_linear`` / ``dare_ties`` merge the A and B matrices separately
  (equal ranks required; the product has cross terms, so linear is *not* Σ wᵢ·BᵢAᵢ);
* ``cat`` concatenates the factors: exactly Σ wᵢ·BᵢAᵢ, rank adds up;
* ``svd`` (and ``ties_svd`` …) merge the full ΔW and truncate back to a rank by SVD.

LoRA folders are read in both formats we write: ``lora.safetensors`` (peft keys + config, the
LibraWorld backbone) and diffusers' ``pytorch_lora_weights.safetensors`` (Wan).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import torch
from safetensors import safe_open

from libragen.models.backbone import Backbone

MergeMethod = Literal["linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "magnitude_prune"]
MERGED = "merged"


def read_lora(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict]:
    """A LoRA folder (or file) -> (peft state dict without adapter names, LoRA config dict)."""
    target = Path(path)
    if target.is_dir():
        for name in ("lora.safetensors", "pytorch_lora_weights.safetensors"):
            if (target / name).is_file():
                target = target / name
                break
        else:
            raise FileNotFoundError(f"{path}: no lora.safetensors or pytorch_lora_weights.safetensors")
    if not target.is_file():
        raise FileNotFoundError(f"{path}: no such LoRA file")
    with safe_open(str(target), "pt") as f:
        metadata = f.metadata() or {}
        state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    if "lora_config" in metadata:
        return state, json.loads(metadata["lora_config"])
    if "lora_adapter_metadata" in metadata:  # diffusers: keys and config prefixed by the component
        prefix = "transformer."
        config = {
            k[len(prefix) :]: v
            for k, v in json.loads(metadata["lora_adapter_metadata"]).items()
            if k.startswith(prefix)
        }
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, config
    raise ValueError(f"{target}: no LoRA config in its metadata (not written by LibraGen or diffusers)")


def _lora_config(config: dict):  # -> peft.LoraConfig
    from peft import LoraConfig

    fields = {k: v for k, v in config.items() if k in LoraConfig.__dataclass_fields__ and v is not None}
    fields.pop("peft_type", None)
    if isinstance(fields.get("target_modules"), list):
        fields["target_modules"] = set(fields["target_modules"])
    return LoraConfig(**fields)


def merge_loras(
    backbone: Backbone,
    loras: list[tuple[str | os.PathLike[str], float]],
    method: MergeMethod = "linear",
    *,
    density: float | None = None,
    svd_rank: int | None = None,
):  # -> peft.PeftModel
    """Load ``loras`` into ``backbone`` and make their weighted merge the active adapter ``"merged"``.

    Returns the ``PeftModel`` wrapping ``backbone.trainable`` (the backbone itself now predicts with
    the merged LoRA). ``density`` is the kept share for ties/dare; ``svd_rank`` the rank of svd merges.
    """
    from peft import PeftModel, set_peft_model_state_dict

    if not loras:
        raise ValueError("give at least one LoRA to merge")
    names = [f"lora{i}" for i in range(len(loras))]
    model: PeftModel | None = None
    for name, (path, _) in zip(names, loras, strict=True):
        state, config = read_lora(path)
        lora_config = _lora_config(config)
        if model is None:
            model = PeftModel(backbone.trainable, lora_config, adapter_name=name)
        else:
            model.add_adapter(name, lora_config)
        state = {f"base_model.model.{key}": value for key, value in state.items()}  # keys as PeftModel names them
        result = set_peft_model_state_dict(model, state, adapter_name=name)
        unexpected = [k for k in result.unexpected_keys if "lora_" in k]
        if unexpected:
            raise ValueError(f"{path}: LoRA keys that match no module of this backbone, e.g. {unexpected[:2]}")
    assert model is not None
    if method in ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"):
        ranks = {model.peft_config[n].r for n in names}
        if len(ranks) > 1:
            raise ValueError(f"{method} merging needs LoRAs of one rank, got ranks {sorted(ranks)}; use cat or svd")
    extra = {}
    if density is not None:
        extra["density"] = density
    if svd_rank is not None:
        extra["svd_rank"] = svd_rank
    model.add_weighted_adapter(
        names, [float(w) for _, w in loras], adapter_name=MERGED, combination_type=method, **extra
    )
    model.set_adapter(MERGED)
    return model


def merged_config(model) -> dict:
    """The merged adapter's LoRA config as a plain dict (what save_lora stores)."""
    return model.peft_config[MERGED].to_dict()


def load_fused(model: str | os.PathLike[str], lora: str | os.PathLike[str] | None = None) -> Backbone:
    """A backbone with ``lora`` (weight 1) baked into its weights: e.g. the SFT model DPO starts from."""
    from libragen.models import load_backbone

    backbone = load_backbone(model)
    return fuse_lora(backbone, lora) if lora is not None else backbone


def fuse_lora(backbone: Backbone, lora: str | os.PathLike[str]) -> Backbone:
    """``backbone`` with the LoRA folder ``lora`` baked into its weights at weight 1 (in place; returned)."""
    merge_loras(backbone, [(lora, 1.0)], "cat").merge_and_unload(adapter_names=[MERGED])
    return backbone


def write_merge(
    base: str | os.PathLike[str],
    loras: list[tuple[str | os.PathLike[str], float]],
    out: str | os.PathLike[str],
    method: MergeMethod = "cat",
    *,
    density: float | None = None,
    svd_rank: int | None = None,
    fuse: bool = False,
) -> Path:
    """Merge ``loras`` (path, weight) on ``base`` with peft and write ``out``: the merged LoRA folder, or with
    ``fuse`` the base model with it baked in (a full backbone folder)."""
    from libragen.models import load_backbone

    backbone = load_backbone(base)
    peft_model = merge_loras(backbone, loras, method, density=density, svd_rank=svd_rank)
    Path(out).mkdir(parents=True, exist_ok=True)
    if fuse:
        peft_model.merge_and_unload(adapter_names=[MERGED])
        backbone.save(out)
    else:
        backbone.save_lora(out, merged_config(peft_model), adapter_name=MERGED)
    return Path(out)
