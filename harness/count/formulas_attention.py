"""Attention formulas: every ``scaled_dot_product_attention`` variant, the fused
``_native_multi_head_attention`` and ``_transformer_encoder_layer_fwd`` kernels.

Scaled dot-product attention, for query ``[..., L, E]``, key ``[..., S, E]``,
value ``[..., S, Ev]`` with ``BH`` = product of the leading (batch x head) dims of
the query (grouped-query attention counts query heads):

* macs  = BH * L * S * (E + Ev)   (QK^T and PV);
* other = BH * (L * S * (5 softmax [+1 mask add] [+1 dropout]) + (L + S) * E scale),
  the math of PyTorch's reference implementation (``_scaled_dot_product_attention_math``:
  q and k are each scaled by sqrt(scale), a mask is added, a safe softmax, dropout);
  the mask add counts when an attention mask is given or ``is_causal``;
* a causal mask is counted over the full sequence length (the convention of
  ``torch.utils.flop_counter`` and of MFU papers), i.e. masking removes no work.
* bytes: the default rule for the op that ran (a flash kernel reads q, k, v and
  writes its output and log-sum-exp; it never writes the L x S scores).

The fused kernels ``_native_multi_head_attention`` (nn.MultiheadAttention's fast
path) and ``_transformer_encoder_layer_fwd`` (nn.TransformerEncoderLayer's fast
path) are counted as *exactly* the unfused reference path PyTorch runs when the
fast path is off (and on the meta device): the same module is run on meta
tensors under the counter and its total is this kernel's Work (cached per shape).
So MACs, other flops and bytes are identical on every dispatch route.
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import Tensor, Work, register
from .support import meta_like, reference_cost, shape_key

aten = torch.ops.aten


def attention_work(q, k, v, masked: bool, dropout_p: float, layout: str = "bhle") -> Work:
    """macs = BH*L*S*(E+Ev); other = BH*(L*S*(5 [+1 mask] [+1 dropout]) + (L+S)*E); bytes by the default rule."""
    if layout == "blhe":  # (batch, length, heads, dim)
        bh = q.shape[0] * q.shape[2]
        L, E, S, Ev = q.shape[1], q.shape[3], k.shape[1], v.shape[3]
    else:
        bh = 1
        for d in q.shape[:-2]:
            bh *= d
        L, E, S, Ev = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    scores = bh * L * S
    other = scores * (5 + (1 if masked else 0) + (1 if dropout_p and dropout_p > 0 else 0)) + bh * (L + S) * E
    return Work(scores * (E + Ev), other)


@register("scaled_dot_product_attention")
def sdpa(res, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, *args, **kw):
    """F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal): see module docstring."""
    return attention_work(q, k, v, attn_mask is not None or bool(is_causal), dropout_p)


@register("_scaled_dot_product_flash_attention_for_cpu")
def sdpa_flash_cpu(res, q, k, v, dropout_p=0.0, is_causal=False, *args, attn_mask=None, **kw):
    """CPU flash attention (q, k, v, dropout_p, is_causal, *, attn_mask, scale): attention_work."""
    return attention_work(q, k, v, attn_mask is not None or bool(is_causal), dropout_p)


@register("_scaled_dot_product_flash_attention")
def sdpa_flash(res, q, k, v, dropout_p=0.0, is_causal=False, *args, **kw):
    """CUDA flash attention (q, k, v, dropout_p, is_causal, ...): attention_work."""
    return attention_work(q, k, v, bool(is_causal), dropout_p)


@register("_scaled_dot_product_flash_attention.quantized")
def sdpa_flash_quantized(res, q, k, v, q_descale=None, k_descale=None, v_descale=None, dropout_p=0.0,
                         is_causal=False, *args, **kw):
    """Flash attention on fp8 (q, k, v, q_descale, k_descale, v_descale, dropout_p, is_causal, ...): attention_work
    (the descales fold into the softmax scale and the output write)."""
    return attention_work(q, k, v, bool(is_causal), dropout_p)


@register("_scaled_dot_product_efficient_attention")
def sdpa_efficient(res, q, k, v, attn_bias=None, compute_log_sumexp=False, dropout_p=0.0, is_causal=False, *a, **kw):
    """Memory-efficient attention (q, k, v, attn_bias, compute_log_sumexp, dropout_p, is_causal): attention_work."""
    return attention_work(q, k, v, attn_bias is not None or bool(is_causal), dropout_p)


@register("_scaled_dot_product_cudnn_attention")
def sdpa_cudnn(res, q, k, v, attn_bias=None, compute_log_sumexp=False, dropout_p=0.0, is_causal=False, *a, **kw):
    """cuDNN attention (q, k, v, attn_bias, compute_log_sumexp, dropout_p, is_causal, ...): attention_work."""
    return attention_work(q, k, v, attn_bias is not None or bool(is_causal), dropout_p)


@register("_scaled_dot_product_attention_math", "_scaled_dot_product_attention_math_for_mps",
          "_scaled_dot_product_fused_attention_overrideable")
def sdpa_math(res, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, *args, **kw):
    """Math / overrideable attention (q, k, v, attn_mask, dropout_p, is_causal, ...): attention_work."""
    return attention_work(q, k, v, attn_mask is not None or bool(is_causal), dropout_p)


def _seq_lengths(cum, max_len, batch_guess: int) -> list[int]:
    """Sequence lengths of a varlen batch: from the offsets when readable, else max_len each."""
    if isinstance(cum, Tensor) and cum.device.type not in ("meta",) and not cum.is_nested:
        try:
            return [int(x) for x in cum.diff().tolist()]
        except Exception:
            pass
    n = (cum.shape[0] - 1) if isinstance(cum, Tensor) else batch_guess
    return [int(max_len)] * n


def _varlen_work(q, k, v, cum_q, cum_k, max_q, max_k, masked, dropout_p) -> Work:
    heads, e = q.shape[1], q.shape[2]
    ev = v.shape[2]
    lq = _seq_lengths(cum_q, max_q, 1)
    lk = _seq_lengths(cum_k, max_k, len(lq))
    macs = other = 0
    for a, b in zip(lq, lk):
        scores = heads * a * b
        macs += scores * (e + ev)
        other += scores * (5 + (1 if masked else 0) + (1 if dropout_p and dropout_p > 0 else 0)) + heads * (a + b) * e
    return Work(macs, other)


@register("_flash_attention_forward")
def flash_forward(res, q, k, v, cum_seq_q, cum_seq_k, max_q, max_k, dropout_p, is_causal, *args, **kw):
    """Flash forward, layout (batch, length, heads, dim) or varlen (tokens, heads, dim): attention_work."""
    if cum_seq_q is not None:
        return _varlen_work(q, k, v, cum_seq_q, cum_seq_k, max_q, max_k, bool(is_causal), dropout_p)
    return attention_work(q, k, v, bool(is_causal), dropout_p, layout="blhe")


@register("_efficient_attention_forward")
def efficient_forward(res, q, k, v, bias, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                      custom_mask_type, *args, **kw):
    """Memory-efficient forward, layout (batch, length, heads, dim): attention_work (mask: bias or causal type)."""
    masked = bias is not None or int(custom_mask_type) != 0
    if cu_seqlens_q is not None:
        return _varlen_work(q[0], k[0], v[0], cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, masked,
                            dropout_p)
    return attention_work(q, k, v, masked, dropout_p, layout="blhe")


@register("_cudnn_attention_forward")
def cudnn_forward(res, q, k, v, attn_bias, cum_seq_q, cum_seq_k, max_q, max_k, compute_log_sumexp,
                  dropout_p=0.0, is_causal=False, *args, **kw):
    """cuDNN forward (q, k, v, attn_bias, cum_seq_q, cum_seq_k, max_q, max_k, compute_log_sumexp, dropout_p,
    is_causal, ...): attention_work; layout (batch, heads, length, dim), or varlen (tokens, heads, dim)
    when cum_seq_q is given."""
    masked = attn_bias is not None or bool(is_causal)
    if cum_seq_q is not None:
        return _varlen_work(q, k, v, cum_seq_q, cum_seq_k, max_q, max_k, masked, dropout_p)
    return attention_work(q, k, v, masked, dropout_p)


# ------------------------------------------------------------ fused kernels


def _float_mask(shape, dtype):
    return torch.empty(shape, dtype=dtype, device="meta")


@register("_native_multi_head_attention")
def native_mha(res, query, key, value, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight, proj_bias,
               mask=None, need_weights=True, average_attn_weights=True, mask_type=None, **kw):
    """nn.MultiheadAttention's fused fast path, counted as its unfused reference path.

    For batch B, length L, embedding E (self-attention, as the fast path requires):
    macs = B*L*E*3E (qkv projection) + B*L*L*2E (QK^T, PV over all heads) + B*L*E*E
    (output projection); other flops and bytes are those of the reference path.
    """
    if query.is_nested:
        return sum_nested(query, lambda q: native_mha(res, q, q, q, embed_dim, num_head, qkv_weight, qkv_bias,
                                                       proj_weight, proj_bias, None, need_weights,
                                                       average_attn_weights, None))
    dtype = query.dtype
    cache_key = ("mha", shape_key(query, key, value, qkv_weight, proj_weight, mask), query is key, key is value,
                 int(embed_dim), int(num_head), bool(need_weights), bool(average_attn_weights), mask_type)

    def setup():
        mha = nn.MultiheadAttention(int(embed_dim), int(num_head), bias=True, batch_first=True,
                                    device="meta", dtype=dtype).eval()
        q = meta_like(query)
        k = q if key is query else meta_like(key)
        v = k if value is key else meta_like(value)
        kwargs = {"need_weights": bool(need_weights), "average_attn_weights": bool(average_attn_weights)}
        if mask is not None:
            b, L = query.shape[0], query.shape[1]
            s = key.shape[1]
            if mask_type == 1:
                kwargs["key_padding_mask"] = _float_mask((b, s), dtype)
            elif mask_type == 2:
                kwargs["attn_mask"] = _float_mask((b * int(num_head), L, s), dtype)
            else:
                kwargs["attn_mask"] = _float_mask((L, s), dtype)
        return lambda: mha(q, k, v, **kwargs)

    return reference_cost(cache_key, setup)


@register("_transformer_encoder_layer_fwd")
def transformer_encoder_layer(res, src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias,
                              use_gelu, norm_first, eps, norm_weight_1, norm_bias_1, norm_weight_2, norm_bias_2,
                              ffn_weight_1, ffn_bias_1, ffn_weight_2, ffn_bias_2, mask=None, mask_type=None, **kw):
    """nn.TransformerEncoderLayer's fused fast path, counted as its unfused reference path.

    For batch B, length L, model width E, feed-forward width F:
    macs = B*L*E*3E (qkv) + B*L*L*2E (attention) + B*L*E*E (out projection)
    + 2*B*L*E*F (feed-forward); other flops and bytes are those of the reference
    path (biases, residual adds, two layer norms, softmax, activation).
    """
    if src.is_nested:
        return sum_nested(src, lambda s: transformer_encoder_layer(
            res, s, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias, use_gelu, norm_first, eps,
            norm_weight_1, norm_bias_1, norm_weight_2, norm_bias_2, ffn_weight_1, ffn_bias_1, ffn_weight_2,
            ffn_bias_2, None, None))
    dtype = src.dtype
    dim_ff = ffn_weight_1.shape[0]
    cache_key = ("encoder_layer", shape_key(src, mask), int(embed_dim), int(num_heads), int(dim_ff),
                 bool(use_gelu), bool(norm_first), float(eps), mask_type)

    def setup():
        layer = nn.TransformerEncoderLayer(
            int(embed_dim), int(num_heads), dim_feedforward=int(dim_ff), dropout=0.0,
            activation="gelu" if use_gelu else "relu", layer_norm_eps=float(eps), batch_first=True,
            norm_first=bool(norm_first), bias=True, device="meta", dtype=dtype,
        ).eval()
        x = meta_like(src)
        kwargs = {}
        if mask is not None:
            b, L = src.shape[0], src.shape[1]
            if mask_type == 1:
                kwargs["src_key_padding_mask"] = _float_mask((b, L), dtype)
            elif mask_type == 2:
                kwargs["src_mask"] = _float_mask((b * int(num_heads), L, L), dtype)
            else:
                kwargs["src_mask"] = _float_mask((L, L), dtype)
        return lambda: layer(x, **kwargs)

    return reference_cost(cache_key, setup)


def sum_nested(nt, fn) -> Work:
    """Sum a formula over the sequences of a nested tensor (each as a batch of one)."""
    macs = other = nb = 0
    for t in nt.unbind():
        w = fn(t.unsqueeze(0))
        macs, other, nb = macs + w.macs, other + w.other, nb + (w.bytes or 0)
    return Work(macs, other, nb)
