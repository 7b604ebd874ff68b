"""Reference figures on torchvision models and cross-checks against torch.utils.flop_counter.

The exact figures are counted on the meta device (no compute); one CPU run checks
that CPU and meta agree on every figure.  FlopCounterMode is the truth for MACs
where it is exact: with PyTorch's fast paths disabled (unfused attention, math
SDPA, no oneDNN), so that every matmul it sees is one it has a formula for.
"""
import contextlib
import warnings

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from harness.count import count


@contextlib.contextmanager
def unfused(onednn: bool = True):
    """PyTorch with the fast paths off: what FlopCounterMode counts exactly.

    Unfused attention (no MHA fast path) and math SDPA always; oneDNN off only
    where it matters (RNNs: its LSTM kernel is invisible to FlopCounterMode; convs
    are counted at aten::convolution either way and run much slower without it).
    """
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=onednn):
                yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


def flop_counter_macs(model, *inputs, onednn: bool = True) -> int:
    with unfused(onednn), torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*inputs)
    return fc.get_total_flops() // 2


def _meta_model(name):
    with torch.device("meta"):
        return getattr(torchvision.models, name)().eval()


# batch 1, 3 x 224 x 224: vgg16 and vit_b_16 are derived by hand below; every row is also what
# FlopCounterMode counts (conv + matmul MACs) and what the model's own parameters add up to
REFERENCE = [
    ("vgg16", 15_470_264_320, 138_357_544),
    ("resnet50", 4_089_184_256, 25_557_032),
    ("mobilenet_v2", 300_774_272, 3_504_872),
    ("vit_b_16", 17_563_828_224, 86_567_656),
]


@pytest.mark.parametrize("name, macs, params", REFERENCE)
def test_reference_figures_are_torchs_own(name, macs, params):
    # on meta too: FlopCounterMode needs only shapes (fast paths off: what it counts exactly)
    model = _meta_model(name)
    assert flop_counter_macs(model, torch.empty(1, 3, 224, 224, device="meta")) == macs
    assert sum(p.numel() for p in model.parameters()) == params


def test_vgg16_by_hand():
    # 13 3x3 convolutions, padding 1 (output side = input side), 2x2 max-pool after each stage:
    # (side, in channels, out channels); MACs = side^2 x out x in x 9
    convs = [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128),
             (56, 128, 256), (56, 256, 256), (56, 256, 256), (28, 256, 512), (28, 512, 512), (28, 512, 512),
             (14, 512, 512), (14, 512, 512), (14, 512, 512)]
    conv_macs = sum(side * side * cout * cin * 9 for side, cin, cout in convs)
    assert conv_macs == 15_346_630_656
    # classifier on the 512 x 7 x 7 pooled features: 25,088 -> 4096 -> 4096 -> 1000
    fcs = [(512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)]
    fc_macs = sum(i * o for i, o in fcs)  # 102,760,448 + 16,777,216 + 4,096,000 = 123,633,664
    assert conv_macs + fc_macs == 15_470_264_320
    params = sum(cout * cin * 9 + cout for _, cin, cout in convs) + sum(i * o + o for i, o in fcs)
    assert params == 138_357_544


@pytest.mark.parametrize("name, macs, params", REFERENCE)
def test_reference_figures_on_meta(name, macs, params):
    c = count(_meta_model(name), torch.empty(1, 3, 224, 224, device="meta"))
    assert c.macs == macs
    assert c.params == params
    assert c.flops == 2 * macs
    assert c.coverage["share_of_calls"] == 1.0
    assert c.device == "meta"


def test_vit_b_16_macs_by_hand():
    # patch embedding conv: 768 x 196 outputs x (3 x 16 x 16)
    patch = 768 * 196 * 3 * 16 * 16
    n, d, mlp = 197, 768, 3072
    # per layer: qkv n*d*3d, QK^T and PV 2*n*n*d, out projection n*d*d, MLP 2*n*d*mlp
    layer = n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * mlp
    head = 768 * 1000
    assert patch + 12 * layer + head == 17_563_828_224


def test_transformer_encoder_reference():
    layer = nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True)
    model = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False).eval()
    x = torch.randn(1, 128, 512)
    c = count(model, x)
    # per layer: qkv 128*512*1536 + attention 2*128*128*512 + out 128*512*512 + FF 2*128*512*2048
    per_layer = 128 * 512 * 1536 + 2 * 128 * 128 * 512 + 128 * 512 * 512 + 2 * 128 * 512 * 2048
    assert c.macs == 6 * per_layer == 2_516_582_400
    # the fused kernel really ran, and is counted as the unfused truth
    assert c.events.op.tolist().count("aten::_transformer_encoder_layer_fwd") == 6
    assert c.macs == flop_counter_macs(model, x)
    # meta agrees on every figure
    m = count(model, x, device="meta")
    assert (m.macs, m.other_flops, m.bytes) == (c.macs, c.other_flops, c.bytes)


def test_resnet50_cpu_equals_meta_and_flop_counter():
    model = torchvision.models.resnet50().eval()
    x = torch.randn(1, 3, 224, 224)
    cpu = count(model, x)
    meta = count(model, x, device="meta")
    assert cpu.macs == 4_089_184_256
    for f in ("params", "macs", "flops", "other_flops", "bytes", "buffers"):
        assert getattr(cpu, f) == getattr(meta, f), f
    assert cpu.by_op.drop(columns=[]).equals(meta.by_op)
    assert cpu.by_module.equals(meta.by_module)
    assert next(model.parameters()).device.type == "cpu"  # the user's model is untouched
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    assert fc.get_total_flops() == cpu.flops


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "shufflenet_v2_x1_0", "efficientnet_b0"])
def test_torchvision_small_inputs_match_flop_counter(name):
    # depthwise, grouped and strided convolutions, squeeze-excitation: conv + linear MACs exactly
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 48, 48)
    assert count(model, x).macs == flop_counter_macs(model, x)


def test_small_vit_default_execution_matches_unfused_truth():
    # fused native multi-head attention by default; FlopCounterMode sees only ~64% of ViT there
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    c = count(vit, x)
    assert "aten::_native_multi_head_attention" in c.events.op.tolist()
    assert c.macs == flop_counter_macs(vit, x)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        vit(x)
    assert fc.get_total_flops() < c.flops  # the default-execution blind spot we fix
