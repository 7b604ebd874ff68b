"""Counting without compute or memory: meta-device models and count(..., device="meta")."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from harness.pipeline import scenario
from harness.count import count
from harness.errors import HarnessError

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("params", "trainable_params", "buffers", "macs", "flops", "other_flops", "bytes")


FUSED = {"aten::_transformer_encoder_layer_fwd", "aten::_native_multi_head_attention"}


def assert_same_counts(cpu, meta):
    """Every total agrees.  Where the CPU ran a fused fast-path kernel, meta (which cannot take
    the fast path) ran PyTorch's unfused ops instead: by_op then differs by design, and so do
    the rows of submodules the unfused path calls; every module the CPU run called agrees."""
    for f in FIELDS:
        assert getattr(cpu, f) == getattr(meta, f), f
    fused = FUSED & set(cpu.events.op)
    if not fused:
        assert cpu.by_op.equals(meta.by_op)
        assert cpu.by_module.equals(meta.by_module)
        assert cpu.coverage == meta.coverage
    else:
        called = cpu.by_module.calls > 0
        assert cpu.by_module[called].equals(meta.by_module[called])
        assert meta.coverage["share_of_calls"] == 1.0


SCENARIOS = ["text_lstm", "transformer_encoder", "tiny_gpt", "two_input", "shufflenet_v2_x1_0", "mobilenet_v2",
             "vit_b_16"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenarios_cpu_equals_meta(name):
    assert name in scenario.builtin_paths()  # built-in scenarios ship with the repo: a missing one is a defect
    sc = scenario.load(name)
    model = scenario.build(sc).eval()
    inputs = scenario.inputs(sc, 2, "cpu")
    cpu = count(model, inputs)
    meta = count(model, inputs, device="meta")
    assert cpu.device == "cpu" and meta.device == "meta"
    assert cpu.coverage["share_of_calls"] == 1.0, cpu.coverage["uncounted_ops"]
    assert_same_counts(cpu, meta)
    # the user's model is untouched: still real, no hooks left behind
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_model_built_on_meta_with_cpu_inputs():
    def build():
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 10))

    torch.manual_seed(0)
    real = build().eval()
    with torch.device("meta"):
        meta_model = build().eval()
    x = torch.randn(2, 3, 32, 32)
    a = count(real, x)
    b = count(meta_model, x)  # CPU inputs are converted to meta tensors of the same shape
    c = count(meta_model, x.to("meta"))
    assert_same_counts(a, b)
    assert_same_counts(a, c)
    assert b.device == "meta"


def test_meta_copy_keeps_ties_and_leaves_model_alone():
    assert "tiny_gpt" in scenario.builtin_paths()
    sc = scenario.load("tiny_gpt")
    model = scenario.build(sc).eval()
    ptr = model.head.weight.data_ptr()
    c = count(model, scenario.inputs(sc, 1, "cpu"), device="meta")
    assert c.params == sum(p.numel() for p in model.parameters())  # tied head/embedding once
    assert model.head.weight is model.tok.weight and model.head.weight.data_ptr() == ptr


def test_dtype_sizes_on_meta():
    with torch.device("meta"):
        lin = nn.Linear(16, 8, dtype=torch.bfloat16)
    c = count(lin, torch.empty(4, 16, dtype=torch.bfloat16, device="meta"))
    # bf16: 2 bytes per element: x 64 + W 128 + b 8 + out 32
    assert c.bytes == 2 * (64 + 128 + 8 + 32)
    assert c.by_op["dtype"].tolist() == ["bfloat16"]


def test_value_dependent_forward_on_meta_is_a_clear_error():
    class ReadsValues(nn.Module):
        def forward(self, x):
            return x * float(x.sum())

    with pytest.raises(HarnessError, match="reads tensor values"):
        count(ReadsValues(), torch.randn(3), device="meta")


def test_device_argument_rejects_other_devices():
    with pytest.raises(HarnessError, match="meta"):
        count(nn.Linear(2, 2), torch.randn(1, 2), device="cuda")


SEVEN_B = textwrap.dedent('''
    import json, resource, sys, time
    import torch
    import torch.nn.functional as F
    from torch import nn
    sys.path.insert(0, sys.argv[1])
    from harness.count import count

    D, LAYERS, HEADS, MLP, VOCAB, SEQ = 4096, 32, 32, 11008, 32000, 2048

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.RMSNorm(D), nn.RMSNorm(D)
            self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))
            self.gate, self.up = nn.Linear(D, MLP, bias=False), nn.Linear(D, MLP, bias=False)
            self.down = nn.Linear(MLP, D, bias=False)

        def forward(self, x):
            b, t, _ = x.shape
            h = self.norm1(x)
            q, k, v = (p(h).view(b, t, HEADS, D // HEADS).transpose(1, 2) for p in (self.q, self.k, self.v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.o(y.transpose(1, 2).reshape(b, t, D))
            h = self.norm2(x)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, D)
            self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
            self.norm = nn.RMSNorm(D)
            self.head = nn.Linear(D, VOCAB, bias=False)

        def forward(self, tokens):
            x = self.embed(tokens)
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.norm(x))

    def peak_rss_kib():
        # VmHWM: this process's own peak. ru_maxrss is not: Linux carries the peak of the mm that exec
        # replaced into it, and with vfork that is the parent's (a pytest process of several GiB).
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    t0 = time.perf_counter()
    with torch.device("meta"):
        model = Decoder().eval()
    c = count(model, torch.zeros(1, SEQ, dtype=torch.long, device="meta"))
    elapsed = time.perf_counter() - t0
    print(json.dumps({"params": c.params, "macs": c.macs, "coverage": c.coverage["share_of_calls"],
                      "seconds": elapsed, "maxrss_kib": peak_rss_kib()}))
''')


def test_7b_decoder_counts_in_seconds_under_2_gib():
    out = subprocess.run([sys.executable, "-c", SEVEN_B, str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    # embedding 32000*4096 + 32 x (4 x 4096^2 + 3 x 4096*11008 + 2 x 4096) + 4096 + head 4096*32000
    assert r["params"] == 6_738_415_616
    t, d, f, v = 2048, 4096, 11008, 32000
    per_block = 4 * t * d * d + 2 * t * t * d + 3 * t * d * f
    assert r["macs"] == 32 * per_block + t * d * v == 14_630_806_093_824
    assert r["coverage"] == 1.0
    assert r["maxrss_kib"] < 2 * 1024 * 1024, r
    assert r["seconds"] < 60, r


def _meta_of(obj):
    if isinstance(obj, torch.Tensor):
        if obj.dtype == torch.int64 and obj.dim() == 1 and obj.device.type == "cpu" and getattr(obj, "_keep_cpu", False):
            return obj
        return torch.empty_strided(tuple(obj.shape), tuple(obj.stride()), dtype=obj.dtype, device="meta")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_meta_of(o) for o in obj)
    return obj


def _layouts(res):
    ts = [res] if isinstance(res, torch.Tensor) else [r for r in res if isinstance(r, torch.Tensor)]
    return [(tuple(t.shape), tuple(t.stride()), t.dtype) for t in ts]


def test_fast_meta_kernels_produce_cpu_layouts():
    """The fast meta kernels must give the shape, strides and dtype the CPU kernel gives
    (later view/copy decisions, and so bytes, depend on strides)."""
    from harness.count.meta_kernels import FAST_META

    aten = torch.ops.aten
    x = torch.randn(2, 3, 8)
    xt = torch.randn(2, 8, 3).transpose(1, 2)
    qkv = torch.randn(2, 5, 3 * 16)
    q = qkv[..., :16].view(2, 5, 4, 4).transpose(1, 2)  # a non-dense view, as in GPT blocks
    img = torch.randn(2, 4, 9, 9)
    lstm = nn.LSTM(8, 5, num_layers=2, bidirectional=True, batch_first=True)
    params = [p.detach() for p in lstm._flat_weights]
    h0 = torch.zeros(4, 2, 5)
    cases = [
        (aten.add.Tensor, (x, x)),
        (aten.add.Tensor, (x, torch.randn(8))),
        (aten.add.Tensor, (xt, xt)),
        (aten.add.Tensor, (xt, x)),
        (aten.mul.Tensor, (x, torch.tensor(2.0))),
        (aten.mul.Scalar, (x, 0.5)),
        (aten.div.Tensor, (torch.arange(6).view(2, 3), torch.arange(1, 4))),
        (aten.sub.Tensor, (torch.randn(4, 1, 5), torch.randn(1, 3, 1))),
        (aten.add_.Tensor, (x.clone(), x)),
        (aten.gelu.default, (xt,)),
        (aten.relu.default, (q,)),
        (aten.linear.default, (xt, torch.randn(6, 8), torch.randn(6))),
        (aten.linear.default, (x, torch.randn(6, 8))),
        (aten.conv2d.default, (img, torch.randn(6, 2, 3, 3), None, [2, 2], [1, 1], [1, 1], 2)),
        (aten.conv2d.default, (img, torch.randn(6, 4, 1, 1), None, [1, 1], [0, 0], [2, 2], 1)),
        (aten.conv1d.default, (x, torch.randn(4, 3, 3), torch.randn(4), [1], [1], [1], 1)),
        (aten.batch_norm.default, (img, None, None, torch.zeros(4), torch.ones(4), False, 0.1, 1e-5, True)),
        (aten.layer_norm.default, (x, [8], None, None, 1e-5, True)),
        (aten.layer_norm.default, (xt, [8], torch.randn(8), torch.randn(8), 1e-5, True)),
        (aten.layer_norm.default, (img.permute(0, 2, 3, 1), [4], None, None, 1e-5, True)),
        (aten.adaptive_avg_pool2d.default, (img, [1, 1])),
        (aten.adaptive_avg_pool2d.default, (img[:1], [1, 1])),
        (aten.adaptive_avg_pool2d.default, (img, [4, 3])),
        (aten.upsample_bilinear2d.vec, (img, [17, 5], False, None)),
        (aten.upsample_bilinear2d.vec, (img[:1], [3, 12], True, None)),
        (aten.group_norm.default, (img, 2, None, None, 1e-5, True)),
        (aten.rms_norm.default, (x, [8], None, None)),
        (aten.cat.default, ([x, x], 1)),
        (aten.cat.default, ([x, torch.randn(1, 3, 8)], 0)),
        (aten.dropout.default, (x, 0.1, False)),
        (aten.scaled_dot_product_attention.default, (q, q, q, None, 0.0, True)),
        (aten.scaled_dot_product_attention.default, (x.unsqueeze(1), x.unsqueeze(1), x.unsqueeze(1))),
        (aten.lstm.input, (torch.randn(2, 7, 8), [h0, h0], params, True, 2, 0.0, False, True, True)),
        # float32 grouped mm in all four layouts (the CPU kernel pads row strides to 16 bytes)
        (aten._grouped_mm.default, (torch.randn(5, 8), torch.randn(3, 6, 8).transpose(1, 2),
                                    torch.tensor([2, 2, 4], dtype=torch.int32))),
        (aten._grouped_mm.default, (torch.randn(3, 5, 8), torch.randn(3, 6, 8).transpose(1, 2))),
        (aten._grouped_mm.default, (torch.randn(3, 5, 8), torch.randn(8, 12),
                                    torch.tensor([4, 8, 12], dtype=torch.int32))),
        (aten._grouped_mm.default, (torch.randn(5, 8), torch.randn(8, 4), torch.tensor([4, 8], dtype=torch.int32))),
        (aten.gru.input, (torch.randn(7, 2, 8), torch.zeros(1, 2, 5),
                          [p.detach() for p in nn.GRU(8, 5)._flat_weights], True, 1, 0.0, False, False, False)),
    ]
    checked = 0
    with torch.inference_mode():
        for op, args in cases:
            real = op(*args)
            fast = FAST_META[op](*_meta_of(args))
            if fast is NotImplemented:
                continue
            checked += 1
            assert _layouts(fast) == _layouts(real), op
    assert checked >= len(cases) - 3


def test_batch_one_causal_attention_layout_cpu_equals_meta():
    # batch 1 gives size-1 dims whose strides tie; the CPU flash kernel's output layout must still be matched
    assert "tiny_gpt" in scenario.builtin_paths()
    sc = scenario.load("tiny_gpt")
    model = scenario.build(sc).eval()
    x = scenario.inputs(sc, 1, "cpu")
    assert_same_counts(count(model, x), count(model, x, device="meta"))


# ------------------------------------------------------------------ the meta-result cache


def test_meta_cache_hit_rebuilds_exactly_what_the_meta_kernel_returns():
    """A non-contiguous, broadcasting mul (TensorIterator's stride rules in Python on meta): the second
    call is a hit, a new tensor with the shape, strides and dtype the real meta kernel gives."""
    from harness.count import meta_kernels as mk

    aten = torch.ops.aten
    x = torch.empty(2, 3, 4, device="meta").transpose(1, 2)  # (2, 4, 3), strides (12, 1, 4)
    y = torch.empty(4, 1, device="meta")
    truth = aten.mul.Tensor(x, y)
    first = mk.cached_meta(aten.mul.Tensor, (x, y), {})
    size = len(mk._CACHE)
    second = mk.cached_meta(aten.mul.Tensor, (x, y), {})
    assert len(mk._CACHE) == size and second is not first
    for t in (first, second):
        assert (t.shape, t.stride(), t.dtype) == (truth.shape, truth.stride(), truth.dtype)
    assert truth.stride() == (12, 1, 4)  # the output follows the input's layout, not row-major (12, 3, 1)


def test_meta_cache_keys_scalars_by_type_and_never_caches_real_outputs_or_aliases():
    from harness.count import meta_kernels as mk

    aten = torch.ops.aten
    ints = torch.empty(5, dtype=torch.int64, device="meta")
    assert mk.cached_meta(aten.mul.Scalar, (ints, 2), {}).dtype == torch.int64
    assert mk.cached_meta(aten.mul.Scalar, (ints, 2.0), {}).dtype == torch.float32  # 2 == 2.0: another key
    size = len(mk._CACHE)
    real = mk.cached_meta(aten.arange.default, (4,), {"device": torch.device("cpu")})
    assert real.tolist() == [0, 1, 2, 3] and len(mk._CACHE) == size  # a CPU output: its data matter
    for op in (aten.transpose.int, aten.add_.Tensor, aten.native_dropout.default, aten.nonzero.default):
        assert not mk.cacheable(op, composite=False), op
    assert mk.cacheable(aten.pow.Tensor_Scalar, composite=False)
    assert not mk.cacheable(aten.pow.Tensor_Scalar, composite=True)
