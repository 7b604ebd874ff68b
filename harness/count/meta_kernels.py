"""Fast meta kernels: output-only stand-ins for ops whose meta path is slow or too strict.

On the meta device a few ops run slow Python decompositions (batch_norm,
layer_norm, hardtanh_, linear, scaled_dot_product_attention, adaptive_avg_pool2d,
upsample_bilinear2d: milliseconds per call).  Counting needs only their outputs' shape, dtype and strides, which these
functions produce directly, as the CPU kernels would (so that later view/copy
decisions, and therefore bytes, match a CPU run).  Returning NotImplemented runs
the real meta kernel.  ``FAST_META`` maps an OpOverload to its stand-in; the
counting mode uses it only when counting on the meta device.
"""
from __future__ import annotations

import torch

from .registry import kernel_dims

aten = torch.ops.aten


def cpu_would_use_flash(q, k, v, attn_mask=None, dropout_p=0.0, enable_gqa=False) -> bool:
    """Whether PyTorch's CPU SDPA dispatch picks its flash kernel for these inputs (else math)."""
    if not torch.backends.cuda.flash_sdp_enabled():
        return False
    ts = [q, k, v]
    if any(t.is_nested for t in ts) or (dropout_p or 0) > 0:
        return False
    if q.dim() not in (3, 4) or k.dim() != q.dim() or v.dim() != q.dim():
        return False
    if q.dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        return False
    if not (q.dtype == k.dtype == v.dtype):
        return False
    if q.dim() == 4:
        if not (q.shape[0] == k.shape[0] == v.shape[0]):
            return False
        hq, hk, hv = q.shape[1], k.shape[1], v.shape[1]
        if not (hq == hk == hv or (enable_gqa and hk == hv and hk and hq % hk == 0)):
            return False
    elif not (q.shape[0] == k.shape[0] == v.shape[0]):
        return False
    if attn_mask is not None and attn_mask.dim() not in (2, q.dim()):
        return False
    if not (q.shape[-1] == k.shape[-1] == v.shape[-1]):
        return False
    if q.shape[-2] == 0 or k.shape[-2] == 0:
        return False
    if any(t.stride(-1) != 1 for t in ts):
        return False
    return True


def _empty(shape, dtype) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device="meta")


def _like(x, dtype=None):
    """``torch.empty_like(x)`` (preserve_format) without its slow meta path, or NotImplemented."""
    dtype = dtype or x.dtype
    if x.is_contiguous():
        return _empty(x.shape, dtype)
    shape, stride = tuple(x.shape), tuple(x.stride())
    if 1 in shape or len(set(stride)) != len(stride):
        return torch.empty_like(x, dtype=dtype)  # ties between dims: PyTorch's own rule (slower)
    order = sorted(range(len(shape)), key=lambda i: stride[i])  # innermost first
    dense = [0] * len(shape)
    step = 1
    for i in order:
        dense[i] = step
        step *= shape[i]
    return torch.empty_strided(shape, tuple(dense), dtype=dtype, device="meta")


def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, *args, scale=None, enable_gqa=False):
    if cpu_would_use_flash(q, k, v, attn_mask, dropout_p, enable_gqa):
        return _like(q)  # the CPU flash kernel allocates its output like the query
    return NotImplemented  # the math path: run the real (decomposed) meta kernels


def _same(x, *args, **kw):
    return x


def _unary(x, *args, **kw):
    if not x.is_floating_point():
        return NotImplemented
    return _like(x)


def _contiguous_out(x, *args, **kw):
    if not x.is_contiguous():
        return NotImplemented
    return _empty(x.shape, x.dtype)


def _layer_norm(x, *args, **kw):
    """layer_norm: the CPU kernel writes a contiguous output of the input's shape and dtype whatever the
    input's layout (a transposed or channels-last input too)."""
    return _empty(x.shape, x.dtype)


def _plain_nchw(x) -> bool:
    """A contiguous floating (N, C, H, W) input with C, H, W > 1: the CPU pool and upsample kernels
    give such an input a contiguous output (size-1 dims tie memory formats: left to PyTorch)."""
    return x.dim() == 4 and x.is_floating_point() and x.is_contiguous() and 1 not in tuple(x.shape[1:])


def _size2(size):
    """``[h, w]`` of an ``int[2]`` argument, or None."""
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(type(v) is int for v in size):
        return list(size)
    return None


def _adaptive_avg_pool2d(x, output_size):
    """(N, C, *output_size), contiguous, for a plain NCHW input; else NotImplemented."""
    if not _plain_nchw(x) or _size2(output_size) is None:
        return NotImplemented
    return _empty((*x.shape[:2], *output_size), x.dtype)


def _upsample_bilinear2d(x, output_size, align_corners, scale_factors=None):
    """(N, C, *output_size), contiguous, for a plain NCHW input and given sizes; else NotImplemented."""
    if not _plain_nchw(x) or _size2(output_size) is None:
        return NotImplemented  # sizes from scale factors: PyTorch's own rule
    return _empty((*x.shape[:2], *output_size), x.dtype)


def _linear(x, w, b=None):
    if w.dim() != 2:
        return NotImplemented
    return _empty((*x.shape[:-1], w.shape[0]), x.dtype)


def _dropout(x, p, train):
    if not train or p == 0:
        return x
    return _like(x)


def _broadcast(a: tuple, b: tuple):
    """Broadcast shape of two shapes, or None when they do not broadcast."""
    if a == b:
        return a
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + a
    b = (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(out)


def _binary(kind: str):
    def fn(a, b, *args, **kw):
        if not isinstance(a, torch.Tensor):
            return NotImplemented
        tensors = [t for t in (a, b) if isinstance(t, torch.Tensor)]
        if isinstance(b, torch.Tensor):
            shape = _broadcast(tuple(a.shape), tuple(b.shape))
            if shape is None:
                return NotImplemented
        elif isinstance(b, (int, float, bool)):
            shape = a.shape
        else:
            return NotImplemented
        dtype = torch.result_type(a, b)
        if kind == "div" and not (dtype.is_floating_point or dtype.is_complex):
            dtype = torch.get_default_dtype()
        full = [t for t in tensors if tuple(t.shape) == tuple(shape)]
        if full and len(full) == len(tensors) and all(t.stride() == full[0].stride() for t in full):
            return _like(full[0], dtype)
        if all(t.is_contiguous() for t in tensors):
            return _empty(shape, dtype)
        return NotImplemented

    return fn


def _conv(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    n = x.dim() - 2
    if n < 1 or w.dim() != n + 2 or isinstance(padding, str) or not (x.is_contiguous() and w.is_contiguous()):
        return NotImplemented
    s, p, d = kernel_dims(stride, n), kernel_dims(padding, n), kernel_dims(dilation, n)
    out = [x.shape[0], w.shape[0]]
    for i in range(n):
        size = (x.shape[2 + i] + 2 * p[i] - d[i] * (w.shape[2 + i] - 1) - 1) // s[i] + 1
        if size <= 0:
            return NotImplemented
        out.append(size)
    return _empty(out, x.dtype)


def _cat(tensors, dim=0):
    ts = [t for t in tensors if not (t.dim() == 1 and t.shape[0] == 0)]
    if not ts or not all(t.is_contiguous() for t in ts) or len({t.dim() for t in ts}) != 1:
        return NotImplemented
    dim = dim % ts[0].dim()
    shape = list(ts[0].shape)
    shape[dim] = sum(t.shape[dim] for t in ts)
    dtype = ts[0].dtype
    for t in ts[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return _empty(shape, dtype)


def _rnn_fast(kind: str, packed: bool):
    lstm = kind == "lstm"

    def fn(x, *args):
        if packed:
            batch_sizes, hx, params, has_biases, num_layers, dropout, train, bidirectional = args[:8]
            batch_first = False
        else:
            hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first = args[:8]
        if (not packed and x.dim() != 3) or (packed and x.dim() != 2):
            return NotImplemented
        dirs = 2 if bidirectional else 1
        h0 = hx[0] if isinstance(hx, (list, tuple)) else hx
        h_out = h0.shape[-1]
        layers = int(num_layers) * dirs
        opts = dict(dtype=x.dtype, device="meta")
        if packed:
            out = torch.empty((x.shape[0], dirs * h_out), **opts)
        elif batch_first:
            out = torch.empty((x.shape[1], x.shape[0], dirs * h_out), **opts).transpose(0, 1)
        else:
            out = torch.empty((x.shape[0], x.shape[1], dirs * h_out), **opts)
        hy = torch.empty((layers, h0.shape[-2], h_out), **opts)
        if lstm:
            c0 = hx[1]
            return out, hy, torch.empty((layers, c0.shape[-2], c0.shape[-1]), **opts)
        return out, hy

    return fn


def _grouped_mm(a, b, offs=None, bias=None, out_dtype=None):
    """``_grouped_mm`` in float32: PyTorch's meta kernel accepts only bfloat16/float16 (the CUDA kernel's
    old limits) while the CPU kernel runs float32; this gives the CPU kernel's output (its 16-byte padded
    row stride) so meta and CPU counts agree.  Other dtypes run the real meta kernel."""
    if a.dtype != torch.float32 or b.dtype != torch.float32 or a.dim() not in (2, 3) or b.dim() not in (2, 3):
        return NotImplemented
    if a.dim() == 2:
        shape = [offs.shape[0], a.shape[0], b.shape[1]] if b.dim() == 2 else [a.shape[0], b.shape[-1]]
    else:
        shape = [a.shape[1], b.shape[1]] if b.dim() == 2 else [a.shape[0], a.shape[1], b.shape[-1]]
    dtype = out_dtype or a.dtype
    align = 16 // dtype.itemsize
    padded = (shape[-1] + align - 1) // align * align
    stride = [padded, 1] if len(shape) == 2 else [shape[1] * padded, padded, 1]
    return torch.empty_strided(shape, stride, dtype=dtype, device="meta")


FAST_META: dict = {}


def _fast(packet_name: str, overload: str, fn):
    packet = getattr(aten, packet_name, None)
    op = getattr(packet, overload, None) if packet is not None else None
    if op is not None:
        FAST_META[op] = fn


_fast("scaled_dot_product_attention", "default", _sdpa)
_fast("linear", "default", _linear)
_fast("dropout", "default", _dropout)
_fast("batch_norm", "default", _contiguous_out)
_fast("layer_norm", "default", _layer_norm)
_fast("adaptive_avg_pool2d", "default", _adaptive_avg_pool2d)
_fast("upsample_bilinear2d", "vec", _upsample_bilinear2d)
_fast("rms_norm", "default", _contiguous_out)
_fast("group_norm", "default", _contiguous_out)
_fast("cat", "default", _cat)
_fast("_grouped_mm", "default", _grouped_mm)
for _conv_name in ("conv1d", "conv2d", "conv3d"):
    _fast(_conv_name, "default", _conv)
for _kind in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
    _fast(_kind, "input", _rnn_fast(_kind, packed=False))
    _fast(_kind, "data", _rnn_fast(_kind, packed=True))
for _name in ("relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardtanh", "hardswish", "hardsigmoid", "mish",
              "elu", "leaky_relu", "neg", "exp", "sqrt", "rsqrt", "erf", "abs", "reciprocal"):
    _fast(_name, "default", _unary)
    _fast(_name + "_", "default", _same)
for _name in ("add", "sub", "mul", "div"):
    _fast(_name, "Tensor", _binary(_name))
    _fast(_name, "Scalar", _binary(_name))
for _name in ("add_", "sub_", "mul_", "div_"):
    _fast(_name, "Tensor", _same)
    _fast(_name, "Scalar", _same)


# ------------------------------------------------------------------ the meta-result cache
#
# PyTorch's own meta kernels for element-wise ops, reductions and ``where`` are Python (type promotion,
# TensorIterator's stride rules): 30-170 us a call, ten to a hundred times a CPU kernel on small tensors.
# A meta kernel's result is a function of its inputs' metadata and its other arguments, so a count on
# meta memoizes it (as FakeTensor's dispatch cache does): ``(op, every argument's key)`` -> the outputs'
# shape, strides and dtype, rebuilt with ``empty_strided``. Only ops that return fresh tensors (no alias,
# no mutation, no data-dependent shape, no random state) whose inputs and outputs are all meta tensors.

_NOT_CACHEABLE_TAGS = tuple(getattr(torch.Tag, t) for t in ("dynamic_output_shape", "data_dependent_output",
                                                           "nondeterministic_seeded") if hasattr(torch.Tag, t))
_SCALARS = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.layout, torch.memory_format)
#: entries kept before the cache starts over (a count of the largest model here adds a few hundred)
CACHE_LIMIT = 8192
_CACHE: dict = {}


class _Uncacheable(Exception):
    """An argument or output the cache cannot key or rebuild."""


def cacheable(func, composite: bool) -> bool:
    """Whether ``func`` returns fresh tensors whose metadata its arguments' metadata decide. Not a
    composite op (``CompositeImplicitAutograd``): its Python-level choices may read global flags
    (``scaled_dot_product_attention`` picks a backend)."""
    if composite:
        return False
    schema = func._schema
    if schema.is_mutable or any(r.alias_info is not None for r in schema.returns):
        return False
    return not any(tag in func.tags for tag in _NOT_CACHEABLE_TAGS)


def _arg_key(v):
    """A hashable key of one argument: a meta tensor's shape, strides and dtype; a scalar with its type
    (``2`` and ``2.0`` promote differently); lists and tuples element by element."""
    if isinstance(v, torch.Tensor):
        if v.device.type != "meta" or v.is_nested or v.layout != torch.strided:
            raise _Uncacheable
        return (tuple(v.shape), v.stride(), v.dtype)
    if isinstance(v, (list, tuple)):
        return (type(v),) + tuple(_arg_key(x) for x in v)
    if isinstance(v, _SCALARS):
        return (type(v), v)
    raise _Uncacheable


def _out_meta(res):
    """The outputs' metadata: ``(shape, stride, dtype)`` of a meta tensor, tuples and lists of them."""
    if isinstance(res, torch.Tensor):
        if res.device.type != "meta" or res.is_nested or res.layout != torch.strided:
            raise _Uncacheable
        return (tuple(res.shape), res.stride(), res.dtype)
    if isinstance(res, (list, tuple)) and type(res) in (list, tuple):
        return [type(res)] + [_out_meta(r) for r in res]
    raise _Uncacheable


def _rebuild(meta):
    if type(meta) is tuple:
        shape, stride, dtype = meta
        return torch.empty_strided(shape, stride, dtype=dtype, device="meta")
    kind = meta[0]
    return kind(_rebuild(m) for m in meta[1:])


_default_dtype = torch.get_default_dtype


def cached_meta(func, args, kwargs):
    """``func(*args, **kwargs)`` on meta tensors through the cache (``func`` must be :func:`cacheable`);
    the key holds the default dtype too (factories without a dtype use it)."""
    try:
        key = (func, _arg_key(args), tuple((k, _arg_key(v)) for k, v in kwargs.items()), _default_dtype())
    except _Uncacheable:
        return func(*args, **kwargs)
    hit = _CACHE.get(key)
    if hit is not None:
        return _rebuild(hit)
    res = func(*args, **kwargs)
    try:
        meta = _out_meta(res)
    except _Uncacheable:
        return res
    if len(_CACHE) >= CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[key] = meta
    return res
