"""Flow-DPO: Diffusion-DPO for rectified flow, with the LoRA-free model as the reference.

For a preference pair sharing prompt and references, winner and loser are noised with the *same*
noise and timestep. With per-sample mean squared velocity errors ``e`` of the trained model θ and
of the reference model (θ with its LoRA switched off through peft):

    loss = −log σ( −β/2 · [ (e_θ(w) − e_ref(w)) − (e_θ(l) − e_ref(l)) ] )

β scale: errors here are *means* over latent elements, so β is in the hundreds to thousands
(diffusers' SD Diffusion-DPO uses 2500–5000); with sums β ≈ 1 would do. A β too small for the
reduction leaves the sigmoid flat at 0.5 (no signal), too large saturates it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field

from libragen.core.config import StrictModel
from libragen.models.backbone import Backbone, References
from libragen.train.flow import TimestepConfig, sample_timesteps, velocity_errors
from libragen.train.lora import adapters_disabled


class DPOSettings(StrictModel):
    """β of the sigmoid (per-sample mean errors) and the weight of an optional SFT term on winners."""

    beta: float = Field(2500.0, gt=0)
    sft_weight: float = Field(0.0, ge=0)


@dataclass
class PreferenceBatch:
    """Winner and loser clean latents (B, C, T, h, w) of the same prompts and references."""

    winners: torch.Tensor
    losers: torch.Tensor
    prompts: list[str]
    refs: References | None = None


def dpo_loss_from_errors(
    model_w: torch.Tensor, model_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean Diffusion-DPO loss and the per-sample logits ``−β/2 · [(θ_w − ref_w) − (θ_l − ref_l)]``."""
    logits = -0.5 * beta * ((model_w - ref_w) - (model_l - ref_l))
    return -F.logsigmoid(logits).mean(), logits


def flow_dpo_loss(
    backbone: Backbone,
    batch: PreferenceBatch,
    generator: torch.Generator,
    timesteps: TimestepConfig,
    settings: DPOSettings,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One Flow-DPO loss on ``batch`` (winner and loser in one forward), with reward accuracy and margin."""
    b = batch.winners.shape[0]
    t = sample_timesteps(b, timesteps, generator).to(batch.winners.device)
    noise = torch.randn(batch.winners.shape, generator=generator).to(batch.winners.device)
    clean = torch.cat([batch.winners, batch.losers])
    text = backbone.encode_text(batch.prompts * 2)
    refs = None
    if batch.refs is not None:
        refs = References(torch.cat([batch.refs.latents] * 2), torch.cat([batch.refs.mask] * 2))
    both_t, both_noise = torch.cat([t, t]), torch.cat([noise, noise])
    with torch.no_grad(), adapters_disabled(backbone.trainable):
        reference = velocity_errors(backbone, clean, text, both_t, both_noise, refs)
    model = velocity_errors(backbone, clean, text, both_t, both_noise, refs)
    loss, logits = dpo_loss_from_errors(model[:b], model[b:], reference[:b], reference[b:], settings.beta)
    if settings.sft_weight:
        loss = loss + settings.sft_weight * model[:b].mean()
    # implicit reward of a sample: how much more than the reference the model lowers its error
    margin = (reference[:b] - model[:b]) - (reference[b:] - model[b:])
    metrics = {
        "loss": float(loss.detach()),
        "reward_accuracy": float((logits.detach() > 0).float().mean()),
        "reward_margin": float(margin.detach().mean()),
    }
    return loss, metrics
