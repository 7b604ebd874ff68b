"""Matmul-class formulas: mm, addmm, bmm, baddbmm, addbmm, mv, dot, outer, matmul, linear, einsum, bilinear,
and the grouped matmuls of mixture-of-experts layers (_grouped_mm, _scaled_grouped_mm).

MACs are the multiply-accumulates of the product; the add of a bias / ``self``
term and alpha/beta scaling are other flops (see ``scale_add_other``).
"""
from __future__ import annotations

import torch

from .registry import Work, first, numel, register, scale_add_other
from .support import meta_like, reference_cost, shape_key

aten = torch.ops.aten


@register("mm")
def mm(res, a, b, *args, **kw):
    """mm(A[m,k], B[k,n]): macs = m*n*k."""
    m, k = a.shape
    return Work(m * b.shape[1] * k)


@register("addmm")
def addmm(res, bias, a, b, *args, beta=1, alpha=1, **kw):
    """addmm(C, A[m,k], B[k,n]): macs = m*n*k; other = m*n (add C) [+m*n if beta not in {0,1}] [+m*n if alpha != 1]."""
    m, k = a.shape
    n = b.shape[1]
    return Work(m * n * k, scale_add_other(m * n, beta, alpha))


@register("_addmm_activation")
def addmm_activation(res, bias, a, b, *args, beta=1, alpha=1, use_gelu=False, **kw):
    """addmm followed by relu/gelu: addmm's count + m*n for the activation."""
    m, k = a.shape
    n = b.shape[1]
    return Work(m * n * k, scale_add_other(m * n, beta, alpha) + m * n)


@register("bmm")
def bmm(res, a, b, *args, **kw):
    """bmm(A[b,m,k], B[b,k,n]): macs = b*m*n*k."""
    bs, m, k = a.shape
    return Work(bs * m * b.shape[2] * k)


@register("baddbmm")
def baddbmm(res, c, a, b, *args, beta=1, alpha=1, **kw):
    """baddbmm(C, A[b,m,k], B[b,k,n]): macs = b*m*n*k; other = b*m*n (add C) [+scaling as addmm]."""
    bs, m, k = a.shape
    n = b.shape[2]
    return Work(bs * m * n * k, scale_add_other(bs * m * n, beta, alpha))


@register("addbmm")
def addbmm(res, c, a, b, *args, beta=1, alpha=1, **kw):
    """addbmm(C[m,n], A[b,m,k], B[b,k,n]): macs = b*m*n*k (the sum over b accumulates); other = m*n add C [+scaling]."""
    bs, m, k = a.shape
    n = b.shape[2]
    return Work(bs * m * n * k, scale_add_other(m * n, beta, alpha))


@register("mv")
def mv(res, a, v, *args, **kw):
    """mv(A[m,k], v[k]): macs = m*k."""
    return Work(a.shape[0] * a.shape[1])


@register("addmv")
def addmv(res, c, a, v, *args, beta=1, alpha=1, **kw):
    """addmv(c[m], A[m,k], v[k]): macs = m*k; other = m (add c) [+scaling]."""
    m, k = a.shape
    return Work(m * k, scale_add_other(m, beta, alpha))


@register("dot", "vdot")
def dot(res, a, b, *args, **kw):
    """dot(a[k], b[k]): macs = k."""
    return Work(a.shape[0])


@register("outer", "ger")
def outer(res, a, b, *args, **kw):
    """outer(a[m], b[n]): one multiply per output element, nothing accumulated: other = m*n (as einsum 'i,j->ij')."""
    return Work(0, a.shape[0] * b.shape[0])


@register("matmul")
def matmul(res, a, b, *args, **kw):
    """matmul(A[..., m, k], B[..., k, n]) with broadcasting and 1-d cases: macs = numel(out) * k."""
    return Work(numel(first(res)) * a.shape[-1])


@register("linear")
def linear(res, x, weight, bias=None, *args, **kw):
    """linear(x[..., k], W[n, k], b[n]): macs = numel(out) * k; other = numel(out) for the bias add."""
    out = first(res)
    return Work(numel(out) * x.shape[-1], numel(out) if bias is not None else 0)


# ------------------------------------------------------------ einsum, bilinear



@register("einsum")
def einsum(res, equation, tensors, *args, path=None, **kw):
    """einsum: the Work of PyTorch's own decomposition of this equation (permute/reshape/bmm/sum), run on meta.

    For two operands this is macs = the product of the sizes of all distinct
    indices (each output element accumulates over the contracted ones).
    """
    tensors = list(tensors)
    cache_key = ("einsum", equation, shape_key(tensors), tuple(path) if path else None)

    def setup():
        metas = [meta_like(t) for t in tensors]
        return lambda: aten.einsum.default.decompose(equation, metas, path=path)

    return reference_cost(cache_key, setup)


@register("bilinear")
def bilinear(res, x1, x2, weight, bias=None, *args, **kw):
    """bilinear(x1[..., I1], x2[..., I2], W[O, I1, I2], b[O]): macs = N*O*I1*I2 + N*O*I2; other = N*O with bias."""
    out = first(res)
    o, i1, i2 = weight.shape
    n = numel(out) // o if o else 0
    return Work(n * o * i1 * i2 + n * o * i2, numel(out) if bias is not None else 0)


# ------------------------------------------------------------ grouped matmul (mixture of experts)


def _used(offs, full: int) -> int:
    """Rows (or columns, or contraction length) the groups cover: the last offset, read on a real device;
    on meta (values unknown) the full size.  Never more than ``full``."""
    if offs is None or offs.numel() == 0 or offs.device.type == "meta":
        return int(full)
    return min(int(offs[-1].item()), int(full))


def grouped_mm_macs(a, b, offs) -> tuple[int, int]:
    """(MACs, output elements computed) of ``_grouped_mm(a, b, offs)`` in each layout its schema allows.

    * 2D x 3D, a[M, K], b[G, K, N]: groups split a's rows: rows x K x N, rows = offs[-1];
    * 3D x 2D, a[G, M, K], b[K, N]: groups split b's columns: M x K x cols, cols = offs[-1];
    * 2D x 2D, a[M, K], b[K, N], out[G, M, N]: groups split K: M x N x offs[-1];
    * 3D x 3D, a[G, M, K], b[G, K, N] (no offsets, a bmm): G x M x K x N.

    Rows, columns or K beyond the last offset are not computed (PyTorch leaves those output
    rows unwritten); on the meta device offsets have no values and the full size counts.
    """
    if a.dim() == 2 and b.dim() == 3:
        m, k = a.shape
        rows = _used(offs, m)
        return rows * k * b.shape[2], rows * b.shape[2]
    if a.dim() == 3 and b.dim() == 2:
        g, m, k = a.shape
        cols = _used(offs, b.shape[1])
        return m * k * cols, m * cols
    if a.dim() == 2 and b.dim() == 2:
        m, n = a.shape[0], b.shape[1]
        groups = offs.shape[0] if offs is not None else 1
        return m * n * _used(offs, a.shape[1]), groups * m * n
    g, m, k = a.shape
    return g * m * k * b.shape[2], g * m * b.shape[2]


@register("_grouped_mm")
def grouped_mm(res, a, b, offs=None, bias=None, *args, **kw):
    """_grouped_mm(a, b, offs, bias): macs by ``grouped_mm_macs``; other = computed outputs with a bias."""
    macs, outs = grouped_mm_macs(a, b, offs)
    return Work(macs, outs if bias is not None else 0)


@register("_scaled_grouped_mm")
def scaled_grouped_mm(res, a, b, scale_a, scale_b, offs=None, bias=None, *args, **kw):
    """_scaled_grouped_mm (fp8 with scales): macs as ``_grouped_mm``; other = 2 per computed output
    (the scale_a and scale_b multiplies) + 1 with a bias."""
    macs, outs = grouped_mm_macs(a, b, offs)
    return Work(macs, outs * (2 + (1 if bias is not None else 0)))
