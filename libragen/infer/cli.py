"""``libragen generate``: sample videos from a saved backbone (text, optional reference images)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def generate(
    prompt: Annotated[list[str], typer.Option("--prompt", help="prompt; repeat for several videos")],
    out: Annotated[Path, typer.Option(help="folder for the mp4s")],
    model: Annotated[
        Path | None, typer.Option(help="saved backbone folder (default: the shipped LibraWorld VGFM, once one ships)")
    ] = None,
    ref: Annotated[
        list[Path] | None, typer.Option("--ref", help="reference image (1-4), used for every prompt")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Euler steps")] = 30,
    guidance: Annotated[float, typer.Option(min=0.0, help="text CFG scale (0: no guidance)")] = 4.0,
    seed: Annotated[int, typer.Option(help="seed of the first video; video k uses seed + k")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 … (default: cuda when present)")] = "auto",
    ref_scale: Annotated[
        str | None,
        typer.Option(help="reference guidance schedule over t (1=noise): 5, linear:7.5:3, interval:5:0.4:1, 0:7.5,1:3"),
    ] = None,
    text_scale: Annotated[
        str | None, typer.Option(help="text guidance schedule (same forms); with --ref-scale: three-branch CFG")
    ] = None,
) -> None:
    """Generate one video per prompt with the Euler flow sampler and text CFG.

    ``--model`` takes a saved backbone or a local diffusers Wan2.1/2.2 folder (its native size).
    """
    import numpy as np
    import torch
    from PIL import Image

    from libragen.core.refs import prepare_reference
    from libragen.core.video import write_video
    from libragen.infer.sampler import Guidance, TextCFG, sample, to_uint8_frames
    from libragen.models import SHIPPED_VGFM, load_backbone

    console = Console(stderr=True)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    backbone = load_backbone(model or SHIPPED_VGFM, device=device).eval()
    refs = None
    if ref:
        if len(ref) > 4:
            raise typer.BadParameter("at most 4 reference images", param_hint="--ref")
        size = backbone.video_size[-1]
        images = []
        for path in ref:
            if not path.is_file():
                raise typer.BadParameter(f"{path}: no such image", param_hint="--ref")
            images.append(prepare_reference(np.asarray(Image.open(path).convert("RGB")), size=size))
        tensor = (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0).to(backbone.device)
        refs = backbone.encode_references(tensor[None].expand(len(prompt), -1, -1, -1, -1))
    guide = TextCFG(guidance) if guidance > 0 else Guidance()
    if ref_scale is not None or text_scale is not None:
        from libragen.infer.guidance import DynamicCFG, ScheduleError, parse_schedule

        try:
            ref_schedule = parse_schedule(ref_scale if ref_scale is not None else "1")
            text_schedule = parse_schedule(text_scale if text_scale is not None else str(guidance))
        except ScheduleError as error:
            raise typer.BadParameter(str(error), param_hint="--ref-scale / --text-scale") from None
        guide = DynamicCFG(ref_schedule, text_schedule)
    with console.status(f"sampling {len(prompt)} video(s), {steps} steps"):
        videos = sample(
            backbone, list(prompt), refs=refs, steps=steps, guidance=guide, seed=[seed + k for k in range(len(prompt))]
        )
    for k, frames in enumerate(to_uint8_frames(videos)):
        path = write_video(out / f"video{k:03d}.mp4", frames, backbone.fps)
        console.print(f"{path}  <- {prompt[k]}")
