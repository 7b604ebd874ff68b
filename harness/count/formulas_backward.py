"""Backward formulas: the gradient kernels autograd dispatches in a training step.

Matmul-class work (MACs) of a backward kernel is counted per gradient it actually
computes, as its ``output_mask`` asks: the first layer of a network computes no input
gradient and a frozen layer no weight gradient, so their backward is not 2 x forward.

* ``convolution_backward``: grad input = the forward's MACs (a transposed convolution
  of grad_output with W), grad weight = the forward's MACs (a correlation of input and
  grad_output); each only where ``output_mask`` asks; grad bias = numel(grad_output)
  other flops (a sum).  Forward MACs = numel(out) * prod(W.shape[1:]) (numel(input) *
  prod(W.shape[1:]) when transposed), padding counted as work, as in the forward.
* fused attention backward (flash, efficient, cudnn, the CPU flash kernel): per head
  five matmuls, as ``torch.utils.flop_counter``: the scores QK^T are *recomputed*
  (L*S*E MACs), dP = dO V^T (L*S*Ev), dV = P^T dO (S*L*Ev), dQ = dS K (L*S*E),
  dK = dS^T Q (S*L*E); other flops: softmax backward 4 per score (L*S) and the
  recomputed softmax 5 per score.  The recomputed QK^T is executed, not model work:
  :func:`attention_recompute_macs` gives it, so MFU can leave it out.
* the math attention path decomposes into matmuls and softmax (their own formulas).

Other flops (no MACs), n = elements of the gradient produced unless stated:

* activations (gelu, silu, sigmoid, tanh, elu, softplus, mish, hardswish, hardsigmoid,
  leaky_relu, log_sigmoid): 2n (evaluate the derivative, one flop as the forward
  activation; multiply by the gradient); threshold (relu) and hardtanh: n (select);
* softmax backward: 4n (g*y, row sum, subtract, multiply); log_softmax backward:
  4n (exp, multiply by the row sum, row sum, subtract);
* batch norm backward, N input elements, C channels: xhat 2N; sum(dy) N and
  sum(dy * xhat) 2N whenever any gradient is asked; grad input in training 4N
  (dy - mean(dy) - xhat * mean(dy xhat), scaled) + 2C, in eval N (dy * w * invstd);
* layer / group / RMS norm backward: as batch norm's training rule with rows (groups)
  in place of channels; RMS norm has no mean: xhat N, sum(dy*xhat) 2N, dx 3N;
* embedding backward: numel(grad_output) adds (scatter-add into the weight gradient);
* max-pool backward: numel(grad_output) adds (scatter to the argmax);
  avg-pool backward: numel(grad_output) * prod(kernel) adds + numel(grad_output)
  divides; adaptive avg-pool backward: numel(input) adds + numel(grad_output) divides;
* dropout backward: n (multiply by mask * scale); nll_loss forward: 2 numel(target)
  (gather, negate and reduce), backward: numel(target);
  mse_loss backward: 3n (subtract, scale, multiply by grad).

Bytes follow the default rule (every distinct tensor read once, outputs written once).
"""
from __future__ import annotations

from .registry import Work, first, kernel_dims, numel, prod, register


def _mask(output_mask, k: int = 3) -> list[bool]:
    return [bool(m) for m in output_mask] if output_mask is not None else [True] * k


@register("convolution_backward")
def convolution_backward(res, grad_out, x, w, bias_sizes, stride, padding, dilation, transposed, output_padding,
                         groups, output_mask, *args, **kw):
    """grad input and grad weight: the forward's MACs each, where output_mask asks; grad bias: numel(grad_out)."""
    mask = _mask(output_mask)
    fwd = numel(x if transposed else grad_out) * prod(w.shape[1:])
    macs = fwd * (int(mask[0]) + int(mask[1]))
    return Work(macs, numel(grad_out) if mask[2] else 0)


def _attention_macs(q, k, v) -> tuple[int, int]:
    """(MACs of QK^T, MACs of PV) over batch x heads, q [.., L, E], k [.., S, E], v [.., S, Ev]."""
    lead = prod(q.shape[:-2])
    L, E = q.shape[-2], q.shape[-1]
    S, Ev = k.shape[-2], v.shape[-1]
    return lead * L * S * E, lead * L * S * Ev


def _attention_backward(q, k, v) -> Work:
    qk, pv = _attention_macs(q, k, v)
    scores = qk // q.shape[-1] if q.shape[-1] else 0
    return Work(3 * qk + 2 * pv, 9 * scores)


@register("_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_dot_product_flash_attention_backward",
          "_scaled_dot_product_cudnn_attention_backward", "_flash_attention_backward")
def flash_attention_backward(res, grad_out, q, k, v, *args, **kw):
    """(grad_out, q, k, v, ...): macs = 3 L*S*E + 2 L*S*Ev per head (QK^T recomputed, dQ, dK; dP, dV); other = 9 L*S."""
    return _attention_backward(q, k, v)


@register("_scaled_dot_product_efficient_attention_backward", "_efficient_attention_backward")
def efficient_attention_backward(res, grad_out, q, k, v, *args, **kw):
    """As the flash backward (the kernel recomputes the scores from the log-sum-exp)."""
    return _attention_backward(q, k, v)


#: fused attention backward kernels whose MACs include one recomputed QK^T
RECOMPUTING_ATTENTION = frozenset(
    "aten::" + n for n in ("_scaled_dot_product_flash_attention_for_cpu_backward",
                           "_scaled_dot_product_flash_attention_backward",
                           "_scaled_dot_product_cudnn_attention_backward", "_flash_attention_backward",
                           "_scaled_dot_product_efficient_attention_backward", "_efficient_attention_backward"))


def attention_recompute_macs(op: str, input_shapes: list) -> int:
    """MACs of the scores QK^T a fused attention backward recomputes (0 for other ops).

    ``input_shapes``: the call's argument shapes (grad_out, q, k, v, ...), as the counter's events list them.
    """
    if op not in RECOMPUTING_ATTENTION or len(input_shapes) < 3:
        return 0
    q, k = input_shapes[1], input_shapes[2]
    return prod(q[:-2]) * q[-2] * k[-2] * q[-1]


ACTIVATION_BACKWARD = """
gelu_backward silu_backward sigmoid_backward tanh_backward elu_backward softplus_backward mish_backward
hardswish_backward hardsigmoid_backward leaky_relu_backward log_sigmoid_backward
""".split()


@register(*ACTIVATION_BACKWARD)
def activation_backward(res, *args, **kw):
    """2n: the derivative (one flop, as the forward activation) and the multiply by the gradient."""
    return Work(0, 2 * numel(first(res)))


@register("threshold_backward", "hardtanh_backward")
def select_backward(res, *args, **kw):
    """n: pass the gradient where the input was in range, else 0 (one select per element, as relu)."""
    return Work(0, numel(first(res)))


@register("_softmax_backward_data", "_log_softmax_backward_data")
def softmax_backward(res, grad_out, *args, **kw):
    """4n: softmax dx = y * (g - sum(g * y)); log_softmax dx = g - exp(y) * sum(g)."""
    return Work(0, 4 * numel(grad_out))


def _norm_backward(n: int, groups: int, mask: list[bool], training: bool = True) -> int:
    """xhat 2N, sum(dy) N, sum(dy*xhat) 2N; dx 4N + 2G in training, N in eval."""
    if not any(mask):
        return 0
    other = 5 * n
    if mask[0]:
        other += 4 * n + 2 * groups if training else n
    return other


@register("native_batch_norm_backward")
def batch_norm_backward(res, grad_out, x, weight, running_mean, running_var, save_mean, save_invstd, train, eps,
                        output_mask, *args, **kw):
    """Norm backward rule with G = channels; dx = dy * w * invstd (N) in eval."""
    channels = x.shape[1] if x.dim() > 1 else x.shape[0]
    return Work(0, _norm_backward(numel(x), channels, _mask(output_mask), bool(train)))


@register("native_layer_norm_backward")
def layer_norm_backward(res, grad_out, x, normalized_shape, mean, rstd, weight, bias, output_mask, *args, **kw):
    """Norm backward rule with G = rows (N / prod(normalized_shape))."""
    n = numel(x)
    inner = prod(normalized_shape)
    return Work(0, _norm_backward(n, n // inner if inner else 0, _mask(output_mask)))


@register("native_group_norm_backward")
def group_norm_backward(res, grad_out, x, mean, rstd, weight, N, C, HxW, group, output_mask, *args, **kw):
    """Norm backward rule with G = N x group."""
    return Work(0, _norm_backward(numel(x), int(N) * int(group), _mask(output_mask)))


@register("_fused_rms_norm_backward")
def rms_norm_backward(res, grad_out, x, normalized_shape, rstd, weight, output_mask, *args, **kw):
    """xhat N + sum(dy*xhat) 2N; dx 3N + 2 per row when asked."""
    n = numel(x)
    inner = prod(normalized_shape)
    mask = _mask(output_mask, 2)
    other = 3 * n if any(mask) else 0
    if mask[0]:
        other += 3 * n + 2 * (n // inner if inner else 0)
    return Work(0, other)


@register("embedding_dense_backward", "embedding_backward", "_embedding_bag_dense_backward")
def embedding_backward(res, grad_out, *args, **kw):
    """numel(grad_output) adds: each looked-up row's gradient is added into the weight gradient."""
    return Work(0, numel(grad_out))


@register("max_pool2d_with_indices_backward", "max_pool3d_with_indices_backward", "adaptive_max_pool2d_backward",
          "adaptive_max_pool3d_backward")
def max_pool_backward(res, grad_out, *args, **kw):
    """numel(grad_output) adds: each output gradient goes to its argmax."""
    return Work(0, numel(grad_out))


@register("avg_pool2d_backward", "avg_pool3d_backward")
def avg_pool_backward(res, grad_out, x, kernel_size, *args, **kw):
    """numel(grad_output) * prod(kernel) adds + numel(grad_output) divides."""
    k = prod(kernel_dims(kernel_size, x.dim() - 2))
    return Work(0, numel(grad_out) * (k + 1))


@register("_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward")
def adaptive_avg_pool_backward(res, grad_out, x, *args, **kw):
    """numel(input) adds + numel(grad_output) divides."""
    return Work(0, numel(x) + numel(grad_out))


@register("native_dropout_backward")
def dropout_backward(res, grad_out, mask, scale, *args, **kw):
    """n: grad * mask * scale."""
    return Work(0, numel(grad_out))


@register("nll_loss_forward", "nll_loss2d_forward")
def nll_loss_forward(res, x, target, *args, **kw):
    """The loss that starts a backward: numel(target) (gather and negate) + numel(target) (the reduction)."""
    return Work(0, 2 * numel(target))


@register("nll_loss_backward", "nll_loss2d_backward")
def nll_loss_backward(res, grad_out, x, target, *args, **kw):
    """numel(target): one scaled write per target (a scatter of -grad)."""
    return Work(0, numel(target))


@register("mse_loss_backward")
def mse_loss_backward(res, grad_out, x, target, *args, **kw):
    """3n: subtract, scale by 2/N, multiply by grad."""
    return Work(0, 3 * numel(x))
