"""Word-contrast loss: make the denoiser's prediction depend on the prompt's direction (and colour) words.

Why: with the rectified-flow loss alone, the LibraWorld VGFM learns colour words but ignores direction words
(docs/results.md, issue #4, session 13): wherever the noisy video already shows where a subject is, it also shows
where it goes, so the word is worth almost nothing to the loss. This term asks for it directly. For part of the
batch the same noisy latents are denoised a second time with every direction word reversed ("to the left" <->
"to the right", "upward" <-> "downward", and the camera pan), and a hinge asks the true caption's error to be
lower than the reversed caption's by a relative ``margin`` (``reverse: one`` reverses one phrase drawn at random
instead, so with several subjects the word must go with the right subject):

    loss = weight * mean(relu(margin * sg(e_true) - (e_reversed - e_true)))

e = the per-sample velocity error at the sample's own noise and timestep. No target is made up: the reversed
caption is only pushed *away* from the real clip, the true caption toward it (a contrastive flow-matching
objective, cf. Stoica et al. 2025, with the negative chosen by the word instead of another batch item).
Samples whose timestep is below ``min_t`` are skipped: near the clean end the frames show the motion and no
word should change the prediction.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from libragen.core.config import StrictModel
from libragen.models.backbone import Backbone
from libragen.train.flow import velocity_errors
from libragen.world.caption import REVERSED_PHRASE, colour_phrases, direction_phrases
from libragen.world.identity import COLOUR_NAMES, with_article


class WordContrastConfig(StrictModel):
    """Settings of the word-contrast term (off unless given in a VGFM config)."""

    weight: float = Field(1.0, gt=0)
    margin: float = Field(0.1, gt=0)  # the reversed caption's error should exceed the true one's by this share
    min_t: float = Field(0.3, ge=0, lt=1)  # skip samples whose (mean) timestep is below this
    share: float = Field(0.5, gt=0, le=1)  # at most this share of the batch is denoised a second time
    start_step: int = Field(0, ge=0)  # off before this training step (a from-scratch run learns the scene first)
    # "all": every word changed together; "one": one word drawn at random per sample, so with several subjects
    # the negative differs from the truth in one subject only (which word goes with which subject)
    reverse: Literal["all", "one"] = "all"
    # which words are changed: "direction" reverses direction phrases and the camera pan, "colour" gives a subject
    # another colour
    words: list[Literal["direction", "colour"]] = Field(default_factory=lambda: ["direction"], min_length=1)


def contrast_prompt(
    prompt: str,
    how: Literal["all", "one"],
    generator: torch.Generator,
    words: list[Literal["direction", "colour"]] | tuple[str, ...] = ("direction",),
) -> str | None:
    """The contrast caption of ``prompt``: its ``words`` changed, all of them or one drawn at random (None when it
    has none to change)."""
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement)
    if "direction" in words:
        edits += [(m.start(), m.end(), REVERSED_PHRASE[m[0]]) for m in direction_phrases(prompt)]
    if "colour" in words:
        for m in colour_phrases(prompt):
            others = [c for c in COLOUR_NAMES if c != m[1]]
            other = others[int(torch.randint(len(others), (1,), generator=generator))]
            edits.append((m.start(), m.end(), with_article(other) + " "))
    if not edits:
        return None
    if how == "one":
        edits = [edits[int(torch.randint(len(edits), (1,), generator=generator))]]
    for start, end, replacement in sorted(edits, reverse=True):  # right to left: earlier offsets stay valid
        prompt = prompt[:start] + replacement + prompt[end:]
    return prompt


def word_contrast_loss(
    backbone: Backbone,
    clean: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    prompts: list[str],
    true_errors: torch.Tensor,
    config: WordContrastConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The hinge term over the eligible samples, and logs: how many took part and their mean relative gap
    (e_contrast - e_true) / e_true, a running measure of how much the model uses the words. ``generator`` draws
    the new colours and, when ``config.reverse`` is "one", which word is changed."""
    per_sample_t = t.flatten(1).mean(1) if t.dim() > 1 else t
    generator = generator or torch.Generator().manual_seed(0)
    contrast_prompts = [contrast_prompt(p, config.reverse, generator, config.words) for p in prompts]
    chosen = [i for i, c in enumerate(contrast_prompts) if c is not None and per_sample_t[i] >= config.min_t]
    chosen = chosen[: max(1, int(config.share * len(prompts)))]
    if not chosen:
        return true_errors.new_zeros(()), {"contrast_samples": 0.0}
    index = torch.tensor(chosen, device=clean.device)
    text = backbone.encode_text([contrast_prompts[i] for i in chosen])
    contrast_errors = velocity_errors(backbone, clean[index], text, t[index], noise[index])
    true = true_errors[index]
    gap = contrast_errors - true
    hinge = torch.relu(config.margin * true.detach() - gap)
    logs = {
        "contrast_samples": float(len(chosen)),
        "contrast_gap": float((gap.detach() / true.detach()).mean()),
        "contrast_hinge": float(hinge.detach().mean()),
    }
    return config.weight * hinge.mean(), logs
