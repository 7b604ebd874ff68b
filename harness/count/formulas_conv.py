"""Convolution formulas: every aten convolution entry point, 1d/2d/3d, grouped,
depthwise, dilated, strided, padded and transposed.

For a convolution with weight ``W[c_out, c_in/groups, k...]`` the work per output
element is one MAC per weight element of its group: ``macs = numel(out) *
c_in/groups * prod(k)``.  A transposed convolution (weight ``W[c_in, c_out/groups,
k...]``) scatters every *input* element over ``c_out/groups * prod(k)`` outputs:
``macs = numel(input) * c_out/groups * prod(k)``.  Both are ``numel(x) *
prod(W.shape[1:])`` for the right ``x``.  Padded positions count as work (the
convention of the published figures).  The bias add is ``numel(out)`` other flops.
Bytes follow the default rule: input + weight + bias read, output written.
"""
from __future__ import annotations

from .registry import Work, first, numel, prod, register


def conv_work(x, w, res, transposed: bool, bias) -> Work:
    """macs = numel(out if not transposed else input) * prod(W.shape[1:]); other = numel(out) with bias."""
    out = first(res)
    macs = numel(x if transposed else out) * prod(w.shape[1:])
    return Work(macs, numel(out) if bias is not None else 0)


@register("convolution", "_convolution", "convolution_overrideable")
def convolution(res, x, w, bias, stride, padding, dilation, transposed, *args, **kw):
    """convolution(x, W, b, stride, padding, dilation, transposed, ...): see module docstring."""
    return conv_work(x, w, res, bool(transposed), bias)


@register("conv1d", "conv2d", "conv3d")
def conv_nd(res, x, w, bias=None, *args, **kw):
    """conv{1,2,3}d(x, W, b, ...) (also the padding='same'/'valid' overloads): macs = numel(out) * prod(W.shape[1:])."""
    return conv_work(x, w, res, False, bias)


@register("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def conv_transpose_nd(res, x, w, bias=None, *args, **kw):
    """conv_transpose{1,2,3}d(x, W[c_in, c_out/g, k...], b): macs = numel(x) * prod(W.shape[1:])."""
    return conv_work(x, w, res, True, bias)


@register("mkldnn_convolution", "miopen_convolution", "miopen_depthwise_convolution", "_nnpack_spatial_convolution")
def conv_backend(res, x, w, bias=None, *args, **kw):
    """Backend convolutions (self, weight, bias, padding, stride, ...): macs = numel(out) * prod(W.shape[1:])."""
    return conv_work(x, w, res, False, bias)


@register("cudnn_convolution")
def conv_cudnn(res, x, w, *args, **kw):
    """cudnn_convolution(self, weight, ...) has no bias: macs = numel(out) * prod(W.shape[1:])."""
    return conv_work(x, w, res, False, None)


@register("cudnn_convolution_transpose")
def conv_cudnn_transpose(res, x, w, *args, **kw):
    """cudnn_convolution_transpose(self, weight, ...) has no bias: macs = numel(x) * prod(W.shape[1:])."""
    return conv_work(x, w, res, True, None)


@register("miopen_convolution_transpose")
def conv_miopen_transpose(res, x, w, bias=None, *args, **kw):
    """miopen_convolution_transpose(self, weight, bias, ...): macs = numel(x) * prod(W.shape[1:])."""
    return conv_work(x, w, res, True, bias)


@register("_slow_conv2d_forward", "slow_conv3d_forward", "thnn_conv2d", "slow_conv_dilated2d", "slow_conv_dilated3d")
def conv_slow(res, x, w, kernel_size, bias=None, *args, **kw):
    """Slow convolutions (self, weight, kernel_size, bias, ...): macs = numel(out) * prod(W.shape[1:])."""
    return conv_work(x, w, res, False, bias)


@register("slow_conv_transpose2d", "slow_conv_transpose3d")
def conv_slow_transpose(res, x, w, kernel_size, bias=None, *args, **kw):
    """slow_conv_transpose{2,3}d(self, weight, kernel_size, bias, ...): macs = numel(x) * prod(W.shape[1:])."""
    return conv_work(x, w, res, True, bias)


@register("conv_tbc")
def conv_tbc(res, x, w, bias, *args, **kw):
    """conv_tbc(x[T,B,c_in], W[k,c_in,c_out], b): macs = numel(out) * k * c_in; other = numel(out)."""
    out = first(res)
    return Work(numel(out) * w.shape[0] * w.shape[1], numel(out))
