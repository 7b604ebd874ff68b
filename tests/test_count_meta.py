"""Counting without compute or memory: meta-device models and count(..., device="meta")."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from harness import scenario
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
    if name not in scenario.builtin_paths():
        pytest.skip(f"scenario {name} not present")
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
    if "tiny_gpt" not in scenario.builtin_paths():
        pytest.skip("tiny_gpt scenario not present")
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

    t0 = time.perf_counter()
    with torch.device("meta"):
        model = Decoder().eval()
    c = count(model, torch.zeros(1, SEQ, dtype=torch.long, device="meta"))
    elapsed = time.perf_counter() - t0
    print(json.dumps({"params": c.params, "macs": c.macs, "coverage": c.coverage["share_of_calls"],
                      "seconds": elapsed, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
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
