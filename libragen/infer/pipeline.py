"""The Python API, diffusers style: ``LibraGenPipeline.from_pretrained(path)(prompt, references=[…])``.

Wraps any saved backbone (or a local diffusers Wan folder) with reference preparation, guidance and the
sampler, and returns uint8 frames. Bad input raises :class:`InvalidInput` (a ValueError) with a message
that says what to fix; ``libragen generate`` is a thin layer over this class.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from libragen.core.refs import prepare_reference
from libragen.infer.guidance import (
    DEFAULT_REF_SCALE,
    DEFAULT_TEXT_CFG,
    DEFAULT_TEXT_SCALE,
    DynamicCFG,
    ScheduleError,
    parse_schedule,
)
from libragen.infer.rephrase import Rephrased, Rephraser, describe_reference
from libragen.infer.sampler import Guidance, TextCFG, sample, to_uint8_frames
from libragen.models.backbone import Backbone, References

MAX_REFERENCES = 4
ImageLike = str | os.PathLike[str] | Image.Image | np.ndarray


class InvalidInput(ValueError):
    """A request the pipeline cannot run, with what to fix."""


@dataclass
class PipelineOutput:
    frames: list[np.ndarray]  # per prompt: (T, H, W, 3) uint8
    prompts: list[str]  # what the model read (the rephrased prompts when a rephraser ran)
    fps: float
    rephrased: list[Rephrased] | None = None  # both rephrasing stages per prompt, when a rephraser ran
    guidance: str = ""  # the guidance used (defaults resolved), e.g. "three-branch CFG: reference 3, text 3"


def load_image(image: ImageLike) -> np.ndarray:
    """A reference as an RGB uint8 array; missing or unreadable files raise :class:`InvalidInput`."""
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    path = Path(image)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such image")
    try:
        with Image.open(path) as opened:
            return np.asarray(opened.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise InvalidInput(f"{path}: not a readable image ({type(error).__name__})") from None


def make_guidance(
    guidance_scale: float | None = None,
    ref_scale: str | None = None,
    text_scale: str | None = None,
    with_refs: bool = False,
) -> Guidance:
    """The guidance a request asks for.

    A reference or text schedule: the three-branch time-dependent CFG (the missing scale is 1 for references, the
    text CFG scale for text). Otherwise text CFG at ``guidance_scale`` (0: none), or, with references and no scale
    at all, the measured default schedules (:data:`~libragen.infer.guidance.DEFAULT_REF_SCALE`, ``DEFAULT_TEXT_SCALE``).
    """
    if guidance_scale is not None and guidance_scale < 0:
        raise InvalidInput(f"guidance scale must be >= 0, got {guidance_scale}")
    if ref_scale is None and text_scale is None:
        if with_refs and guidance_scale is None:
            ref_scale, text_scale = DEFAULT_REF_SCALE, DEFAULT_TEXT_SCALE
        else:
            scale = DEFAULT_TEXT_CFG if guidance_scale is None else guidance_scale
            return TextCFG(scale) if scale > 0 else Guidance()
    text_default = str(DEFAULT_TEXT_CFG if guidance_scale is None else guidance_scale)
    try:
        return DynamicCFG(
            parse_schedule(ref_scale if ref_scale is not None else "1"),
            parse_schedule(text_scale if text_scale is not None else text_default),
        )
    except ScheduleError as error:
        raise InvalidInput(str(error)) from None


class LibraGenPipeline:
    """Subject-to-video generation from prompts and 0–4 reference images on one backbone."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone.eval()

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str] | None = None,
        device: str = "auto",
        lora: str | os.PathLike[str] | None = None,
        offload: bool | None = None,
    ) -> LibraGenPipeline:
        """A saved backbone folder or a local diffusers Wan folder, with ``lora`` (a LoRA folder) fused at weight 1;
        ``offload`` keeps a Wan model's text encoder and VAE on the CPU between uses (bf16 is automatic on CUDA).

        Default: the shipped LibraWorld VGFM with the shipped subject-to-video LoRA, when one ships.
        """
        from libragen.models import SHIPPED_S2V_LORA, SHIPPED_VGFM, load_backbone
        from libragen.train.merge import fuse_lora

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if path is None and lora is None and (SHIPPED_S2V_LORA / "lora.safetensors").is_file():
            lora = SHIPPED_S2V_LORA
        backbone = load_backbone(path or SHIPPED_VGFM, device=device, offload=offload)
        return cls(fuse_lora(backbone, lora) if lora is not None else backbone)

    def prepare_references(self, images: Sequence[ImageLike], orders: Sequence[Sequence[int]]) -> References:
        """The references of each video, the images in ``orders[k]`` order for video k."""
        if len(images) > MAX_REFERENCES:
            raise InvalidInput(f"{len(images)} reference images given; at most {MAX_REFERENCES}")
        size = self.backbone.video_size[-1]
        prepared = np.stack([prepare_reference(load_image(image), size=size) for image in images])
        tensor = torch.from_numpy(prepared).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        stacked = torch.stack([tensor[list(order)] for order in orders])
        with torch.no_grad():
            return self.backbone.encode_references(stacked.to(self.backbone.device))

    @staticmethod
    def rephrase(
        prompts: Sequence[str],
        rephraser: Rephraser,
        references: Sequence[ImageLike],
        reference_descriptions: Sequence[str] | None = None,
    ) -> list[Rephrased]:
        """Both rephrasing stages for each prompt; references are described from their pixels unless given."""
        if reference_descriptions is not None and len(reference_descriptions) != len(references):
            raise InvalidInput(
                f"{len(reference_descriptions)} reference descriptions for {len(references)} reference images"
            )
        descriptions = list(reference_descriptions or [describe_reference(load_image(r)) for r in references])
        return [rephraser(p, descriptions) for p in prompts]

    def __call__(
        self,
        prompt: str | Sequence[str],
        references: Sequence[ImageLike] | None = None,
        *,
        num_inference_steps: int = 30,
        guidance_scale: float | None = None,
        ref_scale: str | None = None,
        text_scale: str | None = None,
        seed: int = 0,
        rephraser: Rephraser | None = None,
        reference_descriptions: Sequence[str] | None = None,
    ) -> PipelineOutput:
        """One video per prompt (the same references for all); video k uses seed + k.

        With a ``rephraser`` each prompt goes through both rephrasing stages first and its references
        are passed in the order of its Ref tags; ``reference_descriptions`` (one per reference) help
        stage 1 tell the references apart (default: their dominant colour).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or any(not p.strip() for p in prompts):
            raise InvalidInput("empty prompt: describe the video to generate")
        if num_inference_steps <= 0:
            raise InvalidInput(f"steps must be positive, got {num_inference_steps}")
        references = list(references or [])
        guidance = make_guidance(guidance_scale, ref_scale, text_scale, with_refs=bool(references))
        if len(references) > MAX_REFERENCES:
            raise InvalidInput(f"{len(references)} reference images given; at most {MAX_REFERENCES}")
        references = [load_image(r) for r in references]  # decoded once, for rephrasing and for the model
        rephrased = None
        orders = [list(range(len(references)))] * len(prompts)
        if rephraser is not None:
            rephrased = self.rephrase(prompts, rephraser, references, reference_descriptions)
            prompts, orders = [r.final for r in rephrased], [r.reference_order for r in rephrased]
        refs = self.prepare_references(references, orders) if references else None
        videos = sample(
            self.backbone,
            prompts,
            refs=refs,
            steps=num_inference_steps,
            guidance=guidance,
            seed=[seed + k for k in range(len(prompts))],
        )
        return PipelineOutput(to_uint8_frames(videos), prompts, self.backbone.fps, rephrased, guidance.describe())
