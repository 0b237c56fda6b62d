"""Grow a trained LibraWorld backbone to a finer latent: the same transformer on tokens with more pixels each.

Why: the session-14 VGFM worked on 16 px latents (4x average pooling), where a subject's identity does not survive
(issue #8: real clips through those latents score subject consistency 0.588, at the wrong-identity level 0.573);
the shipped VGFM is that model grown to 32 px latents.
Training a 32 px model from scratch costs hours on 2 CPU cores. Growing keeps the token grid and every
transformer weight, and makes each token cover k x k times more latent pixels (k = old / new pooling factor):

* ``patch_in``: the new input weights are the old ones spread over each k x k block and divided by k², so
  the new model reads a fine token exactly as the old one read its pooled version;
* ``patch_out``: each old output value is copied to the k x k fine pixels it covers (nearest upsampling);
* when a grown token carries more values than the transformer's width, the output head (rank <= width) cannot
  reach every direction of a token, and those directions would keep their noise (on LibraWorld the 32 lowest-variance
  directions of a 192-value token hold 0.06 % of the data's variance, so a clean sample is ~0 there, yet an EDM skip
  connection alone leaves any unreached direction at std sigma_data = 0.5). Growing then adds
  ``transformer.skip_projection`` (zero at first): a full-rank map per token that the skip connection subtracts,
  so training can drop those directions.

Every backbone output is linear in the patch_out values and the noisy latent (x-, v- and EDM-preconditioned
forms alike), so right after growing, the fine model's prediction, average-pooled k x k, equals the coarse
model's prediction on the pooled input (tests/test_grow.py). Fine-tuning then only has to learn the detail
inside each block (and the noise level of pooled inputs, which is k x lower per pooled pixel).
"""

from __future__ import annotations

import torch

from libragen.models.libraworld import LibraWorldBackbone, LibraWorldBackboneConfig


def grown_config(config: LibraWorldBackboneConfig, latent_downsample: int) -> LibraWorldBackboneConfig:
    """``config`` at a finer ``latent_downsample`` with spatial patches grown so the token grid stays."""
    old = config.latent_downsample
    if latent_downsample >= old or old % latent_downsample:
        raise ValueError(f"can only grow to a finer latent that divides {old}, got {latent_downsample}")
    k = old // latent_downsample
    pt, ph, pw = config.patch
    values = 3 * pt * ph * pw * k * k  # per token after growing
    transformer = config.transformer.model_copy(
        update={"skip_projection": config.transformer.skip_projection or values > config.transformer.dim}
    )
    update = {"latent_downsample": latent_downsample, "patch": (pt, ph * k, pw * k), "transformer": transformer}
    return config.model_copy(update=update)


def is_grown_from(coarse: LibraWorldBackboneConfig, fine: LibraWorldBackboneConfig) -> bool:
    """Whether ``fine`` is ``coarse`` grown to a finer latent (:func:`grown_config`)."""
    if fine.latent_downsample >= coarse.latent_downsample or coarse.latent_downsample % fine.latent_downsample:
        return False
    return grown_config(coarse, fine.latent_downsample).model_dump() == fine.model_dump()


def grow_backbone(coarse: LibraWorldBackbone, latent_downsample: int) -> LibraWorldBackbone:
    """A new backbone at ``latent_downsample`` whose pooled predictions equal ``coarse``'s (module docstring)."""
    if coarse.upsampler is not None:
        raise ValueError("grow a backbone that decodes bilinearly (a learned decoder is trained for one latent size)")
    config = grown_config(coarse.config, latent_downsample)
    k = coarse.config.latent_downsample // latent_downsample
    fine = LibraWorldBackbone(config).to(coarse.device)
    state = {name: value.clone() for name, value in coarse.transformer.state_dict().items()}
    pt, ph, pw = coarse.config.patch
    channels = 3

    def spread(weight: torch.Tensor, axis: int) -> torch.Tensor:
        """Repeat the (c, pt, ph, pw) token layout along ``axis`` of ``weight`` k x k (nearest upsampling)."""
        shape = (*weight.shape[:axis], channels, pt, ph, pw, *weight.shape[axis + 1 :])
        grid = weight.reshape(shape)
        grid = grid.repeat_interleave(k, dim=axis + 2).repeat_interleave(k, dim=axis + 3)
        return grid.reshape(*weight.shape[:axis], -1, *weight.shape[axis + 1 :])

    state["patch_in.weight"] = spread(state["patch_in.weight"], 1) / k**2
    state["patch_out.weight"] = spread(state["patch_out.weight"], 0)
    state["patch_out.bias"] = spread(state["patch_out.bias"], 0)
    if "skip_projection.weight" in state:  # read the pooled token, copy the result to each k x k block
        state["skip_projection.weight"] = spread(spread(state["skip_projection.weight"], 0), 1) / k**2
    elif fine.transformer.skip_projection is not None:
        state["skip_projection.weight"] = fine.transformer.skip_projection.weight.detach().clone()  # zeros
    fine.transformer.load_state_dict(state)
    return fine
