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
    """Generate one video per prompt with the Euler flow sampler (text CFG, or three-branch CFG with schedules).

    ``--model`` takes a saved backbone or a local diffusers Wan2.1/2.2 folder (its native size).
    """
    from libragen.core.video import write_video
    from libragen.infer.pipeline import InvalidInput, LibraGenPipeline

    console = Console(stderr=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".libragen-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise typer.BadParameter(f"{out}: cannot write there ({error.strerror})", param_hint="--out") from None
    pipeline = LibraGenPipeline.from_pretrained(model, device=device)
    try:
        with console.status(f"sampling {len(prompt)} video(s), {steps} steps"):
            result = pipeline(
                list(prompt),
                ref or None,
                num_inference_steps=steps,
                guidance_scale=guidance,
                ref_scale=ref_scale,
                text_scale=text_scale,
                seed=seed,
            )
    except InvalidInput as error:
        raise typer.BadParameter(str(error)) from None
    for k, frames in enumerate(result.frames):
        path = write_video(out / f"video{k:03d}.mp4", frames, result.fps)
        console.print(f"{path}  <- {result.prompts[k]}")


def demo(
    model: Annotated[Path | None, typer.Option(help="saved backbone or diffusers Wan folder")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 7860,
    host: Annotated[str, typer.Option(help="address to bind (0.0.0.0 to serve the network)")] = "127.0.0.1",
    out: Annotated[Path, typer.Option(help="folder for the generated videos")] = Path("runs/demo"),
) -> None:
    """Serve the web demo (Gradio): references + prompt -> video, and the prompt the model saw."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise typer.BadParameter("the demo needs Gradio: pip install gradio") from None
    from libragen.infer.demo import build_demo
    from libragen.infer.pipeline import LibraGenPipeline

    build_demo(LibraGenPipeline.from_pretrained(model), out).launch(server_name=host, server_port=port)
