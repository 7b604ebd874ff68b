"""Zero-flop ops: views, copies, concatenation, indexing, factories, embeddings.

These are registered explicitly so that ``uncounted`` lists only ops we truly
lack.  None has flops.  Bytes:

* views and no-ops (view, reshape when it can view, transpose, permute, expand,
  select, split, detach, contiguous on a contiguous tensor, ``to`` without a
  change, ...): 0 when every output shares storage with an input;
* copies (clone, contiguous, reshape that copies, cat, stack, pad, flip, ``to``
  with a change, ...): the default rule, inputs read + outputs written;
* in-place writes (``copy_``: source read + destination written; ``fill_``,
  ``zero_``: destination written);
* factories: the output written (``empty*``: nothing written, 0);
* gathers (embedding, index_select, gather, index): indices read + the gathered
  rows read + the output written (rows that are not looked up are not read);
* embedding_bag: indices, offsets and per-sample weights read + the gathered rows
  read + outputs written; other flops: one add per gathered element (sum/mean),
  one compare (max), one multiply per gathered element with per-sample weights,
  one divide per output element for mean.
"""
from __future__ import annotations

from .registry import ZERO, Tensor, Work, aliases_input, first, nbytes, numel, out_bytes, register

VIEW_OR_COPY = """
view _unsafe_view reshape _reshape_alias t transpose permute expand expand_as
squeeze unsqueeze flatten unflatten select slice slice_inverse narrow split split_with_sizes
chunk unbind unsafe_split unsafe_split_with_sizes unsafe_chunk tensor_split hsplit vsplit dsplit
as_strided alias detach view_as diagonal movedim moveaxis swapaxes swapdims
unfold contiguous clone _to_copy to type_as _to_dense to_dense lift_fresh lift_fresh_copy
resolve_conj resolve_neg _conj _neg_view real imag view_as_real view_as_complex
cat concat concatenate _cat stack _stack hstack vstack dstack column_stack
repeat tile expand_copy repeat_interleave constant_pad_nd pad reflection_pad1d reflection_pad2d
reflection_pad3d replication_pad1d replication_pad2d replication_pad3d circular_pad1d circular_pad2d
_pad_circular flip fliplr flipud roll rot90 tril triu masked_fill where
masked_select masked_scatter scatter index_put index_fill index_copy
select_scatter slice_scatter diagonal_scatter as_strided_scatter
pixel_shuffle pixel_unshuffle channel_shuffle native_channel_shuffle
upsample_nearest1d upsample_nearest2d upsample_nearest3d _upsample_nearest_exact1d
_upsample_nearest_exact2d _upsample_nearest_exact3d max_unpool2d max_unpool3d
nonzero nonzero_static argwhere one_hot im2col col2im _local_scalar_dense item is_nonzero equal
is_same_size allclose
""".split()

#: in-place ops that only change metadata (they return their input)
INPLACE_METADATA = "t_ transpose_ squeeze_ unsqueeze_ as_strided_ detach_ swapaxes_ swapdims_".split()

#: in-place data movement: the written tensor is read and written
INPLACE_WRITES = """
tril_ triu_ masked_fill_ masked_scatter_ scatter_ index_put_ _index_put_impl_ index_fill_ index_copy_
""".split()


@register(*VIEW_OR_COPY)
def view_or_copy(res, *args, **kw):
    """No flops; 0 bytes when the output is a view of an input, else inputs read + outputs written."""
    if aliases_input(res, args):
        return ZERO
    return Work(0, 0, None)


@register(*INPLACE_METADATA)
def inplace_metadata(res, *args, **kw):
    """Metadata change only: no flops, no bytes."""
    return ZERO


@register(*INPLACE_WRITES)
def inplace_write(res, *args, **kw):
    """No flops; inputs read + the written tensor written (default rule)."""
    return Work(0, 0, None)


@register("scatter_add", "scatter_add_", "scatter_reduce", "scatter_reduce_", "index_add", "index_add_")
def scatter_add(res, x, dim, index, src, *args, **kw):
    """One add (or reduce op) per source element; bytes by the default rule."""
    return Work(0, numel(src) if isinstance(src, Tensor) else 0)


@register("copy_")
def copy_(res, dst, src, *args, **kw):
    """Destination written + source read."""
    return Work(0, 0, nbytes(dst) + (nbytes(src) if isinstance(src, Tensor) else 0))


@register("fill_", "zero_", "normal_", "uniform_", "bernoulli_", "random_", "exponential_", "geometric_",
          "cauchy_", "log_normal_", "set_")
def fill_(res, dst, *args, **kw):
    """Destination written (random fills are not flops)."""
    return Work(0, 0, nbytes(dst))


@register("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "empty_permuted",
          "resize_", "resize_as_")
def empty(res, *args, **kw):
    """Allocation only: nothing read or written."""
    return ZERO


@register("zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "new_zeros", "new_ones", "new_full",
          "scalar_tensor", "arange", "linspace", "logspace", "eye", "tensor", "rand", "randn", "randint",
          "rand_like", "randn_like", "randint_like", "randperm", "normal", "bernoulli", "multinomial",
          "poisson", "_efficientzerotensor", "tril_indices", "triu_indices")
def factory(res, *args, **kw):
    """Output written; no flops (random number generation is not counted)."""
    return Work(0, 0, out_bytes(res))


@register("embedding", "index_select", "gather", "take", "take_along_dim", "index", "_unsafe_index")
def gather(res, source, *args, **kw):
    """Index tensors read + gathered elements read + output written: idx + 2 * bytes(out)."""
    out = first(res)
    idx = 0
    for a in list(args) + list(kw.values()):
        if isinstance(a, Tensor):
            idx += nbytes(a)
        elif isinstance(a, (list, tuple)):
            idx += sum(nbytes(t) for t in a if isinstance(t, Tensor))
    return Work(0, 0, idx + 2 * nbytes(out))


@register("embedding_bag", "_embedding_bag", "_embedding_bag_forward_only")
def embedding_bag(res, weight, indices, offsets, scale_grad_by_freq=False, mode=0, sparse=False,
                  per_sample_weights=None, *args, **kw):
    """mode 0 sum / 1 mean / 2 max over the gathered rows; see module docstring."""
    out = first(res)
    dim = weight.shape[-1]
    gathered = numel(indices) * dim
    other = gathered
    if per_sample_weights is not None:
        other += gathered
    if int(mode) == 1:
        other += numel(out)
    read = nbytes(indices) + nbytes(offsets) + gathered * weight.element_size()
    if per_sample_weights is not None:
        read += nbytes(per_sample_weights)
    return Work(0, other, read + out_bytes(res))
