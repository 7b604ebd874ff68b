"""Normalization formulas: batch, layer, group, instance and RMS norm, in their
composite (``batch_norm``) and backend (``native_batch_norm``, ``_native_batch_norm_legit*``,
``cudnn_batch_norm``, ...) forms, training and inference.

With N input elements and G normalization groups (channels for batch norm,
rows for layer/RMS norm, batch x groups for group norm, batch x channels for
instance norm), other flops are:

* normalize: 2N (subtract the mean, multiply by 1/sqrt(var + eps)); RMS norm: N;
* per-group constants: 2G (add eps, reciprocal square root);
* statistics, when computed from the input (batch norm in training, layer, group
  and instance norm): 4N (mean: add; variance: subtract, square, add);
  RMS norm: 2N (square, add);
* affine: N for a weight, N for a bias;
* running-statistics update (batch/instance norm in training with running
  buffers): 4C (scale and add, for mean and variance).

No MACs.  Bytes follow the default rule (input, per-channel vectors and outputs).
"""
from __future__ import annotations

from .registry import Work, numel, prod, register


def _channels(x) -> int:
    return x.shape[1] if x.dim() > 1 else x.shape[0]


def batch_norm_work(x, weight, bias, running_mean, training: bool) -> Work:
    n = numel(x)
    c = _channels(x)
    other = 2 * n + 2 * c
    other += n if weight is not None else 0
    other += n if bias is not None else 0
    if training:
        other += 4 * n
        if running_mean is not None:
            other += 4 * c
    return Work(0, other)


@register("batch_norm", "native_batch_norm", "_batch_norm_impl_index", "cudnn_batch_norm", "miopen_batch_norm")
def batch_norm(res, x, weight, bias, running_mean, running_var, training, *args, **kw):
    """(x, weight, bias, running_mean, running_var, training, ...): see module docstring, G = channels."""
    return batch_norm_work(x, weight, bias, running_mean, bool(training))


@register("_native_batch_norm_legit")
def batch_norm_legit(res, x, weight, bias, *args, **kw):
    """_native_batch_norm_legit(x, w, b, running_mean, running_var, training, ...) and its no_stats overload."""
    if len(args) >= 3 and not isinstance(args[0], bool):  # with running stats
        running_mean, training = args[0], bool(args[2])
    else:  # .no_stats(x, w, b, training, momentum, eps)
        running_mean, training = None, bool(args[0])
    return batch_norm_work(x, weight, bias, running_mean, training)


@register("_native_batch_norm_legit_no_training", "_batch_norm_no_update")
def batch_norm_no_training(res, x, weight, bias, *args, **kw):
    """Inference batch norm: normalize 2N + 2C + affine."""
    return batch_norm_work(x, weight, bias, None, False)


@register("_batch_norm_with_update")
def batch_norm_with_update(res, x, weight, bias, running_mean, *args, **kw):
    """Training batch norm with running-statistics update."""
    return batch_norm_work(x, weight, bias, running_mean, True)


@register("instance_norm")
def instance_norm(res, x, weight, bias, running_mean, running_var, use_input_stats, *args, **kw):
    """G = batch x channels; statistics when use_input_stats; running update 4C when buffers are given."""
    n = numel(x)
    groups = x.shape[0] * x.shape[1] if x.dim() > 2 else x.shape[0]
    other = 2 * n + 2 * groups
    other += n if weight is not None else 0
    other += n if bias is not None else 0
    if use_input_stats:
        other += 4 * n
        if running_mean is not None:
            other += 4 * _channels(x)
    return Work(0, other)


def _row_norm(x, normalized_shape, weight, bias) -> Work:
    n = numel(x)
    inner = prod(normalized_shape)
    rows = n // inner if inner else 0
    other = 4 * n + 2 * n + 2 * rows
    other += n if weight is not None else 0
    other += n if bias is not None else 0
    return Work(0, other)


@register("layer_norm", "native_layer_norm")
def layer_norm(res, x, normalized_shape, weight=None, bias=None, *args, **kw):
    """Statistics 4N + normalize 2N + 2 per row + affine (N per weight, N per bias)."""
    return _row_norm(x, normalized_shape, weight, bias)


@register("group_norm")
def group_norm(res, x, num_groups, weight=None, bias=None, *args, **kw):
    """G = batch x num_groups: statistics 4N + normalize 2N + 2G + affine."""
    n = numel(x)
    groups = x.shape[0] * num_groups
    other = 6 * n + 2 * groups
    other += n if weight is not None else 0
    other += n if bias is not None else 0
    return Work(0, other)


@register("native_group_norm")
def native_group_norm(res, x, weight, bias, N, C, HxW, group, *args, **kw):
    """As group_norm with G = N x group."""
    n = numel(x)
    other = 6 * n + 2 * int(N) * int(group)
    other += n if weight is not None else 0
    other += n if bias is not None else 0
    return Work(0, other)


@register("rms_norm", "_fused_rms_norm")
def rms_norm(res, x, normalized_shape, weight=None, *args, **kw):
    """Square and add 2N + 2 per row + normalize N + weight N."""
    n = numel(x)
    inner = prod(normalized_shape)
    rows = n // inner if inner else 0
    return Work(0, 3 * n + 2 * rows + (n if weight is not None else 0))
