"""Pre-training the LibraWorld video foundation model (VGFM): text-to-video, no references.

Data: LibraWorld folders (mp4 + manifest). Clips are decoded once into memory (8000 clips of
16x64x64 are 1.5 GB). Prompts are the clips' captions with the Ref tags removed ("a red round creature
hops quickly to the left on a brick wall."), dropped to "" at ``text_dropout`` for classifier-free
guidance. ``init_from`` continues from a saved backbone instead of random weights, and ``word_contrast``
adds the word-contrast term of ``libragen.train.contrast``. With ``foreground_weight`` λ > 0 the loss
weighs each latent position by ``1 + λ · subject coverage`` (from the manifest's ground-truth masks), so
the small subjects, not the textured backgrounds, dominate what the model learns first. The run folder gets
checkpoints, metrics, TensorBoard logs, samples, the final backbone (EMA weights) under ``final/`` and the
loss curve as ``loss.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from rich.console import Console

from libragen.core.config import StrictModel
from libragen.core.progress import progress_bar
from libragen.core.video import read_video
from libragen.infer.sampler import TextCFG, sample, to_uint8_frames
from libragen.models.backbone import Backbone
from libragen.models.grow import grow_backbone, is_grown_from
from libragen.models.libraworld import LibraWorldBackbone, LibraWorldBackboneConfig
from libragen.train.contrast import WordContrastConfig, word_contrast_loss
from libragen.train.flow import TimestepConfig, draw_timesteps_and_noise, velocity_errors
from libragen.train.loop import LoopConfig, LoopResult, TrainingLoop, start_run
from libragen.train.plots import plot_loss
from libragen.world.caption import plain_caption
from libragen.world.manifest import decode_masks, read_manifest


class SamplingConfig(StrictModel):
    steps: int = Field(30, ge=1)
    guidance: float = Field(4.0, ge=0)
    shift: float | None = Field(None, gt=0)  # None: the backbone's own (1 for LibraWorld, Wan's flow_shift)


class VGFMConfig(StrictModel):
    """Everything a VGFM run needs; ``data`` are LibraWorld folders made by ``libragen world make``."""

    data: list[str] = Field(min_length=1)
    max_clips: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    text_dropout: float = Field(0.1, ge=0, le=1)
    foreground_weight: float = Field(0.0, ge=0)  # λ: loss weight 1 + λ · subject coverage per latent position
    word_contrast: WordContrastConfig | None = None  # ask the prediction to depend on the direction words
    init_from: str | None = None  # a saved backbone folder (same backbone config) to start from instead of random
    backbone: LibraWorldBackboneConfig = LibraWorldBackboneConfig()
    timesteps: TimestepConfig = TimestepConfig()
    loop: LoopConfig = LoopConfig()
    sampling: SamplingConfig = SamplingConfig()
    sample_prompts: list[str] = Field(default_factory=list)


class ClipBank:
    """Decoded clips (N, T, H, W, 3) uint8 and their plain captions."""

    def __init__(self, frames: np.ndarray, captions: list[str], subject_masks: np.ndarray | None = None) -> None:
        if len(frames) != len(captions):
            raise ValueError("one caption per clip")
        if len(frames) == 0:
            raise ValueError("no usable clips")
        if subject_masks is not None and subject_masks.shape[0] != len(frames):
            raise ValueError("one subject mask per clip")
        self.frames = frames
        self.captions = captions
        self.subject_masks = subject_masks  # (N, bytes) bit-packed (T, H, W) union of the subjects' masks

    @classmethod
    def from_worlds(
        cls,
        folders: list[str | os.PathLike[str]],
        size: tuple[int, int, int],
        max_clips: int | None = None,
        console: Console | None = None,
        with_masks: bool = False,
    ) -> ClipBank:
        """Load defect-free clips of ``size`` (frames, height, width) from LibraWorld folders.

        ``with_masks`` also keeps each clip's subject masks (the union over subjects, bit-packed).
        """
        rows = []
        for folder in folders:
            manifest = Path(folder) / "manifest.parquet"
            if not manifest.is_file():
                raise FileNotFoundError(f"{folder}: no manifest.parquet (make one with `libragen world make`)")
            rows += [(Path(folder), r) for r in read_manifest(manifest) if not r.get("defect")]
        rows = rows[:max_clips] if max_clips else rows
        frames = np.zeros((len(rows), *size, 3), dtype=np.uint8)
        captions = []
        masks = np.zeros((len(rows), -(-int(np.prod(size)) // 8)), dtype=np.uint8) if with_masks else None
        console = console or Console(stderr=True)
        with progress_bar("decode clips", console) as progress:
            task = progress.add_task("", total=len(rows))
            for i, (folder, row) in enumerate(rows):
                video = read_video(folder / row["path"])
                if video.shape[:3] != size:
                    raise ValueError(f"{row['path']}: clip is {video.shape[:3]}, the backbone makes {size}")
                frames[i] = video
                captions.append(plain_caption(row["caption"]))
                if masks is not None:
                    masks[i] = np.packbits(decode_masks(row).any(axis=0))
                progress.advance(task)
        return cls(frames, captions, masks)

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) float in [-1, 1]."""
        clips = torch.from_numpy(self.frames[index.numpy()])
        return clips.permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0

    def subject_coverage(self, index: torch.Tensor, latent_grid: tuple[int, int, int]) -> torch.Tensor:
        """(B, 1, T', h, w): the fraction of each latent position's pixels that show a subject."""
        if self.subject_masks is None:
            raise ValueError("this bank was loaded without subject masks")
        size = self.frames.shape[1:4]
        bits = np.unpackbits(self.subject_masks[index.numpy()], axis=1)
        masks = torch.from_numpy(bits.reshape(len(index), 1, *size)).float()
        return torch.nn.functional.adaptive_avg_pool3d(masks, latent_grid)


def vgfm_objective(bank: ClipBank, config: VGFMConfig):
    """The pre-training objective: random clips, caption dropout, rectified-flow loss."""

    def objective(backbone: Backbone, step: int, generator: torch.Generator):
        index = torch.randint(len(bank.captions), (config.batch_size,), generator=generator)
        drop = torch.rand(config.batch_size, generator=generator) < config.text_dropout
        prompts = ["" if d else bank.captions[i] for i, d in zip(index.tolist(), drop.tolist(), strict=True)]
        clean = backbone.encode_video(bank.batch(index).to(backbone.device))
        weight = None
        if config.foreground_weight > 0:
            coverage = bank.subject_coverage(index, tuple(clean.shape[2:])).to(clean.device)
            weight = 1 + config.foreground_weight * coverage
        text = backbone.encode_text(prompts)
        t, noise = draw_timesteps_and_noise(backbone, clean, generator, config.timesteps)
        errors = velocity_errors(backbone, clean, text, t, noise, weight=weight)
        loss = errors.mean()
        if config.word_contrast is None or step < config.word_contrast.start_step:
            return loss, {}
        contrast, logs = word_contrast_loss(backbone, clean, noise, t, prompts, errors, config.word_contrast, generator)
        return loss + contrast, {"flow_loss": float(loss.detach()), **logs}

    return objective


def sample_fn(config: VGFMConfig):
    def make(backbone: Backbone, step: int) -> dict[str, np.ndarray]:
        if not config.sample_prompts:
            return {}
        s = config.sampling
        videos = sample(
            backbone,
            config.sample_prompts,
            steps=s.steps,
            guidance=TextCFG(s.guidance),
            seed=list(range(len(config.sample_prompts))),
            shift=s.shift,
        )
        return {f"prompt{i:02d}": v for i, v in enumerate(to_uint8_frames(videos))}

    return make


def export_checkpoint(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    use_ema: bool = True,
    dtype: torch.dtype | None = torch.float16,
) -> Path:
    """Save the newest checkpoint of a VGFM run as a backbone folder (EMA weights unless ``use_ema`` is off)."""
    from libragen.core.config import load_config
    from libragen.train.checkpoint import checkpoint_dirs, load_checkpoint

    found = checkpoint_dirs(run_dir)
    if not found:
        raise FileNotFoundError(f"{run_dir}: no checkpoint yet")
    config = load_config(VGFMConfig, Path(run_dir) / "config.yaml")
    state = load_checkpoint(found[-1])
    weights = state.ema if use_ema and state.ema is not None else state.trainable
    backbone = LibraWorldBackbone(config.backbone)
    backbone.trainable.load_state_dict(weights)
    backbone.save(out, dtype=dtype)
    return Path(out)


def initial_backbone(config: VGFMConfig) -> LibraWorldBackbone:
    """A fresh backbone, or the weights of ``config.init_from`` when the run continues a saved model.

    A saved model at a coarser latent whose grown config (:func:`libragen.models.grow.grown_config`) is this
    run's backbone is grown to it: same transformer, wider patches.
    """
    backbone = LibraWorldBackbone(config.backbone)
    if config.init_from is None:
        return backbone
    saved = LibraWorldBackbone.load(config.init_from)
    if is_grown_from(saved.config, config.backbone):
        saved = grow_backbone(saved, config.backbone.latent_downsample)
    if saved.config.model_dump() != config.backbone.model_dump():
        raise ValueError(
            f"{config.init_from}: its backbone config differs from this run's `backbone` "
            "(and is not the same model at a coarser latent)"
        )
    backbone.trainable.load_state_dict(saved.trainable.state_dict())
    return backbone


def train_vgfm(config: VGFMConfig, run_dir: str | os.PathLike[str], console: Console | None = None) -> LoopResult:
    """Train (or resume) a VGFM into ``run_dir``; write ``final/`` (EMA weights) and ``loss.png``."""
    console = console or Console(stderr=True)
    run = start_run(config, config.loop, run_dir)
    backbone = initial_backbone(config)
    bank = ClipBank.from_worlds(
        config.data, backbone.video_size, config.max_clips, console, with_masks=config.foreground_weight > 0
    )
    console.print(f"{len(bank.captions)} clips; encoding {len(set(bank.captions))} captions with MiniLM")
    prompts = [*sorted(set(bank.captions)), ""]
    for start in range(0, len(prompts), 512):  # fill the text cache once, in chunks
        backbone.encode_text(prompts[start : start + 512])
    loop = TrainingLoop(backbone, vgfm_objective(bank, config), config.loop, run, sample_fn(config), console)
    result = loop.run()
    loop.swap_in_ema()
    backbone.save(run / "final", dtype=torch.float16)
    plot_loss(run / "metrics.jsonl", run / "loss.png")
    return result
