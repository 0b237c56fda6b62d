"""LoRA on any backbone through peft: settings, injection, switching adapters off, saving.

Trainers call these with a :class:`~libragen.models.backbone.Backbone` and never look at its type:
the default target modules come from ``backbone.lora_targets``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pydantic import Field
from torch import nn

from libragen.core.config import StrictModel
from libragen.models.backbone import Backbone


class LoraSettings(StrictModel):
    """Rank, scale and target modules of a LoRA (targets default to the backbone's ``lora_targets``)."""

    rank: int = Field(16, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[str] | None = None

    def peft_config(self, backbone: Backbone):  # -> peft.LoraConfig
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.targets or list(backbone.lora_targets),
        )


def add_lora(backbone: Backbone, settings: LoraSettings, adapter_name: str = "default") -> dict:
    """Inject a fresh LoRA (B = 0, so the model is unchanged) into ``backbone.trainable``; freezes the rest.

    Returns the LoRA config as a plain dict (what :meth:`Backbone.save_lora` stores beside the weights).
    """
    from peft import inject_adapter_in_model

    config = settings.peft_config(backbone)
    inject_adapter_in_model(config, backbone.trainable, adapter_name=adapter_name)
    return config.to_dict()


def prepare_lora_training(backbone: Backbone, settings: LoraSettings, checkpointing: float = 0.0) -> dict:
    """Freeze the backbone, add a fresh LoRA, and optionally checkpoint that share of its blocks."""
    for param in backbone.trainable.parameters():
        param.requires_grad_(False)
    config = add_lora(backbone, settings)
    if checkpointing:
        backbone.enable_gradient_checkpointing(checkpointing)
    return config


def lora_layers(module: nn.Module) -> list[nn.Module]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


@contextlib.contextmanager
def adapters_disabled(module: nn.Module) -> Iterator[None]:
    """The model without its LoRA (peft's adapter switch): DPO's reference model, no second copy.

    Which parameters require grad is restored afterwards exactly as it was.
    """
    layers = lora_layers(module)
    if not layers:
        raise ValueError("the model has no LoRA adapters to disable")
    flags = {id(p): p.requires_grad for layer in layers for p in layer.parameters()}
    enabled = [not layer.disable_adapters for layer in layers]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer, was_enabled in zip(layers, enabled, strict=True):
            layer.enable_adapters(was_enabled)
        for layer in layers:
            for p in layer.parameters():
                p.requires_grad_(flags[id(p)])
