"""Does a text-to-video model's denoiser use the direction word? (a cheap forward-only check for issue #4)

For single-subject held-out clips that move left/right/up/down, the real clip is noised and the model's clean
estimate of frames 5-16 is compared with the truth, once with the true caption and once with the direction word
flipped ("to the left" <-> "to the right", "upward" <-> "downward"), same noise. A model that uses the word
predicts the later frames better with the true caption. Two noise settings: one shared t for all frames, and
(for models with per-frame-group timesteps) a nearly clean first group with the later groups at high noise —
continuing a visible subject, where the direction decides where it goes. ``--word colour`` changes the subject's
colour word instead: the same measurement for a word the models do use, as a yardstick.

    python benchmarks/vgfm_direction_use.py --model runs/vgfm/final --world /tmp/probe_data/heldout --n 40
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from libragen.core.video import read_video
from libragen.eval.generation import heldout_prompts
from libragen.models import load_backbone
from libragen.models.backbone import time_like
from libragen.train.flow import noisy_latents
from libragen.world.caption import reverse_directions
from libragen.world.identity import COLOUR_NAMES

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, report


def flipped(prompt: str) -> str | None:
    """The prompt with its subject's direction phrase reversed (the camera pan kept), or None when it has none."""
    return reverse_directions(prompt, pans=False)


def recoloured(prompt: str) -> str:
    """The prompt with its (first) subject's colour word replaced by another colour: the comparison for a word
    the model is known to use."""
    words = prompt.split(" ", 2)  # "a red ...", "an orange ..."
    if len(words) == 3 and words[1] in COLOUR_NAMES:
        other = COLOUR_NAMES[(COLOUR_NAMES.index(words[1]) + 3) % len(COLOUR_NAMES)]
        return f"{words[0]} {other} {words[2]}"  # the article may now be off ("an red"); the colour word is what counts
    raise ValueError(f"no leading colour word in {prompt!r}")


def single_subject_moving(world: str, n: int) -> list[tuple[str, Path]]:
    """Held-out prompts naming one subject and one direction phrase."""
    items = [(p, path) for p, path in heldout_prompts(world) if " and " not in p.split(" on ")[0] and flipped(p)]
    return items[:n]


@torch.no_grad()
def later_frame_errors(
    backbone, items, timesteps: list[float], seed: int = 0, change=flipped
) -> dict[str, list[float]]:
    """Clean-estimate MSE of the frames after the first group, true vs changed (``change``) prompt, per clip."""
    generator = torch.Generator().manual_seed(seed)
    errors: dict[str, list[float]] = {"true": [], "flipped": []}
    for prompt, path in items:
        video = torch.from_numpy(read_video(path)).permute(0, 3, 1, 2).float()[None] / 127.5 - 1
        clean = backbone.encode_video(video.to(backbone.device))
        noise = torch.randn(clean.shape, generator=generator).to(clean.device)
        t = torch.tensor([timesteps], device=clean.device)
        if len(timesteps) == 1:
            t = t[:, 0]
        x_t = noisy_latents(clean, noise, t)
        first_group = clean.shape[2] // (len(timesteps) if len(timesteps) > 1 else backbone.frame_groups or 1)
        for name, text in (("true", prompt), ("flipped", change(prompt))):
            velocity = backbone.predict_velocity(x_t, t, backbone.encode_text([text]))
            estimate = x_t - time_like(t, x_t) * velocity
            errors[name].append((estimate - clean)[:, :, first_group:].pow(2).mean().item())
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--world", required=True, help="held-out LibraWorld folder (world make --split heldout)")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument(
        "--word", choices=["direction", "colour"], default="direction", help="which word to change (colour: control)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the result to this JSON file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.model).eval()
    items = single_subject_moving(args.world, args.n)
    settings = {"shared t = 0.6": [0.6]}
    if backbone.frame_groups:
        settings["first group t = 0.1, later groups t = 0.9"] = [0.1] + [0.9] * (backbone.frame_groups - 1)
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": describe(),
        "model": args.model,
        "clips": len(items),
    }
    for name, timesteps in settings.items():
        errors = later_frame_errors(
            backbone, items, timesteps, change=flipped if args.word == "direction" else recoloured
        )
        true, flip = np.array(errors["true"]), np.array(errors["flipped"])
        result[name] = {
            "changed_word": args.word,
            "mse_true_prompt": float(true.mean()),
            "mse_changed_prompt": float(flip.mean()),
            "relative_gain": float((flip.mean() - true.mean()) / flip.mean()),
            "share_true_better": float(np.mean(true < flip)),
        }
    report(result, args.out)


if __name__ == "__main__":
    main()
