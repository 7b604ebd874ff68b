"""Mixture of experts: grouped matmuls, routing ops, overload-specific attention formulas, meta errors."""
import pytest
import torch
from torch import nn

from harness.count import count
from harness.count.formulas_attention import cudnn_forward, sdpa_flash, sdpa_flash_quantized
from harness.count.formulas_linear import scaled_grouped_mm
from harness.count.mode import op_info
from harness.errors import HarnessError

aten = torch.ops.aten


class Grouped(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.w = nn.Parameter(weight)

    def forward(self, x, offs=None):
        return torch._grouped_mm(x, self.w, offs)


def test_grouped_mm_2d_3d_counts_the_rows_the_offsets_cover():
    torch.manual_seed(0)
    x = torch.randn(6, 8, dtype=torch.bfloat16)
    w = torch.randn(3, 8, 8, dtype=torch.bfloat16)
    offs = torch.tensor([2, 2, 5], dtype=torch.int32)  # experts get rows 0-1, none, 2-4; row 5 unused
    c = count(Grouped(w), (x, offs))
    assert c.macs == 5 * 8 * 8 and c.coverage["share_of_calls"] == 1.0
    ev = c.events[c.events.op == "aten::_grouped_mm"].iloc[0]
    assert ev["dtype"] == "bfloat16"
    # bytes: x 6x8 + w 3x8x8 + offs 3 int32 read, out 6x8 written
    assert ev.bytes == 2 * (48 + 192) + 4 * 3 + 2 * 48
    # the values: each expert's rows times its weight (bf16 kernels, so a loose tolerance)
    out = torch._grouped_mm(x, w, offs).float()
    ref = torch.cat([x[0:2].float() @ w[0].float(), x[2:5].float() @ w[2].float()])
    assert torch.allclose(out[:5], ref, rtol=2e-2, atol=2e-2)
    # on meta the offsets have no values: every row counts; float32 counts as bfloat16 does
    meta = count(Grouped(w), (x, offs), device="meta")
    meta32 = count(Grouped(w.float()), (x.float(), offs), device="meta")
    assert meta.macs == meta32.macs == 6 * 8 * 8
    assert count(Grouped(w.float()), (x.float(), offs)).macs == 5 * 8 * 8


def test_grouped_mm_other_layouts():
    torch.manual_seed(0)
    # 3D x 2D: groups split the columns of b; 8 of 12 columns covered
    c = count(Grouped(torch.randn(8, 12)), (torch.randn(3, 4, 8), torch.tensor([4, 8, 8], dtype=torch.int32)))
    assert c.macs == 4 * 8 * 8
    # 2D x 2D: groups split K; 8 of 12 covered; out [2, 4, 8]
    c = count(Grouped(torch.randn(12, 8)), (torch.randn(4, 12), torch.tensor([4, 8], dtype=torch.int32)))
    assert c.macs == 4 * 8 * 8 and c.events.iloc[-1].input_shapes.startswith("[[4, 12], [12, 8], [2]")
    # 3D x 3D: a bmm, no offsets
    c = count(Grouped(torch.randn(2, 8, 4)), torch.randn(2, 4, 8))
    assert c.macs == 2 * 4 * 8 * 4


def test_scaled_grouped_mm_formula():
    """fp8 grouped mm (CUDA only): the formula on meta tensors; offsets without values cover every row."""
    a = torch.empty(6, 16, dtype=torch.float8_e4m3fn, device="meta")
    b = torch.empty(3, 16, 8, dtype=torch.float8_e4m3fn, device="meta")
    sa, sb = torch.empty(6, device="meta"), torch.empty(3, 8, device="meta")
    w = scaled_grouped_mm(None, a, b, sa, sb, torch.empty(3, dtype=torch.int32, device="meta"))
    assert (w.macs, w.other) == (6 * 16 * 8, 2 * 6 * 8)


def test_routing_ops_are_counted_as_comparisons():
    class Router(nn.Module):
        def forward(self, logits):
            weights, experts = torch.topk(logits.softmax(-1), 2, dim=-1)  # 10 tokens x 8 experts
            ids, perm = torch.sort(experts.flatten())  # 20 ids
            order = torch.argsort(weights.flatten(), stable=True)
            counts = torch.histc(ids.float(), bins=8, min=0, max=7)
            offsets = torch.cumsum(counts, 0, dtype=torch.int32)
            return torch.bincount(ids, minlength=8), perm, order, offsets

    c = count(Router(), torch.randn(10, 8))
    assert c.coverage["share_of_calls"] == 1.0, c.uncounted
    other = c.by_op.groupby("op").other_flops.sum()
    assert other["aten::topk"] == 80 * 1  # N x max(1, ceil(log2 2))
    assert other["aten::sort"] == other["aten::argsort"] == 20 * 5  # 20 ids: ceil(log2 20) = 5
    assert other["aten::histc"] == 20 and other["aten::bincount"] == 20 and other["aten::cumsum"] == 8
    assert c.macs == 0


def test_formulas_keyed_by_overload():
    flash = aten._scaled_dot_product_flash_attention
    assert op_info(flash.quantized).formula is sdpa_flash_quantized and op_info(flash.default).formula is sdpa_flash
    q = torch.empty(1, 2, 4, 8, device="meta")
    k = v = torch.empty(1, 2, 6, 8, device="meta")
    scale = torch.empty(1, device="meta")
    # BH=2, L=4, S=6, E=Ev=8: macs 2*4*6*16; other 2*4*6*(5 + 1 causal mask) + 2*(4+6)*8
    expected = (2 * 4 * 6 * 16, 2 * 4 * 6 * 6 + 2 * 10 * 8)
    w = sdpa_flash_quantized(None, q, k, v, scale, scale, scale, 0.0, True)
    assert (w.macs, w.other) == expected
    w = cudnn_forward(None, q, k, v, None, None, None, 4, 6, True, 0.0, True)
    assert (w.macs, w.other) == expected
    # varlen (tokens, heads, dim): two sequences of 4 and 6 tokens, 2 heads, dim 8, not causal
    t = torch.empty(10, 2, 8)
    cum = torch.tensor([0, 4, 10], dtype=torch.int32)
    w = cudnn_forward(None, t, t, t, None, cum, cum, 6, 6, True, 0.0, False)
    assert w.macs == 2 * (16 + 36) * 16 and w.other == 2 * (16 + 36) * 5 + 2 * (8 + 12) * 8


def test_meta_errors_are_one_line_harness_errors():
    class NonZero(nn.Module):
        def forward(self, x):
            return x[x.nonzero(as_tuple=True)]

    assert count(NonZero(), torch.randn(4)).macs == 0
    with pytest.raises(HarnessError, match="meta device failed: the forward reads tensor values") as exc:
        count(NonZero(), torch.randn(4), device="meta")
    assert "\n" not in str(exc.value) and "count on a real device instead" in str(exc.value)


def _mixtral(**kw):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    cfg = transformers.MixtralConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        num_local_experts=4, num_experts_per_tok=2, vocab_size=128, max_position_embeddings=64, **kw)
    torch.manual_seed(0)
    return transformers.MixtralForCausalLM(cfg).eval()


def test_tiny_mixtral_grouped_and_eager_experts_count_the_same():
    grouped = _mixtral()
    eager = _mixtral(experts_implementation="eager")
    assert grouped.config._experts_implementation == "grouped_mm"
    ids = {"input_ids": torch.randint(0, 128, (1, 16)), "use_cache": False}
    a, b = count(grouped, ids), count(eager, ids)
    assert "aten::_grouped_mm" in set(a.events.op) and "aten::_grouped_mm" not in set(b.events.op)
    assert a.coverage["share_of_calls"] == b.coverage["share_of_calls"] == 1.0, (a.uncounted, b.uncounted)
    assert a.macs == b.macs
    # experts: 16 tokens x top-2 = 32 rows, each gate_up (64 -> 256) and down (128 -> 64), 2 layers
    experts = a.by_module.set_index("path").loc[["model.layers.0.mlp.experts", "model.layers.1.mlp.experts"], "macs"]
    assert experts.tolist() == [32 * (64 * 256 + 128 * 64)] * 2
