"""The training loop every trainer (VGFM pretraining, SFT, DPO) runs: one objective, same machinery.

The loop owns AdamW with warmup, gradient clipping, optional EMA, TensorBoard + JSONL logging,
sample videos at intervals, atomic checkpoints and resume, and a clear stop on a non-finite loss.
Devices and precision go through accelerate: the backbone is moved to ``accelerator.device`` (a GPU
when present), the objective runs under its autocast (``mixed_precision: bf16`` on a GPU), and under
``accelerate launch`` with several processes each process draws its own batches (generator seeded by
process too) and gradients are averaged across processes before clipping; only the main process
writes logs, checkpoints and samples.
What is trained is whatever parameters of ``backbone.trainable`` require grad (all of them for
pretraining, only LoRA weights after peft wraps the model). The objective gets the backbone, the step
and a generator seeded from (seed, step), so a resumed run draws the same batches and noise as an
uninterrupted one and follows the same loss curve.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from rich.console import Console

from libragen.core.config import StrictModel
from libragen.core.progress import progress_bar
from libragen.core.video import write_video
from libragen.models.backbone import Backbone
from libragen.train.checkpoint import TrainingState, checkpoint_dirs, load_checkpoint, save_checkpoint

Objective = Callable[[Backbone, int, torch.Generator], tuple[torch.Tensor, dict[str, float]]]
SampleFn = Callable[[Backbone, int], dict[str, np.ndarray]]


class LoopConfig(StrictModel):
    """Optimisation and bookkeeping settings of a training run."""

    steps: int = Field(1000, ge=1)
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = Field(100, ge=0)
    cosine_decay: bool = False  # decay to 10% of lr by the last step
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float | None = Field(0.999, gt=0, lt=1)
    seed: int = 0
    log_every: int = Field(10, ge=1)
    sample_every: int = Field(0, ge=0)  # 0: no interim samples
    checkpoint_every: int = Field(200, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    threads: int | None = Field(None, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # accelerate's autocast; bf16 is the GPU choice
    cpu: bool = False  # force the CPU even when a GPU is present


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; nothing is written past the last good checkpoint."""


@dataclass
class LoopResult:
    steps_done: int
    final_loss: float
    seconds: float
    resumed_from: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)


def step_generator(seed: int, step: int, process: int = 0) -> torch.Generator:
    """The generator of one step: a pure function of (seed, step, process), so resume replays the same draws."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step + process * 7_919_000_003) % (2**63 - 1))


def start_run(config: StrictModel, loop: LoopConfig, run_dir: str | Path) -> Path:
    """Create the run folder, record the run's full config in it, set threads and the seed."""
    from libragen.core.config import dump_config
    from libragen.core.files import atomic_path

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    with atomic_path(run / "config.yaml") as tmp:
        tmp.write_text(dump_config(config))
    if loop.threads:
        torch.set_num_threads(loop.threads)
    torch.manual_seed(loop.seed)
    return run


def make_accelerator(config: LoopConfig):  # -> accelerate.Accelerator
    """accelerate's Accelerator for this run's precision and device.

    accelerate keeps one process-wide state; a single process that trains twice with different
    settings (a test suite, a reproduce run) gets that state reset, which is safe only without
    distributed processes, so those keep the error.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    try:
        return Accelerator(mixed_precision=config.mixed_precision, cpu=config.cpu)
    except ValueError:
        if PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(mixed_precision=config.mixed_precision, cpu=config.cpu)


class TrainingLoop:
    """Runs ``objective`` for ``config.steps`` steps on the trainable parameters, writing into ``run_dir``."""

    def __init__(
        self,
        backbone: Backbone,
        objective: Objective,
        config: LoopConfig,
        run_dir: str | Path,
        sample_fn: SampleFn | None = None,
        console: Console | None = None,
    ) -> None:
        self.backbone = backbone
        self.objective = objective
        self.config = config
        self.run_dir = Path(run_dir)
        self.sample_fn = sample_fn
        self.console = console or Console(stderr=True)
        self.accelerator = make_accelerator(config)
        self.is_main = self.accelerator.is_main_process
        backbone.to(self.accelerator.device)
        self.params = {n: p for n, p in backbone.trainable.named_parameters() if p.requires_grad}
        if not self.params:
            raise ValueError("nothing to train: no parameter of backbone.trainable requires grad")
        self.optimizer = self.accelerator.prepare_optimizer(
            torch.optim.AdamW(self.params.values(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
        )
        self.ema = {n: p.detach().clone() for n, p in self.params.items()} if config.ema_decay else None

    # -- bookkeeping --------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        c = self.config
        scale = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        if c.cosine_decay and step >= c.warmup_steps:
            progress = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
            scale *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return c.lr * scale

    def _state(self, step: int) -> TrainingState:
        return TrainingState(
            step, {n: p.detach() for n, p in self.params.items()}, self.ema, self.optimizer.state_dict()
        )

    def _resume(self) -> int:
        found = checkpoint_dirs(self.run_dir)
        if not found:
            return 0
        state = load_checkpoint(found[-1])
        missing = set(self.params) - set(state.trainable)
        if missing:
            raise ValueError(f"checkpoint {found[-1]} lacks parameters {sorted(missing)[:3]}…: different model?")
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(state.trainable[name])
        self.optimizer.load_state_dict(state.optimizer)
        if self.ema is not None and state.ema is not None:
            self.ema = {n: state.ema[n].clone() for n in self.params}
        self._truncate_metrics(state.step)
        self.console.print(f"resuming from {found[-1]} (step {state.step})")
        return state.step

    def _truncate_metrics(self, step: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if path.is_file() and self.is_main:
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in kept))

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        if self.ema is None:
            return
        decay = min(self.config.ema_decay, (1 + step) / (10 + step))  # warm-up: early EMA forgets the init
        for name, param in self.params.items():
            self.ema[name].lerp_(param.detach(), 1 - decay)

    @torch.no_grad()
    def swap_in_ema(self) -> None:
        """Exchange live weights and EMA weights (call twice to undo)."""
        if self.ema is None:
            return
        for name, param in self.params.items():
            live = param.detach().clone()
            param.copy_(self.ema[name])
            self.ema[name] = live

    def _write_samples(self, step: int) -> None:
        if self.sample_fn is None or not self.is_main:
            return
        self.swap_in_ema()
        try:
            self.backbone.eval()
            videos = self.sample_fn(self.backbone, step)
        finally:
            self.backbone.train()
            self.swap_in_ema()
        folder = self.run_dir / "samples" / f"step-{step:07d}"
        for name, frames in videos.items():
            write_video(folder / f"{name}.mp4", frames, self.backbone.fps)

    def _average_gradients(self) -> None:
        """Mean of every gradient across processes (the backbone is not DDP-wrapped: its forward is ours)."""
        if self.accelerator.num_processes == 1:
            return
        for param in self.params.values():
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            param.grad = self.accelerator.reduce(param.grad, "mean")

    # -- the loop -----------------------------------------------------------------------------
    def _bf16_on_cpu(self) -> bool:
        return self.accelerator.mixed_precision == "bf16" and self.accelerator.device.type == "cpu"

    def run(self) -> LoopResult:
        c = self.config
        if c.threads:
            torch.set_num_threads(c.threads)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        start_step = self._resume()
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=start_step) if self.is_main else None
        losses: list[tuple[int, float]] = []
        started = time.time()
        loss_value = float("nan")
        self.backbone.train()
        with (
            # oneDNN's bf16 kernels on CPUs with AVX512-BF16 gave run-to-run different and sometimes infinite
            # gradients for the same step (tests/test_train_loop.py, AMD EPYC); ATen's own bf16 CPU kernels are
            # deterministic. Scoped to this run: bf16 on a GPU, and anything outside the loop, is unaffected.
            torch.backends.mkldnn.flags(enabled=torch.backends.mkldnn.enabled and not self._bf16_on_cpu()),
            progress_bar("train {task.description}", self.console) as progress,
            open(self.run_dir / "metrics.jsonl" if self.is_main else os.devnull, "a") as metrics,
        ):
            task = progress.add_task("", total=c.steps, completed=start_step)
            for step in range(start_step, c.steps):
                lr = self.lr_at(step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                generator = step_generator(c.seed, step, self.accelerator.process_index)
                with self.accelerator.autocast():
                    loss, logs = self.objective(self.backbone, step, generator)
                loss_value = float(self.accelerator.reduce(loss.detach().float(), "mean"))
                if not math.isfinite(loss_value):
                    last = checkpoint_dirs(self.run_dir)
                    raise TrainingDiverged(
                        f"loss is {loss_value} at step {step}; last good checkpoint: "
                        f"{last[-1] if last else 'none'}. Lower the learning rate or check the data."
                    )
                self.optimizer.zero_grad(set_to_none=True)
                self.accelerator.backward(loss)
                self._average_gradients()
                grad_norm = float(self.accelerator.clip_grad_norm_(list(self.params.values()), c.grad_clip))
                if not math.isfinite(grad_norm):
                    raise TrainingDiverged(f"gradient norm is {grad_norm} at step {step}; nothing was updated")
                self.optimizer.step()
                self._update_ema(step)
                done = step + 1
                losses.append((done, loss_value))
                if done % c.log_every == 0 or done == c.steps:
                    record = {
                        "step": done,
                        "loss": loss_value,
                        "grad_norm": grad_norm,
                        "lr": lr,
                        "seconds": round(time.time() - started, 2),
                        **logs,
                    }
                    metrics.write(json.dumps(record) + "\n")
                    metrics.flush()
                    for key, value in record.items():
                        if key != "step" and writer is not None:
                            writer.add_scalar(f"train/{key}", value, done)
                    progress.update(task, description=f"loss {loss_value:.4f}")
                if done % c.checkpoint_every == 0 or done == c.steps:
                    if self.is_main:
                        save_checkpoint(self.run_dir, self._state(done), keep=c.keep_checkpoints)
                    self.accelerator.wait_for_everyone()
                if c.sample_every and (done % c.sample_every == 0 or done == c.steps):
                    self._write_samples(done)
                progress.update(task, completed=done)
        if writer is not None:
            writer.close()
        return LoopResult(c.steps - start_step, loss_value, time.time() - started, start_step, losses)
