"""Backbones: the :class:`Backbone` interface, the LibraWorld MM-DiT, and (issue #12) Wan through diffusers.

:func:`load_backbone` restores any saved backbone from its folder (``backbone.json`` names the kind).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from libragen.models.backbone import Backbone, References, TextBatch

__all__ = ["SHIPPED_S2V_LORA", "SHIPPED_VGFM", "Backbone", "References", "TextBatch", "load_backbone"]

#: The LibraWorld VGFM checkpoint shipped in the repository (see its README.md).
SHIPPED_VGFM = Path(__file__).parent / "weights" / "vgfm"
#: The subject-to-video LoRA shipped for it (the merged SFT LoRA; fused when no model is named).
SHIPPED_S2V_LORA = Path(__file__).parent / "weights" / "s2v_lora"


def load_backbone(path: str | os.PathLike[str], device: str = "cpu", offload: bool | None = None) -> Backbone:
    """Load a saved backbone folder, or a local diffusers Wan folder; a clear error for anything else.

    On a CUDA device a Wan model loads in bfloat16, elsewhere in float32; ``offload`` (Wan only; the LibraWorld
    model is small enough to stay whole) keeps the text encoder and VAE on the CPU between uses.
    """
    folder = Path(path)
    meta_path = folder / "backbone.json"
    index_path = folder / "model_index.json"
    if meta_path.is_file():
        kind = json.loads(meta_path.read_text()).get("kind")
    elif index_path.is_file() and json.loads(index_path.read_text()).get("_class_name", "").startswith("Wan"):
        kind = "wan"
    else:
        raise FileNotFoundError(f"{folder}: not a saved backbone (no backbone.json) nor a diffusers Wan folder")
    if kind == "libraworld":
        from libragen.models.libraworld import LibraWorldBackbone

        return LibraWorldBackbone.load(folder).to(device)
    if kind == "wan":
        import torch

        from libragen.models.wan import WanBackbone

        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        return WanBackbone.from_pretrained(folder, device=device, dtype=dtype, offload=offload)
    raise ValueError(f"{folder}: unknown backbone kind {kind!r}")
