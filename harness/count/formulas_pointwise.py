"""Elementwise arithmetic, activations, softmax, reductions and dropout.

All of these are ``other`` flops (no MACs).  Rules (n = elements of the output
unless stated otherwise):

* unary math and activations (relu, gelu, silu, sigmoid, tanh, exp, sqrt, ...): n;
* binary arithmetic and comparisons (add, sub, mul, div, pow, maximum, eq, ...): n,
  plus n when an ``alpha`` other than 1 scales the second operand;
* ``addcmul``/``addcdiv``: 2n, plus n when ``value`` != 1; ``lerp``: 3n;
  ``glu``: 2n (sigmoid and multiply);
* softmax: 5 per element (max, subtract, exp, sum, divide); log_softmax: 5 per
  element (max, subtract, exp, sum, subtract) + 1 per row (log);
* reductions over an input of N elements: sum/prod/max/min/argmax/any/cumsum: N;
  mean: N + n (the divide); var/std: 4N (mean, subtract, square, add);
  norm: 2N (square, add); logsumexp: 4N;
* dropout while training with p > 0: n (scale by the mask); otherwise 0 flops and
  0 bytes (it returns its input).
"""
from __future__ import annotations

from .registry import ZERO, Tensor, Work, aliases_input, first, numel, register

UNARY = """
abs neg negative exp exp2 expm1 log log2 log10 log1p sqrt rsqrt reciprocal square
sin cos tan asin acos atan sinh cosh tanh asinh acosh atanh arcsin arccos arctan
erf erfc erfinv sigmoid logit sign sgn signbit floor ceil round trunc frac fix
relu relu6 gelu silu mish elu selu celu leaky_relu hardtanh hardswish hardsigmoid
softplus softshrink hardshrink tanhshrink threshold log_sigmoid log_sigmoid_forward
clamp clamp_min clamp_max clip nan_to_num prelu _prelu_kernel rrelu rrelu_with_noise
bitwise_not logical_not isnan isinf isfinite isneginf isposinf isreal
angle conj_physical digamma lgamma i0 special_i0e special_i1 special_i1e sinc deg2rad rad2deg
polygamma mvlgamma
""".split()

BINARY = """
mul multiply div divide true_divide floor_divide remainder fmod pow float_power
maximum minimum fmax fmin atan2 arctan2 hypot copysign heaviside xlogy nextafter
eq ne lt le gt ge greater less greater_equal less_equal not_equal
logical_and logical_or logical_xor bitwise_and bitwise_or bitwise_xor
bitwise_left_shift bitwise_right_shift __and__ __or__ __xor__ __lshift__ __rshift__
logaddexp logaddexp2 ldexp special_xlog1py
""".split()


def _names(base: list[str]) -> list[str]:
    """Each op and its in-place variant (``relu`` and ``relu_``)."""
    out = []
    for name in base:
        out.append(name)
        if not name.endswith("_"):
            out.append(name + "_")
    return out


@register(*_names(UNARY), *_names(BINARY))
def elementwise(res, *args, **kw):
    """One flop per output element."""
    return Work(0, numel(first(res)))


@register(*_names(["add", "sub", "subtract", "rsub"]))
def add(res, a, b=None, alpha=1, *args, **kw):
    """add/sub(a, b, alpha): n, plus n when alpha != 1."""
    alpha = kw.get("alpha", alpha)
    n = numel(first(res))
    return Work(0, n + (n if alpha != 1 else 0))


@register(*_names(["addcmul", "addcdiv"]))
def addcmul(res, a, t1, t2, value=1, **kw):
    """self + value * t1 (*|/) t2: 2n, plus n when value != 1."""
    value = kw.get("value", value)
    n = numel(first(res))
    return Work(0, 2 * n + (n if value != 1 else 0))


@register(*_names(["lerp"]))
def lerp(res, *args, **kw):
    """start + weight * (end - start): 3n."""
    return Work(0, 3 * numel(first(res)))


@register("glu")
def glu(res, *args, **kw):
    """a * sigmoid(b) over halves: 2n (n = output elements)."""
    return Work(0, 2 * numel(first(res)))


@register("softmax", "_softmax", "_safe_softmax")
def softmax(res, x, *args, **kw):
    """5 per element: max, subtract, exp, sum, divide."""
    return Work(0, 5 * numel(x))


@register("log_softmax", "_log_softmax")
def log_softmax(res, x, dim, *args, **kw):
    """5 per element (max, subtract, exp, sum, subtract) + 1 per row (log)."""
    n = numel(x)
    rows = n // x.shape[dim] if x.dim() and x.shape[dim] else 0
    return Work(0, 5 * n + rows)


@register(
    "sum", "nansum", "prod", "amax", "amin", "max", "min", "argmax", "argmin", "all", "any",
    "cumsum", "cumsum_", "cumprod", "cumprod_", "count_nonzero", "aminmax", "cummax", "cummin", "median", "nanmedian",
)
def reduce(res, x, *args, **kw):
    """One flop per input element (N)."""
    if args and isinstance(args[0], Tensor):
        # max/min(a, b) with two tensors is elementwise
        return Work(0, numel(first(res)))
    return Work(0, numel(x))


@register("mean", "nanmean")
def mean(res, x, *args, **kw):
    """N adds + n divides (N input, n output elements)."""
    return Work(0, numel(x) + numel(first(res)))


@register("var", "std", "var_mean", "std_mean")
def var(res, x, *args, **kw):
    """4N: mean (1), subtract (1), square (1), add (1) per input element."""
    return Work(0, 4 * numel(x))


@register("norm", "linalg_vector_norm", "frobenius_norm", "nuclear_norm")
def norm(res, x, *args, **kw):
    """2N: square (or |x|^p) and add per input element."""
    return Work(0, 2 * numel(x))


@register("logsumexp")
def logsumexp(res, x, *args, **kw):
    """4N: max, subtract, exp, add per input element."""
    return Work(0, 4 * numel(x))


@register("dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout",
          "dropout_", "feature_dropout_", "alpha_dropout_", "feature_alpha_dropout_")
def dropout(res, x, p, train, *args, **kw):
    """Training with p > 0: n (scale by the mask), bytes by the default rule; else a no-op (0, 0 bytes)."""
    if aliases_input(res, (x,)) and not (train and p > 0):
        return ZERO
    return Work(0, numel(first(res)) if (train and p > 0) else 0)


@register("native_dropout")
def native_dropout(res, x, p, train=None, *args, **kw):
    """Training with p > 0: n (mask and scale); the mask output counts in bytes."""
    return Work(0, numel(x) if (train is None or train) and p > 0 else 0)
