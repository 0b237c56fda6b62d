"""Plots of training runs from their metrics.jsonl: the loss curve, and any logged metrics (DPO rewards)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from libragen.core.files import atomic_path


def plot_loss(metrics: str | os.PathLike[str], png: str | os.PathLike[str], title: str = "training loss") -> Path:
    """Write the loss curve of ``metrics`` (JSONL with step and loss) to ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics).read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{metrics}: no records to plot")
    steps = np.array([r["step"] for r in records])
    loss = np.array([r["loss"] for r in records])
    window = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, loss, alpha=0.3, label="loss")
    ax.plot(steps[window - 1 :], smooth, label=f"mean of {window} logs")
    ax.set_xlabel("step")
    ax.set_ylabel("rectified-flow loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return Path(png)


def plot_metrics(
    metrics: str | os.PathLike[str], keys: list[str], png: str | os.PathLike[str], title: str = "training"
) -> Path:
    """One panel per metric in ``keys`` (e.g. DPO reward accuracy and margin) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics).read_text().splitlines() if line.strip()]
    present = [k for k in keys if any(k in r for r in records)]
    if not present:
        raise ValueError(f"{metrics}: none of {keys} logged")
    fig, axes = plt.subplots(1, len(present), figsize=(4.5 * len(present), 3.6), squeeze=False)
    for ax, key in zip(axes[0], present, strict=True):
        rows = [r for r in records if key in r]
        steps = np.array([r["step"] for r in rows])
        values = np.array([r[key] for r in rows])
        window = max(1, len(values) // 20)
        ax.plot(steps, values, alpha=0.35, label=key)
        if window > 1:
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, label=f"mean of {window} logs")
        ax.set_xlabel("step")
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return Path(png)


def plot_run_chain(
    runs: list[str | os.PathLike[str]], png: str | os.PathLike[str], title: str = "training chain"
) -> Path:
    """Loss of runs that continue each other (``init_from``), end to end, one colour per run; a second panel
    shows the word-contrast gap where a run logged it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, gap_ax) = plt.subplots(1, 2, figsize=(12, 4))
    offset = 0
    for k, run in enumerate(runs):
        path = Path(run) / "metrics.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not records:
            raise ValueError(f"{path}: no records to plot")
        steps = offset + np.array([r["step"] for r in records])
        loss = np.array([r.get("flow_loss", r["loss"]) for r in records])
        window = max(1, len(loss) // 30)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        loss_ax.plot(steps, loss, color=f"C{k}", alpha=0.2)
        loss_ax.plot(steps[window - 1 :], smooth, color=f"C{k}", label=Path(run).name)
        gaps = [(offset + r["step"], r["contrast_gap"]) for r in records if "contrast_gap" in r]
        if gaps:
            x, y = np.array(gaps).T
            gap_window = max(1, len(y) // 30)
            gap_ax.plot(
                x[gap_window - 1 :],
                np.convolve(y, np.ones(gap_window) / gap_window, mode="valid"),
                color=f"C{k}",
                label=Path(run).name,
            )
        offset = int(steps[-1])
    loss_ax.set(xlabel="step (runs end to end)", ylabel="rectified-flow loss", yscale="log", title=title)
    gap_ax.set(
        xlabel="step (runs end to end)", ylabel="relative error gap", title="word-contrast gap (negative − true)"
    )
    for ax in (loss_ax, gap_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(png)
