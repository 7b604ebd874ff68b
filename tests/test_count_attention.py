"""Attention: every SDPA route, fused multi-head attention and the fused transformer encoder layer.

Fused kernels must count the same math as the unfused path, and meta must equal CPU.
"""
import contextlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from harness.count import count

from conftest import F32, Fn
from harness.count.meta_kernels import cpu_would_use_flash


@contextlib.contextmanager
def mha_fastpath(enabled: bool):
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


def totals(c):
    return c.macs, c.other_flops, c.bytes


def flop_counter_macs_unfused(model, *inputs):
    with mha_fastpath(False), sdpa_kernel(SDPBackend.MATH), torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*inputs)
    return fc.get_total_flops() // 2


def test_sdpa_by_hand_and_causal_counts_full_length():
    q, k, v = (torch.randn(2, 4, 16, 8) for _ in range(3))
    c = count(Fn(F.scaled_dot_product_attention), (q, k, v))
    # 2 x 4 heads, 16 x 16 scores: QK^T 8 MACs each, PV 8 MACs each
    assert c.macs == 2 * 4 * 16 * 16 * (8 + 8) == 32768
    # per score: softmax 5; per query and key row: scale by sqrt(scale), 8 each
    assert c.other_flops == 2 * 4 * (256 * 5 + (16 + 16) * 8)
    # q, k, v read, output written: 4 x (2*4*16*8) floats
    assert c.bytes == F32 * 4 * 1024
    causal = count(Fn(lambda a, b, d: F.scaled_dot_product_attention(a, b, d, is_causal=True)), (q, k, v))
    # a causal mask removes no work in the count (full sequence length); + 1 mask add per score
    assert causal.macs == c.macs
    assert causal.other_flops == c.other_flops + 2 * 4 * 256


def test_sdpa_every_route_counts_the_same():
    q, k, v = (torch.randn(1, 2, 12, 8) for _ in range(3))
    sdpa = Fn(lambda a, b, d: F.scaled_dot_product_attention(a, b, d, is_causal=True))
    default = count(sdpa, (q, k, v))
    with sdpa_kernel(SDPBackend.MATH):
        math = count(sdpa, (q, k, v))
    meta = count(sdpa, (q, k, v), device="meta")
    assert totals(default) == totals(math) == totals(meta)
    # the low-level kernels, called directly, count the same math
    flash = count(Fn(lambda a, b, d: torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(a, b, d, 0.0, True)[0]),
                  (q, k, v))
    assert (flash.macs, flash.other_flops) == (default.macs, default.other_flops)
    assert flash.events.op.tolist() == ["aten::_scaled_dot_product_flash_attention_for_cpu"]
    ref = count(Fn(lambda a, b, d: torch.ops.aten._scaled_dot_product_attention_math(a, b, d, None, 0.0, True)[0]),
                (q, k, v))
    assert (ref.macs, ref.other_flops) == (default.macs, default.other_flops)
    # the unfused truth (FlopCounterMode sees nothing of the default CPU flash kernel)
    assert default.macs == flop_counter_macs_unfused(sdpa, q, k, v)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        sdpa(q, k, v)
    assert fc.get_total_flops() == 0


def test_sdpa_gqa_and_cross_attention():
    q, kv = torch.randn(1, 8, 10, 16), torch.randn(1, 2, 12, 16)
    c = count(Fn(lambda a, b: F.scaled_dot_product_attention(a, b, b, enable_gqa=True)), (q, kv))
    # query heads count: 8 heads x 10 x 12 scores x (16 + 16)
    assert c.macs == 8 * 10 * 12 * 32
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    mask = torch.randn(5, 7)
    c = count(Fn(lambda a, b, d, m: F.scaled_dot_product_attention(a, b, d, attn_mask=m)), (q, k, v, mask))
    # 2 x 3 x 5 x 7 scores: QK^T 8 + PV 4 MACs; other: softmax 5 + mask 1 per score, scale (5 + 7) x 8 per head
    assert c.macs == 210 * 12 and c.other_flops == 210 * 6 + 6 * 12 * 8


@pytest.mark.parametrize("need_weights", [False, True])
def test_fused_mha_equals_unfused(need_weights):
    b, L, e, h = 2, 6, 16, 4
    mha = nn.MultiheadAttention(e, h, batch_first=True).eval()
    x = torch.randn(b, L, e)
    fn = Fn(lambda t: mha(t, t, t, need_weights=need_weights)[0])
    fused = count(fn, x)
    assert "aten::_native_multi_head_attention" in fused.events.op.tolist()
    with mha_fastpath(False):
        slow = count(fn, x)
    assert "aten::_native_multi_head_attention" not in slow.events.op.tolist()
    meta = count(fn, x, device="meta")
    assert totals(fused) == totals(slow) == totals(meta)
    # qkv projection B*L*E*3E + attention B*L*L*2E + output projection B*L*E*E
    assert fused.macs == b * L * e * 3 * e + b * L * L * 2 * e + b * L * e * e
    assert fused.macs == flop_counter_macs_unfused(fn, x)


@pytest.mark.parametrize("norm_first, activation", [(False, "relu"), (True, "gelu")])
def test_fused_transformer_encoder_equals_unfused_and_meta(norm_first, activation):
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, norm_first=norm_first, activation=activation)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 10, 32)
    with torch.inference_mode():
        fused = count(enc, x)
    assert fused.events.op.tolist().count("aten::_transformer_encoder_layer_fwd") == 2
    with mha_fastpath(False):
        slow = count(enc, x)
    meta = count(enc, x, device="meta")
    assert totals(fused) == totals(slow) == totals(meta)
    per_layer = 2 * 10 * 32 * 96 + 2 * 10 * 10 * 64 + 2 * 10 * 32 * 32 + 2 * 2 * 10 * 32 * 64
    assert fused.macs == 2 * per_layer == flop_counter_macs_unfused(enc, x)
    # the layers are attributed: each encoder layer holds half of the work
    rows = fused.by_module.set_index("path")
    assert rows.loc["layers.0", "macs"] == per_layer and rows.loc["layers.1", "calls"] == 1


def test_transformer_encoder_with_padding_mask_counts_the_attention():
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False).eval()
    x = torch.randn(2, 5, 16)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    fused = count(Fn(lambda t, m: enc(t, src_key_padding_mask=m)), (x, mask))
    with mha_fastpath(False):
        slow = count(Fn(lambda t, m: enc(t, src_key_padding_mask=m)), (x, mask))
    assert fused.macs == slow.macs


def test_causal_decoder_block_cpu_equals_meta():
    class Block(nn.Module):
        def __init__(self, d=32, heads=4):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(x).split(d, dim=-1)
            q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.proj(y.transpose(1, 2).reshape(b, t, d))

    m = Block().eval()
    x = torch.randn(2, 9, 32)
    cpu, meta = count(m, x), count(m, x, device="meta")
    assert totals(cpu) == totals(meta)
    assert cpu.by_op.equals(meta.by_op)


def test_meta_predicts_cpu_sdpa_backend():
    cases = [
        ((2, 4, 16, 8),) * 3,
        ((2, 16, 8),) * 3,
        ((2, 4, 16, 8), (2, 4, 16, 4), (2, 4, 16, 8)),
        ((2, 4, 16, 8), (1, 4, 16, 8), (1, 4, 16, 8)),
        ((2, 8, 16, 8), (2, 2, 16, 8), (2, 2, 16, 8)),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for shapes in cases:
            for mask in (None, torch.randn(16, 16), torch.randn(1, 16, 16), torch.randn(2, 1, 16, 16)):
                for dropout in (0.0, 0.1):
                    for gqa in (False, True):
                        q, k, v = (torch.randn(s) for s in shapes)
                        if mask is not None and q.dim() == 3 and mask.dim() == 4:
                            continue
                        try:
                            choice = torch._fused_sdp_choice(q, k, v, mask, dropout, enable_gqa=gqa)
                        except RuntimeError:
                            continue
                        assert cpu_would_use_flash(q, k, v, mask, dropout, gqa) == (choice == 1), (shapes, mask, dropout, gqa)
        q = torch.randn(2, 4, 16, 16)[..., ::2]
        assert not cpu_would_use_flash(q, q, q) and torch._fused_sdp_choice(q, q, q) == 0


@pytest.mark.parametrize("causal, with_mask", [(False, False), (True, False), (False, True)])
def test_sdpa_formula_equals_the_math_path_op_by_op(causal, with_mask):
    """Outside inference mode PyTorch's math path dispatches its parts (mul, bmm, add, softmax):
    counting those parts one by one gives the same MACs and other flops as the SDPA formula."""
    from harness.count.mode import CountingMode

    q, k, v = torch.randn(2, 3, 6, 4), torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    mask = torch.randn(6, 5) if with_mask else None
    fused = count(Fn(lambda a, b, d: F.scaled_dot_product_attention(a, b, d, attn_mask=mask, is_causal=causal)),
                  (q, k, v))
    mode = CountingMode()
    with sdpa_kernel(SDPBackend.MATH), torch.no_grad(), mode:
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    assert "aten::bmm" in mode.ev_op and all(mode.ev_counted)
    assert (sum(mode.ev_macs), sum(mode.ev_other)) == (fused.macs, fused.other_flops)
