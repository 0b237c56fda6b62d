"""Cheap activations recomputed in backward instead of kept: less training memory, same gradients.

A LoRA step through a frozen Wan block keeps, for backward, several tensors that are a few elementwise
operations away from another tensor autograd keeps anyway:

* the GELU output (8960 wide in Wan2.1-1.3B), kept for ``ffn.net.2``'s LoRA A, is ``gelu(h)`` of the
  GELU input ``h`` that GELU's own backward keeps;
* the normalised (and rotated) queries and keys kept by attention are ``rope(rms_norm(q))`` of the
  projection output ``q`` that the RMS norm keeps;
* the (modulated) layer-norm outputs kept by the next projections' LoRA A are ``norm(x) * (1 + scale)
  + shift`` of the residual ``x`` that the layer norm keeps.

:class:`CheapRecompute` registers such outputs as they are made (module hooks here, explicit calls in
the reference attention processor) and, inside :meth:`CheapRecompute.saving`, replaces them among
autograd's saved tensors by "recompute from the source" records (``saved_tensors_hooks``). Backward
repeats the same operations on the same inputs, so gradients are bit-identical; the price is a few
elementwise passes per block and no matmul, unlike gradient checkpointing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

Recompute = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _Made:
    """A registered output: ``fn(source)`` made it (``version``: the source's version counter then)."""

    storage: StorageWeakRef
    dtype: torch.dtype
    fn: Recompute
    source: torch.Tensor
    version: int


@dataclass
class _Saved:
    """What autograd keeps instead of a registered output or a view of it."""

    made: _Made
    size: torch.Size
    stride: tuple[int, ...]
    offset: int


class CheapRecompute:
    """Registry of one forward's recomputable outputs, and the saved-tensor hooks that use it."""

    def __init__(self) -> None:
        self._made: dict[int, _Made] = {}
        self._active = False
        self._replaced: set[int] = set()
        #: called with every tensor autograd keeps as it is while ``saving`` (for memory accounting)
        self.observer: Callable[[torch.Tensor], None] | None = None

    @property
    def active(self) -> bool:
        return self._active

    @property
    def replaced(self) -> int:
        """How many registered outputs autograd recomputes instead of keeping (last ``saving`` block)."""
        return len(self._replaced)

    def register(self, output: torch.Tensor, fn: Recompute, source: torch.Tensor) -> None:
        """``output`` is ``fn(source)``: autograd may keep ``source`` only and recompute ``output``."""
        if not self._active:
            return
        storage = output.untyped_storage()
        whole = output.is_contiguous() and output.storage_offset() == 0
        if not whole or storage.nbytes() != output.numel() * output.element_size():
            return
        if storage.data_ptr() == source.untyped_storage().data_ptr():
            return  # an alias of its source: nothing to free
        ref = StorageWeakRef(storage)
        self._made[ref.cdata] = _Made(ref, output.dtype, fn, source, source._version)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor | _Saved:
        made = self._made.get(StorageWeakRef(tensor.untyped_storage()).cdata)
        if made is None or made.storage.expired() or made.dtype != tensor.dtype:
            if self.observer is not None:
                self.observer(tensor)
            return tensor
        self._replaced.add(id(made))
        return _Saved(made, tensor.size(), tensor.stride(), tensor.storage_offset())

    @staticmethod
    def _unpack(saved: torch.Tensor | _Saved) -> torch.Tensor:
        if not isinstance(saved, _Saved):
            return saved
        made = saved.made
        if made.source._version != made.version:
            raise RuntimeError("a tensor kept to recompute an activation was modified in place after the forward")
        with torch.no_grad():
            return made.fn(made.source).as_strided(saved.size, saved.stride, saved.offset)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Register nothing inside: for gradient-checkpointed blocks, whose sources autograd does not keep."""
        active, self._active = self._active, False
        try:
            yield
        finally:
            self._active = active

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """Run forward passes whose registered outputs autograd recomputes instead of keeping."""
        if self._active or not torch.is_grad_enabled():
            yield
            return
        self._active = True
        self._replaced.clear()
        try:
            with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
                yield
        finally:
            self._active = False
            self._made.clear()


def _normalised(norm: nn.Module, modulation: tuple[torch.Tensor, torch.Tensor] | None, dtype: torch.dtype) -> Recompute:
    """``WanTransformerBlock``'s ``(norm(x) * (1 + scale) + shift).type_as(hidden)``, or ``norm(x)`` cast."""
    if modulation is None:
        return lambda x: norm(x).to(dtype)
    shift, scale = modulation
    return lambda x: (norm(x) * (1 + scale) + shift).to(dtype)


def _hook_block(block: nn.Module, recompute: CheapRecompute) -> list:
    """Register a Wan block's layer-norm inputs, GELU output and cross-attention query/key norms."""
    seen: dict[str, object] = {}

    def on_block(module, args, kwargs) -> None:
        seen.clear()
        temb = args[2] if len(args) > 2 else kwargs.get("temb")
        if recompute.active and temb is not None and temb.ndim == 3:  # Wan2.2 TI2V's per-token temb: skipped
            seen["modulation"] = (module.scale_shift_table + temb.float()).chunk(6, dim=1)

    def keep_input(name: str):
        def hook(module, args, output) -> None:
            if recompute.active:
                seen[name] = args[0]

        return hook

    def register_normalised(norm_name: str, shift_index: int | None):
        def hook(module, args) -> None:
            source, modulation = seen.pop(norm_name, None), seen.get("modulation")
            if not recompute.active or source is None or (shift_index is not None and modulation is None):
                return
            pair = None if shift_index is None else (modulation[shift_index], modulation[shift_index + 1])
            recompute.register(args[0], _normalised(getattr(block, norm_name), pair, args[0].dtype), source)

        return hook

    def forget(*_) -> None:
        seen.clear()

    handles = [block.register_forward_pre_hook(on_block, with_kwargs=True), block.register_forward_hook(forget)]
    for norm_name in ("norm1", "norm2", "norm3"):
        handles.append(getattr(block, norm_name).register_forward_hook(keep_input(norm_name)))
    handles.append(block.attn1.register_forward_pre_hook(register_normalised("norm1", 0)))
    handles.append(block.attn2.register_forward_pre_hook(register_normalised("norm2", None)))
    handles.append(block.ffn.register_forward_pre_hook(register_normalised("norm3", 3)))
    for norm in (block.attn2.norm_q, block.attn2.norm_k):  # no RoPE in cross-attention: the norm output is kept
        handles.append(norm.register_forward_hook(_register_output(recompute)))
    gelu = block.ffn.net[0]
    if hasattr(gelu, "proj") and callable(getattr(gelu, "gelu", None)):  # diffusers' GELU: proj, then ``gelu``
        # the activation itself is wrapped: ``proj`` is replaced by peft's LoRA layer after this runs
        gelu.gelu = _RegisteredActivation(gelu.gelu, recompute)
    return handles


class _RegisteredActivation:
    """An activation function whose outputs register for recomputation from its input."""

    def __init__(self, activation: Recompute, recompute: CheapRecompute) -> None:
        self.activation = getattr(activation, "activation", activation)  # never wrap twice
        self.recompute = recompute

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.activation(hidden)
        self.recompute.register(out, self.activation, hidden)
        return out


def _register_output(recompute: CheapRecompute):
    def hook(module, args, output) -> None:
        if isinstance(output, torch.Tensor):
            recompute.register(output, module, args[0])

    return hook


def install_cheap_recompute(transformer: nn.Module, recompute: CheapRecompute) -> list:
    """Hook every block of a ``WanTransformer3DModel`` to register with ``recompute``; returns the handles."""
    return [handle for block in transformer.blocks for handle in _hook_block(block, recompute)]
