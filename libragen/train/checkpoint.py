"""Training checkpoints as safetensors folders, written atomically, found again after a kill.

A checkpoint is ``<run>/checkpoints/step-000500/`` holding ``trainable.safetensors`` (the trained
parameters), ``ema.safetensors`` (when EMA is on), ``optimizer.safetensors`` (AdamW moments, flattened)
and ``state.json`` (step, optimizer groups). The folder is written under a temporary name and renamed
when complete, so a crash leaves either the previous checkpoints or a finished new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PREFIX = "step-"


@dataclass
class TrainingState:
    step: int
    trainable: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    optimizer: dict


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, float]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def checkpoint_dirs(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def save_checkpoint(run_dir: str | os.PathLike[str], state: TrainingState, keep: int = 2) -> Path:
    """Write ``state`` as a new checkpoint folder (atomically) and prune all but the newest ``keep``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{PREFIX}{state.step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
    try:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in state.trainable.items()}, str(tmp / "trainable.safetensors")
        )
        if state.ema is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in state.ema.items()}, str(tmp / "ema.safetensors"))
        tensors, meta = _flatten_optimizer(state.optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"step": state.step, "optimizer": meta}))
        os.chmod(tmp, 0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(folder: str | os.PathLike[str]) -> TrainingState:
    folder = Path(folder)
    meta = json.loads((folder / "state.json").read_text())
    ema_path = folder / "ema.safetensors"
    return TrainingState(
        step=int(meta["step"]),
        trainable=load_file(str(folder / "trainable.safetensors")),
        ema=load_file(str(ema_path)) if ema_path.is_file() else None,
        optimizer=_unflatten_optimizer(load_file(str(folder / "optimizer.safetensors")), meta["optimizer"]),
    )
