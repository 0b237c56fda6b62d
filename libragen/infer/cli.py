"""``libragen generate``: sample videos from a saved backbone (text, optional reference images)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def generate(
    out: Annotated[Path, typer.Option(help="folder for the mp4s (each with a .json of its prompts and settings)")],
    prompt: Annotated[
        list[str] | None, typer.Option("--prompt", help="prompt; repeat for several videos (or use --jobs)")
    ] = None,
    jobs: Annotated[
        Path | None,
        typer.Option(
            help="JSONL batch: one job per line, {prompt, refs?, seed?, steps?, name?}; resumes; "
            "`accelerate launch -m libragen generate …` spreads the jobs over the GPUs"
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="saved backbone folder (default: the shipped LibraWorld VGFM + its S2V LoRA, once one ships)"
        ),
    ] = None,
    lora: Annotated[
        Path | None, typer.Option(help="LoRA folder (libragen train sft / merge) fused into --model at weight 1")
    ] = None,
    ref: Annotated[
        list[Path] | None, typer.Option("--ref", help="reference image (1-4), used for every prompt")
    ] = None,
    ref_desc: Annotated[
        list[str] | None,
        typer.Option("--ref-desc", help="what each --ref shows, in order (helps rephrasing tell them apart)"),
    ] = None,
    steps: Annotated[int, typer.Option(help="Euler steps")] = 30,
    guidance: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="text CFG scale (0: none; default 4, or with --ref and no scale/schedule the measured default "
            "three-branch schedules)",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the first video; video k uses seed + k")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 … (default: cuda when present)")] = "auto",
    offload: Annotated[
        bool,
        typer.Option(help="Wan: keep the text encoder and VAE on the CPU, on the GPU only while used (less memory)"),
    ] = False,
    ref_scale: Annotated[
        str | None,
        typer.Option(help="reference guidance schedule over t (1=noise): 5, linear:7.5:3, interval:5:0.4:1, 0:7.5,1:3"),
    ] = None,
    text_scale: Annotated[
        str | None, typer.Option(help="text guidance schedule (same forms); with --ref-scale: three-branch CFG")
    ] = None,
    rephrase: Annotated[
        str, typer.Option(help="prompt rephrasing: offline (rules + MiniLM retrieval), llm, or none")
    ] = "offline",
    captions: Annotated[
        Path | None, typer.Option(help="training captions for rephrasing (.txt/.jsonl/manifest; default LibraWorld)")
    ] = None,
    rephrase_endpoint: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL for --rephrase llm (key: $OPENAI_API_KEY)")
    ] = None,
    rephrase_model: Annotated[str | None, typer.Option(help="model name for --rephrase llm")] = None,
) -> None:
    """Generate one video per prompt with the Euler flow sampler (text CFG, or three-branch CFG with schedules).

    Prompts are rephrased in two stages first (Ref tags, then the training-caption style); the final
    prompt is printed and saved beside each video. ``--model`` takes a saved backbone or a local
    diffusers Wan2.1/2.2 folder (its native size).
    """
    from libragen.infer.batch import GenerationJob, JobError, read_jobs, run_jobs
    from libragen.infer.pipeline import InvalidInput
    from libragen.infer.rephrase import RephraseError, make_rephraser

    console = Console(stderr=True)
    if steps <= 0:
        raise typer.BadParameter(f"steps must be positive, got {steps}", param_hint="--steps")
    if (prompt is None) == (jobs is None):
        raise typer.BadParameter("give --prompt (repeatable) or --jobs FILE.jsonl, not both or neither")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".libragen-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise typer.BadParameter(f"{out}: cannot write there ({error.strerror})", param_hint="--out") from None
    try:
        if jobs is not None:
            todo = read_jobs(jobs, steps=steps, seed=seed)
        else:
            todo = [
                GenerationJob(p, [str(r) for r in ref or []], seed + k, steps, f"video{k:03d}", ref_desc)
                for k, p in enumerate(prompt or [])
            ]
        try:
            rephraser = make_rephraser(rephrase, captions, rephrase_endpoint, rephrase_model)
        except (ValueError, FileNotFoundError) as error:
            raise typer.BadParameter(str(error), param_hint="--rephrase/--captions") from None
        settings = dict(guidance_scale=guidance, ref_scale=ref_scale, text_scale=text_scale)
        if lora is not None and not (lora / "lora.safetensors").is_file():
            raise typer.BadParameter(f"{lora}: not a LoRA folder (no lora.safetensors)", param_hint="--lora")
        run_jobs(
            todo, out, model, device, rephraser, settings, console, resume=jobs is not None, lora=lora, offload=offload
        )
    except (InvalidInput, JobError, RephraseError) as error:
        raise typer.BadParameter(str(error)) from None


def demo(
    model: Annotated[Path | None, typer.Option(help="saved backbone or diffusers Wan folder")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 7860,
    host: Annotated[str, typer.Option(help="address to bind (0.0.0.0 to serve the network)")] = "127.0.0.1",
    out: Annotated[Path, typer.Option(help="folder for the generated videos")] = Path("runs/demo"),
    rephrase: Annotated[str, typer.Option(help="prompt rephrasing: offline or none")] = "offline",
) -> None:
    """Serve the web demo (Gradio): references + prompt -> video, and the prompt the model saw."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise typer.BadParameter("the demo needs Gradio: pip install gradio") from None
    from libragen.infer.demo import build_demo
    from libragen.infer.pipeline import LibraGenPipeline
    from libragen.infer.rephrase import make_rephraser

    rephraser = make_rephraser(rephrase)
    build_demo(LibraGenPipeline.from_pretrained(model), out, rephraser).launch(server_name=host, server_port=port)
