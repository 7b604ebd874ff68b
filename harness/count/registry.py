"""The formula registry: one small function per aten op.

Every formula is registered with :func:`register` under one or more aten op names
(the overload packet, e.g. ``aten::addmm`` covers ``addmm.default`` and
``addmm.dtype``) or ``name.overload`` keys for one overload (the most specific key
wins: ``_scaled_dot_product_flash_attention.quantized`` takes descale tensors where
the default overload takes dropout and causal flags).  A formula is called as ``formula(res, *args, **kwargs)`` with the
op's output ``res`` and the arguments the dispatcher passed; it reads shapes,
dtypes and flags only (never tensor values) and returns a :class:`Work`:

* ``macs``  -- multiply-accumulates of matmul-class work (conv, linear, matmul,
  attention QK^T and PV, RNN gate matmuls);
* ``other`` -- other arithmetic (bias adds, norms, softmax, activations,
  elementwise), each formula's docstring states its rule;
* ``bytes`` -- memory access cost; ``None`` means the default rule of
  :func:`io_bytes`: every distinct tensor argument is read once and every
  output tensor is written once, at its dtype's size (the ShuffleNet V2 "MAC").

Conventions shared by all formulas (documented once here):

* one flop per output element for elementwise arithmetic and activations
  (the extra cost of transcendental functions is not modelled);
* padding positions of convolutions and pools are counted as work;
* attention with a causal mask is counted over the full sequence length (the
  convention of ``torch.utils.flop_counter`` and of MFU papers);
* random number generation, comparisons used for selection (``where``,
  ``masked_fill``) and data movement are not flops (their bytes count).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import torch

aten = torch.ops.aten
Tensor = torch.Tensor


class Work(NamedTuple):
    """The cost of one op call: MACs, other flops and bytes (None: default rule)."""

    macs: int = 0
    other: int = 0
    bytes: int | None = None


ZERO = Work(0, 0, 0)

#: aten OpOverloadPacket (every overload) or OpOverload (one overload) -> formula(res, *args, **kwargs) -> Work
FORMULAS: dict[Any, Callable[..., Work]] = {}


def _op_key(name: str):
    """``"addmm"`` -> the packet ``aten.addmm``; ``"addmm.out"`` -> the overload ``aten.addmm.out``; None if absent."""
    packet_name, _, overload = name.partition(".")
    packet = getattr(aten, packet_name, None)
    if packet is None or not overload:
        return packet
    return getattr(packet, overload, None)


def register(*names: str) -> Callable[[Callable[..., Work]], Callable[..., Work]]:
    """Register ``formula`` for the aten ops ``names`` (ops missing from this torch build are skipped).

    A name is an op (``"addmm"``: every overload) or one overload (``"addmm.out"``,
    ``"_scaled_dot_product_flash_attention.quantized"``); the most specific key wins, so
    an overload whose schema differs from the default's gets its own formula.
    """

    def deco(fn: Callable[..., Work]) -> Callable[..., Work]:
        for name in names:
            key = _op_key(name)
            if key is None:
                continue
            if key in FORMULAS:
                raise RuntimeError(f"duplicate formula for aten::{name}")
            FORMULAS[key] = fn
        return fn

    return deco


def formula_of(func) -> Callable[..., Work] | None:
    """The formula for an OpOverload: its own if registered, else its op's, else None."""
    fn = FORMULAS.get(func)
    return fn if fn is not None else FORMULAS.get(func._overloadpacket)


class PartialCount(Exception):
    """Raised by a formula whose reference computation met ops without formulas."""

    def __init__(self, ops):
        super().__init__(", ".join(sorted(ops)))
        self.ops = set(ops)


# ---------------------------------------------------------------- helpers


def prod(xs) -> int:
    return int(math.prod(int(x) for x in xs))


def numel(t) -> int:
    return t.numel() if isinstance(t, Tensor) else 0


def first(res) -> Tensor:
    """The first tensor of an op's result (the op's main output)."""
    if isinstance(res, Tensor):
        return res
    for r in res:
        if isinstance(r, Tensor):
            return r
    raise TypeError("op returned no tensor")


def nbytes(t: Tensor) -> int:
    """Logical size in bytes: numel x element size."""
    if t.is_nested:
        return sum(nbytes(c) for c in t.unbind())
    return t.numel() * t.element_size()


def _tensors(obj):
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            if isinstance(x, Tensor):
                yield x


def io_bytes(args, kwargs, res) -> int:
    """Default memory access: distinct tensor inputs read once + outputs written once."""
    seen: set[int] = set()
    total = 0
    for a in args:
        for t in _tensors(a):
            if id(t) not in seen:
                seen.add(id(t))
                total += nbytes(t)
    for k, a in kwargs.items():
        if k == "out":  # out= arguments are outputs, counted below
            continue
        for t in _tensors(a):
            if id(t) not in seen:
                seen.add(id(t))
                total += nbytes(t)
    seen.clear()
    for t in _tensors(res):
        if id(t) not in seen:
            seen.add(id(t))
            total += nbytes(t)
    return total


def out_bytes(res) -> int:
    """Bytes written: every output tensor once."""
    seen: set[int] = set()
    total = 0
    for t in _tensors(res):
        if id(t) not in seen:
            seen.add(id(t))
            total += nbytes(t)
    return total


def _storage_key(t: Tensor):
    try:
        return t.untyped_storage()._cdata
    except Exception:  # nested, sparse, mkldnn: no plain storage
        return None


def aliases_input(res, args) -> bool:
    """True when every output tensor shares storage with some input tensor (a view)."""
    keys = set()
    for a in args:
        for t in _tensors(a):
            k = _storage_key(t)
            if k is not None:
                keys.add(k)
    outs = list(_tensors(res))
    if not outs or not keys:
        return False
    return all(_storage_key(t) in keys for t in outs)


def scale_add_other(n: int, beta=1, alpha=1, has_self: bool = True) -> int:
    """Flops of ``beta*self + alpha*(product)`` over n output elements.

    n adds when self is used (beta != 0), n more multiplies when beta is not 0 or 1,
    n more when alpha != 1.
    """
    other = 0
    if has_self and beta != 0:
        other += n
        if beta != 1:
            other += n
    if alpha != 1:
        other += n
    return other


def kernel_dims(k, dims: int) -> list[int]:
    """Expand an int or short list kernel/stride argument to ``dims`` entries."""
    if isinstance(k, int):
        return [k] * dims
    k = [int(x) for x in k]
    if len(k) == 1 and dims > 1:
        return k * dims
    return k
