"""Optimizer formulas: the ``_foreach_*`` list ops and the fused optimizer kernels.

An optimizer step is elementwise arithmetic over every parameter: no MACs, only other
flops and bytes.  On CPU, torch's optimizers default to the single-tensor loop
(``add_``, ``mul_``, ``lerp_``, ``addcmul_``, ``addcdiv_``, ``sqrt``: counted by the
pointwise formulas); on CUDA (or ``foreach=True``) the same arithmetic arrives as
``_foreach_*`` ops over lists, with ``fused=True`` as one ``_fused_*`` kernel.  The three
forms count the same other flops.  With n = the elements of all tensors of the first
list (the parameters):

* ``_foreach_<unary>`` (sqrt, neg, reciprocal, exp, ...) and ``_foreach_<binary>`` (mul,
  div, maximum, pow, ...): n; ``_foreach_add``/``_foreach_sub``: n, plus n when
  ``alpha`` != 1; ``_foreach_addcmul``/``_foreach_addcdiv``: 2n, plus n when scaled by a
  value other than 1 (a scalar list or tensor of scalars counts as scaled);
  ``_foreach_lerp``: 3n; ``_foreach_copy_``/``_foreach_zero_``: 0;
  ``_foreach_norm``: 2n; ``_foreach_max``: n.
* ``_fused_adamw_``/``_fused_adam_``: 13n (first moment lerp 3n, second moment scale and
  addcmul 4n, denominator sqrt/divide/add-eps 3n, update addcdiv 3n) + weight decay
  (decoupled: n, coupled: 2n) + amsgrad n + maximize n: AdamW with weight decay is 14n,
  as its single-tensor loop.
* ``_fused_sgd_``: update 2n + weight decay 2n + momentum 2n (+n with dampening, 0 on the
  first step) + nesterov 2n + maximize n.

Bytes: an in-place list op (``_foreach_add_``) reads every distinct tensor of its
arguments once and writes its first list; an out-of-place one writes its result lists.
A fused optimizer reads parameters, gradients and its state and writes parameters and
state: (4 + 3) x the parameters' bytes for Adam(W) (+2 with amsgrad), (2 + 1) for
plain SGD, (3 + 2) for SGD with momentum.
"""
from __future__ import annotations

from .registry import Tensor, Work, io_bytes, nbytes, register

_UNARY = """
abs acos asin atan ceil cos cosh erf erfc exp expm1 floor frac lgamma log log10 log1p log2 neg reciprocal round
rsqrt sigmoid sign sin sinh sqrt tan tanh trunc
""".split()
_BINARY = "mul div maximum minimum pow clamp_min clamp_max".split()


def _names(base: list[str]) -> list[str]:
    """``_foreach_<op>`` and its in-place ``_foreach_<op>_``."""
    return [f"_foreach_{b}{s}" for b in base for s in ("", "_")]


def _elements(tensors) -> int:
    return sum(t.numel() for t in tensors if isinstance(t, Tensor))


def _list_bytes(tensors) -> int:
    return sum(nbytes(t) for t in tensors if isinstance(t, Tensor))


def _foreach_work(per_element: int, res, args, kwargs) -> Work:
    """per_element x n other flops; bytes: inputs read once, plus the first list written when in place."""
    n = _elements(args[0])
    written = _list_bytes(args[0]) if res is None else 0
    return Work(0, per_element * n, io_bytes(args, kwargs, res) + written)


def _scaled(value) -> bool:
    """A scale other than 1: a number != 1, or per-tensor scalars (a list or a tensor)."""
    return isinstance(value, (list, tuple, Tensor)) or value != 1


@register(*_names(_UNARY), *_names(_BINARY))
def foreach_elementwise(res, *args, **kw):
    """n: one flop per element of every tensor in the first list."""
    return _foreach_work(1, res, args, kw)


@register(*_names(["add", "sub"]))
def foreach_add(res, *args, **kw):
    """n, plus n when alpha != 1."""
    return _foreach_work(2 if kw.get("alpha", 1) != 1 else 1, res, args, kw)


@register(*_names(["addcmul", "addcdiv"]))
def foreach_addcmul(res, *args, **kw):
    """2n, plus n when the value (a scalar, a scalar list or a tensor of scalars) scales."""
    value = args[3] if len(args) > 3 else kw.get("value", kw.get("scalars", 1))
    return _foreach_work(3 if _scaled(value) else 2, res, args, kw)


@register(*_names(["lerp"]))
def foreach_lerp(res, *args, **kw):
    """3n: start + weight * (end - start)."""
    return _foreach_work(3, res, args, kw)


@register("_foreach_copy_", "_foreach_zero_", "_foreach_copy", "_foreach_zero")
def foreach_copy(res, *args, **kw):
    """0 flops: data movement (bytes only)."""
    return _foreach_work(0, res, args, kw)


@register("_foreach_norm")
def foreach_norm(res, *args, **kw):
    """2n: square (or |x|^p) and add."""
    return _foreach_work(2, res, args, kw)


@register("_foreach_max")
def foreach_max(res, *args, **kw):
    """n: one comparison per element."""
    return _foreach_work(1, res, args, kw)


def _adam(params, state_steps, kw, decoupled: bool) -> Work:
    n = _elements(params)
    amsgrad = bool(kw.get("amsgrad", False))
    other = 13 * n + (n if decoupled else 2 * n) * (kw.get("weight_decay", 0) != 0)
    other += n * amsgrad + n * bool(kw.get("maximize", False))
    return Work(0, other, (7 + 2 * amsgrad) * _list_bytes(params) + _list_bytes(state_steps))


@register("_fused_adamw_", "_fused_adamw")
def fused_adamw(res, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *args, **kw):
    """13n + decoupled weight decay n (when != 0) + amsgrad n + maximize n; bytes (4+3) x params (+2 amsgrad)."""
    return _adam(params, state_steps, kw, decoupled=True)


@register("_fused_adam_", "_fused_adam")
def fused_adam(res, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *args, **kw):
    """13n + coupled weight decay 2n (grad + wd * param, when != 0) + amsgrad n + maximize n; bytes as AdamW."""
    return _adam(params, state_steps, kw, decoupled=False)


@register("_fused_sgd_", "_fused_sgd")
def fused_sgd(res, params, grads, momentum_buffers, *args, **kw):
    """Update 2n + weight decay 2n + momentum 2n (+n dampening; 0 on the first step) + nesterov 2n + maximize n."""
    n = _elements(params)
    momentum = kw.get("momentum", 0) != 0
    other = 2 * n + 2 * n * (kw.get("weight_decay", 0) != 0) + n * bool(kw.get("maximize", False))
    if momentum and not kw.get("is_first_step", False):
        other += 2 * n + n * (kw.get("dampening", 0) != 0)
    other += 2 * n * bool(kw.get("nesterov", False))
    return Work(0, other, (5 if momentum else 3) * _list_bytes(params))
