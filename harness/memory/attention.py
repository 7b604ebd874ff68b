"""Attention on the meta device as a real device runs it, for memory.

``F.scaled_dot_product_attention`` is composite: the backend is picked above the dispatcher, and
on the meta device the pick is always the math path, which materializes the scores
``(batch, heads, L, S)`` (and, under autograd, saves the softmax for backward). A CPU or GPU run
takes a fused kernel that holds the output and a ``(batch, heads, L)`` log-sum-exp instead. A
7B decoder at 2048 tokens would be forecast 16 GiB per sample too high. :func:`fused_attention`
registers, for as long as it is entered, a kernel of ``aten::scaled_dot_product_attention`` for the
meta device (keys ``AutogradMeta`` and ``Meta``, which take precedence over the composite) that
calls ``aten._scaled_dot_product_flash_attention_for_cpu``
whenever PyTorch's CPU dispatch would pick its flash kernel (:func:`harness.count.meta_kernels.cpu_would_use_flash`),
so the allocations and the tensors saved for backward are the fused kernel's, and otherwise runs
the math path as before. A dispatcher kernel, not a ``TorchFunctionMode``: a mode is not active
inside ``loss.backward()`` (which the mode itself dispatches), where a checkpointed segment
recomputes its attention. The CUDA kernels (flash, memory-efficient) save the same output and
log-sum-exp. Other meta-device work in the process (``harness count --device meta``) is untouched
once the context exits.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def fused_attention() -> Iterator[None]:
    """Meta-device SDPA through the fused CPU flash kernel when the real dispatch would fuse it (module docstring)."""
    lib = torch.library.Library("aten", "IMPL")
    try:
        lib.impl("scaled_dot_product_attention", _sdpa, "AutogradMeta")
        # under inference mode the autograd keys are excluded: the Meta key's kernel (library.impl refuses
        # Meta for an op with a composite kernel, a rule for PyTorch's own meta kernels; the registration below it)
        assert lib.m is not None
        lib.m.impl("scaled_dot_product_attention", "Meta", _sdpa, False)
        yield
    finally:
        lib._destroy()


def _sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """The fused kernel's output where the real dispatch would fuse, else the math path."""
    from ..count.meta_kernels import cpu_would_use_flash

    if not cpu_would_use_flash(query, key, value, attn_mask, dropout_p, enable_gqa):
        return torch.ops.aten._scaled_dot_product_attention_math(
            query, key, value, attn_mask, dropout_p, is_causal, None, scale=scale, enable_gqa=enable_gqa)[0]
    if attn_mask is not None and attn_mask.dtype == torch.bool:  # what the composite does before the kernel
        attn_mask = torch.zeros_like(attn_mask, dtype=query.dtype).masked_fill(~attn_mask, float("-inf"))
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)[0]
