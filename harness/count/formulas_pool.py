"""Pooling formulas (max / average, fixed and adaptive, 1d/2d/3d) and interpolation.

* fixed windows: ``numel(out) * prod(kernel)`` other flops (one compare or add
  per window element, padding included; the average's divide is the window's
  last op);
* adaptive windows: exact, the sum over output positions of their window sizes
  (PyTorch's windows: start = floor(i*in/out), end = ceil((i+1)*in/out)) times
  the leading (batch x channel) elements.

Bytes follow the default rule (indices outputs of max pooling included).
"""
from __future__ import annotations

from .registry import Work, first, kernel_dims, numel, prod, register


def _fixed(res, kernel_size, dims: int) -> Work:
    return Work(0, numel(first(res)) * prod(kernel_dims(kernel_size, dims)))


@register("max_pool1d", "max_pool1d_with_indices", "avg_pool1d")
def pool1d(res, x, kernel_size, *args, **kw):
    """numel(out) * k."""
    return _fixed(res, kernel_size, 1)


@register("max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "mkldnn_max_pool2d", "quantized_max_pool2d")
def pool2d(res, x, kernel_size, *args, **kw):
    """numel(out) * kh * kw."""
    return _fixed(res, kernel_size, 2)


@register("max_pool3d", "max_pool3d_with_indices", "avg_pool3d", "mkldnn_max_pool3d")
def pool3d(res, x, kernel_size, *args, **kw):
    """numel(out) * kd * kh * kw."""
    return _fixed(res, kernel_size, 3)


def adaptive_window_total(in_size: int, out_size: int) -> int:
    """Sum of PyTorch's adaptive window lengths along one dimension."""
    in_size, out_size = int(in_size), int(out_size)
    if out_size <= 0:
        return 0
    return sum(
        -(-((i + 1) * in_size) // out_size) - (i * in_size) // out_size for i in range(out_size)
    )


def _adaptive(x, res, dims: int) -> Work:
    out = first(res)
    in_sp = list(x.shape[-dims:])
    out_sp = list(out.shape[-dims:])
    lead = numel(x) // prod(in_sp) if prod(in_sp) else 0
    total = lead
    for i, o in zip(in_sp, out_sp):
        total *= adaptive_window_total(i, o)
    return Work(0, total)


@register("adaptive_avg_pool1d", "adaptive_max_pool1d")
def adaptive1d(res, x, output_size, *args, **kw):
    """sum of adaptive window sizes x leading elements."""
    return _adaptive(x, res, 1)


@register("adaptive_avg_pool2d", "_adaptive_avg_pool2d", "adaptive_max_pool2d", "mkldnn_adaptive_avg_pool2d")
def adaptive2d(res, x, output_size, *args, **kw):
    """sum of adaptive window sizes (per dim, multiplied) x leading elements; global pooling = numel(input)."""
    return _adaptive(x, res, 2)


@register("adaptive_avg_pool3d", "_adaptive_avg_pool3d", "adaptive_max_pool3d")
def adaptive3d(res, x, output_size, *args, **kw):
    """sum of adaptive window sizes x leading elements."""
    return _adaptive(x, res, 3)



# ---------------------------------------------------------------- interpolation


@register("upsample_linear1d")
def upsample_linear1d(res, x, *args, **kw):
    """Linear interpolation: one lerp (subtract, multiply, add) per output element: 3 * numel(out)."""
    return Work(0, 3 * numel(first(res)))


@register("upsample_bilinear2d", "_upsample_bilinear2d_aa")
def upsample_bilinear2d(res, x, *args, **kw):
    """Bilinear: 3 lerps of 3 flops per output element: 9 * numel(out) (antialiased: same rule)."""
    return Work(0, 9 * numel(first(res)))


@register("upsample_trilinear3d")
def upsample_trilinear3d(res, x, *args, **kw):
    """Trilinear: 7 lerps of 3 flops per output element: 21 * numel(out)."""
    return Work(0, 21 * numel(first(res)))


@register("upsample_bicubic2d", "_upsample_bicubic2d_aa")
def upsample_bicubic2d(res, x, *args, **kw):
    """Bicubic: 5 four-tap 1-d interpolations (4 multiplies + 3 adds) per output element: 35 * numel(out)."""
    return Work(0, 35 * numel(first(res)))
