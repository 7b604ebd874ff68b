"""Helpers for formulas that define a fused kernel's cost by a reference computation.

``reference_cost(key, setup)`` runs PyTorch's own unfused path on meta tensors under
a :class:`SumMode` and returns its total :class:`Work` (cached); ``meta_like`` and
``shape_key`` build the meta inputs and the cache keys.  Formula modules import these
from here, never from the dispatch engine (``mode.py``).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .mode import OpInfo, OpMode
from .registry import PartialCount, Tensor, Work, io_bytes


def evaluate(info: OpInfo, args, kwargs, res) -> tuple[int, int, int]:
    """``(macs, other, bytes)`` by the op's formula (which it must have); bytes None -> the default
    rule of ``io_bytes``."""
    if info.formula is None:
        raise ValueError(f"{info.name} has no formula")
    w = info.formula(res, *args, **kwargs)
    return int(w.macs), int(w.other), io_bytes(args, kwargs, res) if w.bytes is None else int(w.bytes)


class SumMode(OpMode):
    """A lightweight mode that only sums Work; used to evaluate reference decompositions."""

    def __init__(self):
        super().__init__()
        self.macs = self.other = self.bytes = 0
        self.missing: set[str] = set()

    def _on_op(self, info: OpInfo, func, args, kwargs, res) -> None:
        if info.formula is None:
            self.missing.add(info.name)
        else:
            macs, other, nbytes = evaluate(info, args, kwargs, res)
            self.macs += macs
            self.other += other
            self.bytes += nbytes


_REFERENCE_CACHE: dict[Any, Work] = {}


def reference_cost(key, setup: Callable[[], Callable[[], Any]]) -> Work:
    """The total Work of a reference computation on meta tensors; cached by ``key``.

    ``setup()`` builds what the computation needs (modules, meta tensors; not
    counted) and returns a runner; ``runner()`` runs under a fresh SumMode in
    inference mode.  Used by formulas that define a fused kernel's cost as the cost
    of PyTorch's own unfused reference path, so that every dispatch route counts
    the same.
    """
    if key is not None and key in _REFERENCE_CACHE:
        return _REFERENCE_CACHE[key]
    with torch.inference_mode(False):
        runner = setup()
    mode = SumMode()
    with torch.inference_mode(), mode:
        runner()
    if mode.missing:
        raise PartialCount(mode.missing)
    w = Work(mode.macs, mode.other, mode.bytes)
    if key is not None:
        _REFERENCE_CACHE[key] = w
    return w


def meta_like(t: Tensor | None) -> Tensor | None:
    """A meta tensor with the same shape, strides and dtype (None stays None)."""
    if t is None:
        return None
    return torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=t.dtype, device="meta")


def shape_key(*objs) -> tuple:
    """A hashable description of tensors (shape, stride, dtype) and plain values, for caches."""
    out = []
    for o in objs:
        if isinstance(o, Tensor):
            out.append(("T", tuple(o.shape), tuple(o.stride()) if not o.is_nested else None, str(o.dtype)))
        elif isinstance(o, (list, tuple)):
            out.append(shape_key(*o))
        else:
            out.append(o)
    return tuple(out)
