"""Euler flow-matching sampler over any Backbone, with pluggable classifier-free guidance.

Steps come from diffusers' ``FlowMatchEulerDiscreteScheduler`` (same t convention as our training:
sigma = t, 1 = noise). A :class:`Guidance` names the condition branches it needs and combines their
velocities at each step, so static text CFG, the three-branch reference/text CFG and time-dependent
schedules (the inference issue) all plug into the same loop. Reference keys/values are computed once
per sampling run when the backbone supports caching.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from libragen.models.backbone import Backbone, References, TextBatch, time_like

#: A branch is (use_text, use_refs); velocities of all branches at one step -> the guided velocity.
Branch = tuple[bool, bool]


class Guidance:
    """No guidance: only the fully conditioned branch."""

    branches: tuple[Branch, ...] = ((True, True),)

    def branches_at(self, t: float) -> tuple[Branch, ...]:
        """The branches :meth:`combine` needs at ``t`` (time-dependent guidance may skip some)."""
        return self.branches

    def combine(self, t: float, velocities: dict[Branch, torch.Tensor]) -> torch.Tensor:
        return velocities[(True, True)]

    def describe(self) -> str:
        """One line saying what this guidance is (saved beside generated videos)."""
        return "no guidance"


@dataclass
class TextCFG(Guidance):
    """Classic CFG on the text: v = v(∅) + s · (v(T) − v(∅)); references (if any) stay in both branches."""

    scale: float = 5.0

    @property
    def branches(self) -> tuple[Branch, ...]:  # type: ignore[override]
        return ((True, True), (False, True))

    def describe(self) -> str:
        return f"text CFG {self.scale:g}"

    def combine(self, t: float, velocities: dict[Branch, torch.Tensor]) -> torch.Tensor:
        uncond = velocities[(False, True)]
        return uncond + self.scale * (velocities[(True, True)] - uncond)


@torch.no_grad()
def sample(
    backbone: Backbone,
    prompts: list[str],
    *,
    refs: References | None = None,
    steps: int = 30,
    guidance: Guidance | None = None,
    seed: int | list[int] = 0,
    shift: float | None = None,
    ref_offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    noise: torch.Tensor | None = None,
    on_step: Callable[[int], None] | None = None,
    batch_branches: bool = True,
    stagger: float = 0.0,
) -> torch.Tensor:
    """Generate videos (B, T, 3, H, W) in [-1, 1] for ``prompts``.

    ``shift`` defaults to ``backbone.sampling_shift``. ``seed`` is one seed for the batch or one per
    prompt (a prompt's video then does not depend on what it is batched with); ``noise`` overrides both
    (Consis-DPO reuses one noise for two runs). Each step runs only the branches the guidance needs at
    that t, all in one forward (``batch_branches``; off: one forward per branch, the naive loop).
    ``stagger`` > 0 denoises the backbone's frame groups one after another, overlapping (Diffusion
    Forcing's pyramid schedule, :func:`staggered_timesteps`), for models trained with per-group timesteps.
    """
    if stagger > 0:
        options = {"refs": refs, "steps": steps, "guidance": guidance, "seed": seed, "shift": shift}
        options |= {"ref_offset": ref_offset, "noise": noise, "on_step": on_step}
        return _sample_staggered(backbone, prompts, stagger=stagger, **options)
    guidance, x, texts = _start(backbone, prompts, guidance, seed, noise)
    device, b = x.device, len(prompts)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=backbone.sampling_shift if shift is None else shift)
    scheduler.set_timesteps(steps, device=device)
    caches: dict[tuple[Branch, ...], object] = {}
    for i, timestep in enumerate(scheduler.timesteps):
        t = scheduler.sigmas[i].item()
        branches = guidance.branches_at(t)
        if batch_branches:
            if branches not in caches:  # stacked inputs and reference cache, once per branch set
                caches[branches] = _branch_inputs(backbone, branches, texts, refs, ref_offset)
            velocities = _batched_velocities(backbone, x, t, branches, ref_offset, caches[branches])
        else:
            if () not in caches:
                caches[()] = backbone.reference_cache(refs, ref_offset) if refs is not None else None
            velocities = {
                branch: backbone.predict_velocity(
                    x,
                    torch.full((b,), t, device=device),
                    texts[branch[0]],
                    refs if branch[1] else None,
                    ref_offset=ref_offset,
                    ref_cache=caches[()] if branch[1] else None,
                )
                for branch in branches
            }
        x = scheduler.step(guidance.combine(t, velocities), timestep, x).prev_sample
        if on_step is not None:
            on_step(i + 1)
    return backbone.decode_video(x)


def _start(
    backbone: Backbone,
    prompts: list[str],
    guidance: Guidance | None,
    seed: int | list[int],
    noise: torch.Tensor | None,
) -> tuple[Guidance, torch.Tensor, dict[bool, TextBatch]]:
    """What every sampling loop starts from: the guidance, the initial noise and the (un)conditional text."""
    b = len(prompts)
    if noise is None:
        seeds = seed if isinstance(seed, list) else [seed * 100_003 + i for i in range(b)]
        if len(seeds) != b:
            raise ValueError(f"{len(seeds)} seeds for {b} prompts")
        shape = backbone.latent_shape
        noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    texts = {True: backbone.encode_text(prompts), False: backbone.encode_text([""] * b)}
    return guidance or Guidance(), noise.to(backbone.device), texts


def staggered_timesteps(steps: int, groups: int, stagger: float, shift: float = 1.0) -> torch.Tensor:
    """(steps + 1, groups) timesteps of a pyramid schedule: frame group g trails group g - 1 by ``stagger``.

    A global level falls linearly from 1 + (groups - 1) * stagger to 0; group g sits at the level minus
    (groups - 1 - g) * stagger, clipped to [0, 1], then shifted like the uniform schedule. So the first group
    is denoised first and waits clean while later groups, still noisier, are continued from it; every group
    starts at 1 and ends at 0, and ``stagger`` 0 is the ordinary schedule.
    """
    if steps <= 0 or groups <= 0 or stagger < 0:
        raise ValueError(f"steps {steps} and groups {groups} must be positive, stagger {stagger} >= 0")
    level = torch.linspace(1 + (groups - 1) * stagger, 0, steps + 1, dtype=torch.float64)
    lag = (groups - 1 - torch.arange(groups, dtype=torch.float64)) * stagger
    t = (level[:, None] - lag[None]).clamp(0, 1)
    return (shift * t / (1 + (shift - 1) * t)).float()


def _sample_staggered(
    backbone: Backbone,
    prompts: list[str],
    *,
    refs: References | None,
    steps: int,
    guidance: Guidance | None,
    seed: int | list[int],
    shift: float | None,
    ref_offset: tuple[float, float, float],
    noise: torch.Tensor | None,
    on_step: Callable[[int], None] | None,
    stagger: float,
) -> torch.Tensor:
    """Euler steps with one timestep per frame group (see :func:`staggered_timesteps`)."""
    groups = backbone.frame_groups
    if not groups:
        raise ValueError(f"{type(backbone).__name__} takes one timestep per video; it cannot sample staggered")
    guidance, x, texts = _start(backbone, prompts, guidance, seed, noise)
    device, b = x.device, len(prompts)
    schedule = staggered_timesteps(steps, groups, stagger, backbone.sampling_shift if shift is None else shift)
    caches: dict[tuple[Branch, ...], object] = {}
    for i in range(steps):
        now, after = schedule[i].to(device), schedule[i + 1].to(device)
        t = now.mean().item()  # time-dependent guidance reads the mean level
        branches = guidance.branches_at(t)
        if branches not in caches:
            caches[branches] = _branch_inputs(backbone, branches, texts, refs, ref_offset)
        velocities = _batched_velocities(backbone, x, now.expand(b, groups), branches, ref_offset, caches[branches])
        step = time_like((after - now).expand(b, groups), x)
        x = torch.where(step == 0, x, x + step * guidance.combine(t, velocities))  # finished groups stay as they are
        if on_step is not None:
            on_step(i + 1)
    return backbone.decode_video(x)


def _stacked_text(parts: list[TextBatch]) -> TextBatch:
    """Text batches of possibly different lengths -> one batch, padded (mask False) to the longest."""
    longest = max(p.tokens.shape[1] for p in parts)
    tokens, masks = [], []
    for part in parts:
        pad = longest - part.tokens.shape[1]
        tokens.append(torch.nn.functional.pad(part.tokens, (0, 0, 0, pad)))
        masks.append(torch.nn.functional.pad(part.mask, (0, pad), value=False))
    return TextBatch(torch.cat(tokens), torch.cat(masks))


def _stacked_refs(branches: tuple[Branch, ...], refs: References | None) -> References | None:
    """References repeated per branch; branches without references get them masked out."""
    if refs is None:
        return None
    masks = [refs.mask if use_refs else torch.zeros_like(refs.mask) for _, use_refs in branches]
    return References(torch.cat([refs.latents] * len(branches)), torch.cat(masks))


@dataclass
class _BranchInputs:
    """The conditions of a set of branches stacked along the batch, with their reference cache."""

    text: TextBatch
    refs: References | None
    ref_cache: object | None


def _branch_inputs(
    backbone: Backbone,
    branches: tuple[Branch, ...],
    texts: dict[bool, TextBatch],
    refs: References | None,
    ref_offset: tuple[float, float, float],
) -> _BranchInputs:
    stacked = _stacked_refs(branches, refs)
    cache = backbone.reference_cache(stacked, ref_offset) if stacked is not None else None
    return _BranchInputs(_stacked_text([texts[use_text] for use_text, _ in branches]), stacked, cache)


def _batched_velocities(
    backbone: Backbone,
    x: torch.Tensor,
    t: float | torch.Tensor,
    branches: tuple[Branch, ...],
    ref_offset: tuple[float, float, float],
    inputs: _BranchInputs,
) -> dict[Branch, torch.Tensor]:
    """Every branch's velocity from one forward over the branches stacked along the batch.

    ``t`` is one timestep for all, or a (B, groups) tensor of per-frame-group timesteps.
    """
    n, b = len(branches), x.shape[0]
    timesteps = torch.cat([t] * n) if isinstance(t, torch.Tensor) else torch.full((n * b,), t, device=x.device)
    out = backbone.predict_velocity(
        torch.cat([x] * n),
        timesteps,
        inputs.text,
        None if inputs.ref_cache is not None else inputs.refs,
        ref_offset=ref_offset,
        ref_cache=inputs.ref_cache,
    )
    return dict(zip(branches, out.split(b), strict=True))


def to_uint8_frames(video: torch.Tensor) -> list:
    """(B, T, 3, H, W) in [-1, 1] -> list of (T, H, W, 3) uint8 arrays."""
    frames = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2)
    return [f.cpu().numpy() for f in frames]
