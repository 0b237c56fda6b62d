"""Shipped LibraWorld probes: where they live, how they were made, how to load and retrain them.

``libragen/eval/weights/`` holds ``attribute_probe.safetensors``, ``identity_encoder.safetensors`` (finds
subjects), ``identity_reader.safetensors`` (reads who they are) and ``probes.json`` (the exact command, data
seeds, step counts and the held-out accuracies measured right after training). :func:`train_probes` is what
``libragen eval train-probes`` runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from libragen.core.files import atomic_path, write_bytes_atomic
from libragen.eval.consistency import IdentityProbe
from libragen.eval.identity_reader import IdentityReader
from libragen.eval.probe_data import load_identity_crops, load_probe_set
from libragen.eval.probe_models import AttributeProbe, IdentityEncoder
from libragen.eval.probe_train import (
    test_attribute_probe,
    test_identity_retrieval,
    train_attribute_probe,
    train_identity_encoder,
)
from libragen.eval.reader_train import test_identity_reader, train_identity_reader

WEIGHTS_DIR = Path(__file__).parent / "weights"
ATTRIBUTE_FILE = "attribute_probe.safetensors"
IDENTITY_FILE = "identity_encoder.safetensors"
READER_FILE = "identity_reader.safetensors"
RECORD_FILE = "probes.json"


ONLY_CHOICES = ("all", "attribute", "identity", "reader")


class ProbesMissing(FileNotFoundError):
    """The probe weights are not where they were looked for."""


@dataclass
class Probes:
    attribute: AttributeProbe
    identity: IdentityProbe
    record: dict


def _save(model: torch.nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))


def load_probes(directory: str | os.PathLike[str] | None = None) -> Probes:
    """Load the probes (default: the shipped ones) in eval mode; a folder without a reader gives ``reader=None``."""
    root = Path(directory) if directory is not None else WEIGHTS_DIR
    paths = [root / ATTRIBUTE_FILE, root / IDENTITY_FILE, root / RECORD_FILE]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ProbesMissing(f"probe files missing: {', '.join(missing)} (train them: libragen eval train-probes)")
    record = json.loads(paths[2].read_text())
    attribute = AttributeProbe(**record["attribute"]["model"])
    attribute.load_state_dict(load_file(str(paths[0])))
    locator = IdentityEncoder(**record["identity"]["model"])
    locator.load_state_dict(load_file(str(paths[1])))
    reader = None
    if (root / READER_FILE).is_file() and "identity_reader" in record:
        reader = IdentityReader(**record["identity_reader"]["model"])
        reader.load_state_dict(load_file(str(root / READER_FILE)))
        reader.eval()
    return Probes(attribute.eval(), IdentityProbe(locator.eval(), reader), record)


def train_probes(
    train_world: str | os.PathLike[str],
    test_world: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    attribute_steps: int,
    identity_steps: int,
    reader_steps: int = 2000,
    reader_init: str | os.PathLike[str] | None = None,
    reader_lr: float = 2e-3,
    reader_angle_noise: float = 10.0,
    frames: int = 8,
    seed: int = 0,
    only: str = "all",
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train the probes on ``train_world`` clips, test on ``test_world`` clips, save weights + record.

    ``only`` ("attribute", "identity" or "reader") retrains one probe and keeps the others' record entries;
    the record is merged when each probe is saved, so several ``only`` runs may share ``out_dir`` at once.
    ``reader_init`` (a probe folder) continues training that folder's identity reader.
    """
    if only not in ONLY_CHOICES:
        raise ValueError(f"only must be one of {', '.join(ONLY_CHOICES)}, got {only!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    record_path = out / RECORD_FILE
    record: dict = {}
    command = " ".join(["libragen", *sys.argv[1:]])
    worlds = {"seed": seed, "train_world": str(train_world), "test_world": str(test_world)}

    if only in ("all", "attribute"):
        start = time.perf_counter()
        train_set, test_set = load_probe_set(train_world, frames), load_probe_set(test_world, frames)
        log(f"attribute data: {len(train_set.videos)} train clips, {len(test_set.videos)} test clips")
        attribute = train_attribute_probe(train_set, steps=attribute_steps, seed=seed, log=log)
        attribute_metrics = test_attribute_probe(attribute, test_set)
        log(f"attribute probe held-out accuracy: {attribute_metrics}")
        _save(attribute, out / ATTRIBUTE_FILE)
        record = _merge_record(
            record_path,
            "attribute",
            fresh=only == "all",
            entry={
                **worlds,
                "command": command,
                "model": {"channels": attribute.channels, "frames": frames},
                "steps": attribute_steps,
                "train_clips": len(train_set.videos),
                "test_clips": len(test_set.videos),
                "heldout_accuracy": attribute_metrics,
                "seconds": round(time.perf_counter() - start),
            },
        )
        del train_set, test_set

    crops = None
    if only in ("all", "identity", "reader"):
        crops = load_identity_crops(train_world), load_identity_crops(test_world)
        log(f"identity data: {len(crops[0].identity_ids)} train appearances, {len(crops[1].identity_ids)} test")
    if only in ("all", "identity"):
        assert crops is not None
        start = time.perf_counter()
        train_crops, test_crops = crops
        identity = train_identity_encoder(train_crops, steps=identity_steps, seed=seed, log=log)
        identity_metrics = test_identity_retrieval(identity, test_crops)
        log(f"identity encoder held-out retrieval: {identity_metrics}")
        _save(identity, out / IDENTITY_FILE)
        model = {"channels": identity.head.in_channels, "dim": identity.head.out_channels}
        entry = _retrieval_entry(model, identity_steps, len(train_crops.identity_ids), identity_metrics, start)
        record = _merge_record(record_path, "identity", fresh=False, entry={**worlds, "command": command, **entry})

    if only in ("all", "reader"):
        assert crops is not None
        start = time.perf_counter()
        init, init_record = None, {}
        if reader_init is not None:
            previous = load_probes(reader_init)
            init = previous.identity.reader
            if init is None:
                raise ProbesMissing(f"{reader_init} holds no identity reader to continue from")
            init_record = {"init": str(reader_init), "init_record": previous.record["identity_reader"]}
        reader = train_identity_reader(
            crops[0],
            steps=reader_steps,
            lr=reader_lr,
            angle_noise=reader_angle_noise,
            seed=seed,
            init=init,
            log=log,
        )
        reader_metrics = test_identity_reader(reader, crops[1])
        log(f"identity reader held-out retrieval: {reader_metrics}")
        _save(reader, out / READER_FILE)
        entry = _retrieval_entry(
            {"widths": list(reader.widths)}, reader_steps, len(crops[0].identity_ids), reader_metrics, start
        )
        settings = {"lr": reader_lr, "angle_noise": reader_angle_noise, **init_record}
        record = _merge_record(
            record_path, "identity_reader", fresh=False, entry={**worlds, "command": command, **entry, **settings}
        )
    return record


def _retrieval_entry(model: dict, steps: int, appearances: int, metrics: dict, start: float) -> dict:
    """The record fields of an identity model: its config, training size and held-out retrieval."""
    return {
        "model": model,
        "steps": steps,
        "train_appearances": appearances,
        "heldout_retrieval": metrics,
        "seconds": round(time.perf_counter() - start),
    }


def _merge_record(path: Path, key: str, *, entry: dict, fresh: bool) -> dict:
    """Set ``record[key] = entry`` in the record file as it is *now* (another run may have written it).

    ``fresh`` starts a new record instead (a run that retrains both probes owns the whole file).
    """
    record = json.loads(path.read_text()) if path.is_file() and not fresh else {}
    record[key] = entry
    write_bytes_atomic(path, json.dumps(record, indent=2).encode())
    return record
