"""Web demo: upload reference images, type a prompt, get the video and the exact prompt the model saw.

The work is done by :func:`demo_handler`, a plain function (tested without a browser); :func:`build_demo`
wraps it in a Gradio UI when Gradio is installed (``pip install gradio``), and ``libragen demo`` serves it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from libragen.core.video import write_video
from libragen.infer.pipeline import ImageLike, LibraGenPipeline
from libragen.infer.rephrase import Rephraser


def demo_handler(
    pipeline: LibraGenPipeline,
    prompt: str,
    references: Sequence[ImageLike] | None,
    *,
    steps: int = 30,
    guidance: float | None = None,
    ref_scale: str = "",
    text_scale: str = "",
    seed: int = 0,
    out_dir: str | os.PathLike[str] = "runs/demo",
    rephraser: Rephraser | None = None,
) -> tuple[str, str]:
    """(the prompt the model was given, path of the mp4); bad input raises ``InvalidInput``.

    With a ``rephraser`` the prompt goes through both rephrasing stages, and the first value shows
    both: the Ref-tagged description, then the final caption-style prompt.
    """
    result = pipeline(
        prompt,
        [r for r in references or [] if r is not None] or None,
        num_inference_steps=int(steps),
        guidance_scale=None if guidance is None else float(guidance),
        ref_scale=ref_scale.strip() or None,
        text_scale=text_scale.strip() or None,
        seed=int(seed),
        rephraser=rephraser,
    )
    folder = Path(out_dir)
    path = write_video(folder / f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{seed}.mp4", result.frames[0], result.fps)
    if result.rephrased:
        return f"stage 1: {result.rephrased[0].tagged}\nfinal: {result.prompts[0]}", str(path)
    return result.prompts[0], str(path)


def build_demo(
    pipeline: LibraGenPipeline, out_dir: str | os.PathLike[str] = "runs/demo", rephraser: Rephraser | None = None
):  # -> gradio.Blocks
    """The Gradio UI around :func:`demo_handler` (needs ``pip install gradio``)."""
    import gradio as gr

    from libragen.infer.pipeline import InvalidInput

    def run(prompt, files, steps, guidance, ref_scale, text_scale, seed):
        try:
            return demo_handler(
                pipeline,
                prompt,
                [f if isinstance(f, str) else f.name for f in files or []],
                steps=steps,
                guidance=guidance,
                ref_scale=ref_scale,
                text_scale=text_scale,
                rephraser=rephraser,
                seed=seed,
                out_dir=out_dir,
            )
        except InvalidInput as error:
            raise gr.Error(str(error)) from None

    with gr.Blocks(title="LibraGen") as demo:
        gr.Markdown("# LibraGen: subject-to-video\nUpload 1–4 reference images, describe the video.")
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="prompt", placeholder="Ref 1[a red round creature] hops to the left.")
                files = gr.File(label="reference images", file_count="multiple", file_types=["image"])
                steps = gr.Slider(1, 100, value=30, step=1, label="steps")
                guidance = gr.Number(value=None, minimum=0, label="text CFG scale (empty: the measured default)")
                ref_scale = gr.Textbox(label="reference scale schedule (e.g. interval:3:0.6:1)")
                text_scale = gr.Textbox(label="text scale schedule (e.g. 0:4,1:6)")
                seed = gr.Number(value=0, precision=0, label="seed")
                button = gr.Button("generate")
            with gr.Column():
                final_prompt = gr.Textbox(label="rephrased prompt (Ref-tagged, final)", interactive=False)
                video = gr.Video(label="video")
        button.click(run, [prompt, files, steps, guidance, ref_scale, text_scale, seed], [final_prompt, video])
    return demo
