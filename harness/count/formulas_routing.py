"""Selection and routing ops (mixture-of-experts routers, samplers): sort, argsort, topk, histc, bincount.

None of them has MACs.  Their comparisons and increments are counted as other
flops, as the reductions' rule counts ``max``/``argmax`` (one per input element):

* ``sort``/``argsort``/``msort`` of N elements along a dimension of length L:
  N x ceil(log2 L) comparisons (0 when L is 1);
* ``topk(k)`` of N elements: N x max(1, ceil(log2 k)) comparisons (a k-heap);
* ``histc``: N (one bin increment per input element); ``bincount``: N, + N with weights.

Bytes follow the default rule (inputs read, values and indices written).  ``cumsum``
(offsets from counts) is a reduction (``formulas_pointwise``); ``nonzero`` moves
data only (``formulas_shape``).
"""
from __future__ import annotations

import math

from .registry import Work, numel, register


def _log2_ceil(n: int) -> int:
    return math.ceil(math.log2(n)) if n > 1 else 0


@register("sort", "argsort", "msort")
def sort(res, x, dim=-1, *args, **kw):
    """N x ceil(log2 L) comparisons, L = the length of the sorted dimension (msort: dim 0)."""
    if not isinstance(dim, int):  # sort.stable passes (x, *, stable, dim, descending): dim is a keyword
        dim = kw.get("dim", -1)
    length = x.shape[dim] if x.dim() else 1
    return Work(0, numel(x) * _log2_ceil(int(length)))


@register("topk")
def topk(res, x, k, *args, **kw):
    """N x max(1, ceil(log2 k)) comparisons."""
    return Work(0, numel(x) * max(1, _log2_ceil(int(k))))


@register("histc")
def histc(res, x, *args, **kw):
    """N: one bin increment per input element."""
    return Work(0, numel(x))


@register("bincount")
def bincount(res, x, weights=None, *args, **kw):
    """N increments, + N adds of weights when given."""
    return Work(0, numel(x) * (2 if weights is not None else 1))
