"""Wan LoRA training step: LibraGen's Wan backbone vs a plain diffusers + peft loop (issue #12).

Both train the same LoRA (rank 32 on attention and FFN) on random weights of one transformer config —
the real Wan2.1-T2V-1.3B config (480×832, 81 frames) on a GPU, or a scaled-down config of the same
architecture on CPU — with the same latents, noise, timestep and cached text embeddings.

* S2V step (one reference image):
  - ``plain``: written by hand with diffusers + peft the direct way — the reference latent frame
    appended on the time axis, per-token timesteps (B, L) with 0 on the reference (what
    ``WanTransformer3DModel`` accepts), full attention, loss on the video frames.
  - ``ours``: ``WanBackbone`` + ``add_lora`` + ``velocity_errors`` (the loss every LibraGen trainer
    uses): one-way references — a reference pass, then the video pass with the reference K/V appended.
* T2V step (no reference): ``plain-t2v`` vs ``ours-t2v``, the wrapper's own overhead.

Each variant runs in its own process (peak memory is per process), in turns A B A B …; times are
medians of the timed steps, ratios are ours / plain. Peak memory: ``torch.cuda.max_memory_allocated``
on a GPU; on CPU the process's peak RSS minus its RSS before the first step (what the step adds).
MFU: analytic matmul FLOPs of the work each variant does (forward + input-gradient backward = 2×
forward; frozen base weights get no weight gradient) over the step time, against the GPU's dense
bf16 peak, or on CPU against the rate of a large fp32 matmul measured in the same process.

    python benchmarks/wan_train_step.py --out docs/examples/wan_train_step
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe

#: diffusers' Wan2.1-T2V-1.3B transformer config, and video size (480x832, 81 frames -> 21x60x104 latents).
REAL = {
    "transformer": dict(
        patch_size=(1, 2, 2),
        num_attention_heads=12,
        attention_head_dim=128,
        in_channels=16,
        out_channels=16,
        text_dim=4096,
        freq_dim=256,
        ffn_dim=8960,
        num_layers=30,
        cross_attn_norm=True,
        eps=1e-6,
        rope_max_seq_len=1024,
    ),
    "video": dict(frames=81, height=480, width=832),
    "text_tokens": 512,
}
#: The same architecture scaled down for 2 CPU cores (17 frames of 128x128 -> 5x16x16 latents, 320 tokens).
TINY = {
    "transformer": dict(
        patch_size=(1, 2, 2),
        num_attention_heads=4,
        attention_head_dim=32,
        in_channels=16,
        out_channels=16,
        text_dim=256,
        freq_dim=64,
        ffn_dim=768,
        num_layers=6,
        cross_attn_norm=True,
        eps=1e-6,
        rope_max_seq_len=1024,
    ),
    "video": dict(frames=17, height=128, width=128),
    "text_tokens": 128,
}
#: Real width and text (dim 1536, FFN 8960, 512 x 4096 text) and the real frame count (21 latent frames, so one
#: reference is 1/22 of the tokens as at 480x832), but 4 blocks at 96x96 (756 video tokens): compute-bound on
#: CPU like the real model on a GPU, small enough for 2 cores.
MEDIUM = {
    "transformer": REAL["transformer"] | {"num_layers": 4},
    "video": dict(frames=81, height=96, width=96),
    "text_tokens": 512,
}
SIZES = {"real": REAL, "medium": MEDIUM, "tiny": TINY}
LORA = dict(rank=32, alpha=32.0, targets=["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"])
FIGURES = ("step_seconds", "step_memory_mb", "peak_memory_mb", "step_allocated_mb", "saved_activation_mb", "mfu")
VARIANTS = ("plain", "ours", "ours-keep", "ours-ckpt", "ours-sac", "plain-t2v", "ours-t2v")
CHECKPOINT_FRACTION = 0.25  # ours-ckpt: a quarter of the blocks recompute their activations in backward
H100_H200_BF16_DENSE = 989e12  # FLOP/s, NVIDIA's dense bf16 figure for H100/H200 SXM


def latent_grid(size: dict) -> tuple[int, int, int]:
    video = size["video"]
    return (video["frames"] - 1) // 4 + 1, video["height"] // 8, video["width"] // 8


def forward_flops(size: dict, variant: str) -> float:
    """Matmul FLOPs of one forward pass of the variant's work (projections, attention, FFN)."""
    cfg = size["transformer"]
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    f, layers, lt = cfg["ffn_dim"], cfg["num_layers"], size["text_tokens"]
    t, h, w = latent_grid(size)
    per_frame = (h // 2) * (w // 2)
    lv, lr = t * per_frame, (0 if variant.endswith("t2v") else per_frame)

    def block(queries: int, keys: int, cross: bool) -> float:
        flops = 8 * queries * d * d + 4 * queries * keys * d + 4 * queries * d * f
        if cross:
            flops += 4 * queries * d * d + 4 * lt * d * d + 4 * queries * lt * d
        return flops

    if variant.startswith("plain"):
        per_layer = block(lv + lr, lv + lr, True)
    else:  # one-way: references attend to references only and skip the text (ours-ckpt: recompute not counted)
        per_layer = block(lv, lv + lr, True) + (block(lr, lr, False) if lr else 0)
    return layers * per_layer + 2 * cfg["text_dim"] * d * lt


def make_inputs(size: dict, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    t, h, w = latent_grid(size)
    c = size["transformer"]["in_channels"]
    return {
        "clean": torch.randn(1, c, t, h, w, generator=gen).to(device),
        "noise": torch.randn(1, c, t, h, w, generator=gen).to(device),
        "ref": torch.randn(1, 1, c, h, w, generator=gen).to(device),
        "text": torch.randn(1, size["text_tokens"], size["transformer"]["text_dim"], generator=gen).to(device, dtype),
        "t": torch.tensor([0.7], device=device),
    }


def lora_to_float32(model: torch.nn.Module) -> None:
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()


def plain_step_fn(size: dict, variant: str, device: torch.device, dtype: torch.dtype):
    """diffusers + peft written by hand, the direct way (see the module docstring)."""
    from diffusers import WanTransformer3DModel
    from peft import LoraConfig

    torch.manual_seed(0)
    model = WanTransformer3DModel(**size["transformer"]).to(device, dtype)
    model.add_adapter(LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], target_modules=LORA["targets"]))
    lora_to_float32(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    x = make_inputs(size, device, dtype)
    with_ref = not variant.endswith("t2v")

    def loss_fn() -> torch.Tensor:
        clean, noise, t = x["clean"], x["noise"], x["t"]
        noisy = ((1 - t) * clean + t * noise).to(dtype)
        frames = noisy.shape[2]
        if with_ref:
            ref = x["ref"].permute(0, 2, 1, 3, 4).to(dtype)
            per_frame = noisy.shape[3] * noisy.shape[4] // 4
            timestep = torch.cat(
                [(t * 1000)[:, None].expand(-1, frames * per_frame), torch.zeros(1, per_frame, device=device)], 1
            )
            out = model(torch.cat([noisy, ref], 2), timestep, x["text"], return_dict=False)[0][:, :, :frames]
        else:
            out = model(noisy, t * 1000, x["text"], return_dict=False)[0]
        return (out.float() - (noise - clean)).pow(2).mean()

    return loss_fn, optimizer, model, None


def ours_step_fn(size: dict, variant: str, device: torch.device, dtype: torch.dtype):
    """LibraGen: WanBackbone + add_lora + the shared velocity loss."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    from libragen.models.backbone import References, TextBatch
    from libragen.models.wan import WanBackbone, WanBackboneConfig
    from libragen.train.flow import velocity_errors
    from libragen.train.lora import LoraSettings, add_lora

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(**size["transformer"]).to(device, dtype)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1)  # only its config is used
    pipeline = WanPipeline(None, None, vae, FlowMatchEulerDiscreteScheduler(), transformer=transformer)
    config = WanBackboneConfig(
        **size["video"],
        max_sequence_length=size["text_tokens"],
        recompute_cheap_activations=variant != "ours-keep",  # ours-keep: every activation kept (sessions ≤ 11)
    )
    backbone = WanBackbone(pipeline, config)
    add_lora(backbone, LoraSettings(**LORA))
    if variant == "ours-ckpt":
        backbone.enable_gradient_checkpointing(CHECKPOINT_FRACTION)
    if variant == "ours-sac":  # every block, keeping matmul/attention outputs, recomputing the cheap ops
        backbone.enable_gradient_checkpointing(1.0, selective=True)
    lora_to_float32(backbone.trainable)
    params = [p for p in backbone.trainable.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    x = make_inputs(size, device, dtype)
    text = TextBatch(x["text"], torch.ones(x["text"].shape[:2], dtype=torch.bool, device=device))
    refs = None if variant.endswith("t2v") else References(x["ref"], torch.ones(1, 1, dtype=torch.bool, device=device))

    def loss_fn() -> torch.Tensor:
        return velocity_errors(backbone, x["clean"], text, x["t"], x["noise"], refs).mean()

    return loss_fn, optimizer, backbone.trainable, backbone._recompute


def saved_activation_mb(loss_fn, module: torch.nn.Module, recompute=None) -> float:
    """Bytes of the tensors autograd keeps for backward in one forward (weights excluded), in MB.

    Deterministic, unlike a process's memory: this is what grows with the sequence and what the
    reference handling changes. With cheap recomputation its own saved-tensor hooks are the innermost
    ones, so it reports what it keeps through ``recompute.observer``.
    """
    weights = {p.untyped_storage().data_ptr() for p in module.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    if recompute is not None:
        recompute.observer = pack
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = loss_fn()
    if recompute is not None:
        recompute.observer = None
    loss.backward()
    module.zero_grad(set_to_none=True)
    return sum(storages.values()) / 2**20


def step_allocated_mb(step) -> float:
    """Peak of the bytes tensors hold during one step above what they held before it, in MB.

    The CPU counterpart of ``torch.cuda.max_memory_allocated``: the running sum of the profiler's
    allocation and free events, so unlike the process's RSS it does not see allocator fragmentation.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    held = peak = 0
    for event in events:
        held += event.nbytes()
        peak = max(peak, held)
    return peak / 2**20


def rss_mb() -> float:
    return float(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def cpu_peak_flops() -> float:
    """FLOP/s of a large fp32 matmul on this machine (the CPU's achievable peak)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048**3 / (time.perf_counter() - start)


def worker(variant: str, size_name: str, steps: int, warmup: int) -> dict:
    size = SIZES[size_name]
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    build = ours_step_fn if variant.startswith("ours") else plain_step_fn
    loss_fn, optimizer, module, recompute = build(size, variant, device, dtype)

    def step() -> float:
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    rss_before = rss_mb()
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(step())
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
        step_memory = peak
        peak_flops = H100_H200_BF16_DENSE
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        step_memory = peak - rss_before
        peak_flops = cpu_peak_flops()
    allocated = peak if cuda else step_allocated_mb(step)
    activations = saved_activation_mb(loss_fn, module, recompute)
    seconds = statistics.median(times)
    flops = 2 * forward_flops(size, variant)
    return {
        "variant": variant,
        "size": size_name,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "dtype": str(dtype),
        "step_seconds": seconds,
        "step_memory_mb": step_memory,
        "peak_memory_mb": peak,
        "step_allocated_mb": allocated,
        "saved_activation_mb": activations,
        "model_tflops_per_step": flops / 1e12,
        "mfu": flops / seconds / peak_flops,
        "peak_flops": peak_flops,
        "losses": losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["real", "medium", "tiny", "auto"], default="auto")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="A B A B … turns per variant pair")
    parser.add_argument("--out", type=Path, default=Path("runs/wan_train_step"))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size if args.size != "auto" else ("real" if torch.cuda.is_available() else "tiny")
    if args.worker:
        print(json.dumps(worker(args.worker, size, args.steps, args.warmup)))
        return

    variants = [v for v in VARIANTS if v in args.variants]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for round_index in range(args.rounds):
        for variant in variants:
            command = [sys.executable, __file__, "--worker", variant, "--size", size]
            command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
            results[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
            last = results[variant][-1]
            print(
                f"round {round_index + 1} {variant:10s} {last['step_seconds']:.3f} s  "
                f"step memory {last['step_memory_mb']:.0f} MB  allocated {last['step_allocated_mb']:.0f} MB  "
                f"activations {last['saved_activation_mb']:.0f} MB"
            )

    def median(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in results[variant])

    summary = {
        "machine": describe(),
        "device": results[variants[0]][0]["device"],
        "size": size,
        "config": SIZES[size],
        "lora": LORA,
        "variants": {
            v: {k: median(v, k) for k in FIGURES} | {"model_tflops_per_step": results[v][0]["model_tflops_per_step"]}
            for v in variants
        },
        "ratios": {  # each variant against the plain loop of the same kind (S2V or T2V)
            f"{v}_{key}": median(v, figure) / median("plain-t2v" if v.endswith("t2v") else "plain", figure)
            for v in variants
            if v.startswith("ours") and ("plain-t2v" if v.endswith("t2v") else "plain") in variants
            for key, figure in (
                ("time", "step_seconds"),
                ("step_memory", "step_memory_mb"),
                ("step_allocated", "step_allocated_mb"),
                ("saved_activations", "saved_activation_mb"),
            )
        },
        "runs": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "wan_train_step.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("device", "size", "variants", "ratios")}, indent=2))


if __name__ == "__main__":
    main()
