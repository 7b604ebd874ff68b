"""Hand-computed counts for matmul-class ops and convolutions (each test writes out its arithmetic)."""
import torch
import torch.nn.functional as F
from torch import nn

from harness.count import count

from conftest import F32, Fn


# ------------------------------------------------------------------ matmul family


def test_linear_2d_3d_and_bias_bytes():
    lin = nn.Linear(64, 32)
    c = count(lin, torch.randn(8, 64))
    # 8 rows x 32 outputs, each a dot product of length 64
    assert c.macs == 8 * 32 * 64 == 16384
    assert c.flops == 2 * c.macs
    # bias: one add per output element
    assert c.other_flops == 8 * 32
    # bytes: x (8x64), W (32x64), b (32) read once; out (8x32) written once
    assert c.bytes == F32 * (8 * 64 + 32 * 64 + 32 + 8 * 32)
    c3 = count(lin, torch.randn(2, 5, 64))
    assert c3.macs == 2 * 5 * 32 * 64
    nob = count(nn.Linear(64, 32, bias=False), torch.randn(8, 64))
    assert nob.other_flops == 0


def test_mm_addmm_alpha_beta():
    a, b, bias = torch.randn(6, 4), torch.randn(4, 5), torch.randn(5)
    c = count(Fn(torch.mm), (a, b))
    assert c.macs == 6 * 5 * 4 and c.other_flops == 0
    c = count(Fn(lambda x, y, z: torch.addmm(z, x, y)), (a, b, bias))
    # 6x5 products of length 4; one add of the bias per output element
    assert c.macs == 120 and c.other_flops == 30
    # read bias (5), a (24), b (20); write out (30)
    assert c.bytes == F32 * (5 + 24 + 20 + 30)
    c = count(Fn(lambda x, y, z: torch.addmm(z, x, y, beta=2, alpha=0.5)), (a, b, bias))
    # add 30 + scale by beta 30 + scale by alpha 30
    assert c.other_flops == 90


def test_bmm_baddbmm_matmul_broadcast_and_vectors():
    a, b = torch.randn(3, 6, 4), torch.randn(3, 4, 5)
    assert count(Fn(torch.bmm), (a, b)).macs == 3 * 6 * 5 * 4
    c = count(Fn(lambda x, y, z: torch.baddbmm(z, x, y)), (a, b, torch.randn(3, 6, 5)))
    assert c.macs == 360 and c.other_flops == 3 * 6 * 5
    # (2,1,3,4) @ (5,4,6) broadcasts to (2,5,3,6): 180 outputs, each of length 4
    c = count(Fn(torch.matmul), (torch.randn(2, 1, 3, 4), torch.randn(5, 4, 6)))
    assert c.macs == 2 * 5 * 3 * 6 * 4
    # vector . vector: k MACs; matrix . vector: m*k
    assert count(Fn(torch.matmul), (torch.randn(7), torch.randn(7))).macs == 7
    assert count(Fn(torch.matmul), (torch.randn(3, 7), torch.randn(7))).macs == 21
    assert count(Fn(torch.mv), (torch.randn(3, 7), torch.randn(7))).macs == 21
    assert count(Fn(torch.dot), (torch.randn(7), torch.randn(7))).macs == 7
    # outer: one multiply per output, nothing accumulated
    c = count(Fn(torch.outer), (torch.randn(3), torch.randn(4)))
    assert c.macs == 0 and c.other_flops == 12


def test_functional_linear_and_einsum():
    x, w, b = torch.randn(4, 10), torch.randn(3, 10), torch.randn(3)
    c = count(Fn(F.linear), (x, w, b))
    assert c.macs == 4 * 3 * 10 and c.other_flops == 12
    # batched matmul as einsum: 2 x 3 x 5 outputs over j=4
    c = count(Fn(lambda p, q: torch.einsum("bij,bjk->bik", p, q)), (torch.randn(2, 3, 4), torch.randn(2, 4, 5)))
    assert c.macs == 2 * 3 * 5 * 4
    assert list(c.events.op) == ["aten::einsum"]
    # a full contraction to a scalar: 3*4 products accumulated
    c = count(Fn(lambda p, q: torch.einsum("ij,ij->", p, q)), (torch.randn(3, 4), torch.randn(3, 4)))
    assert c.macs == 12


# ------------------------------------------------------------------ convolutions


def test_conv2d_stride_padding_bias():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    c = count(conv, torch.randn(2, 3, 16, 16))
    # out 2 x 8 x 8 x 8 = 1024 elements, each 3 (c_in) x 3 x 3 weights; padded taps count
    assert c.macs == 1024 * 27 == 27648
    assert c.other_flops == 1024  # bias
    assert c.bytes == F32 * (2 * 3 * 16 * 16 + 8 * 3 * 9 + 8 + 1024)


def test_conv_1x1_no_bias_bytes_shufflenet_mac():
    h = w = 14
    c1, c2 = 16, 24
    c = count(nn.Conv2d(c1, c2, 1, bias=False), torch.randn(1, c1, h, w))
    assert c.macs == h * w * c1 * c2
    # ShuffleNet V2's memory access cost of a 1x1 conv: h*w*(c1+c2) + c1*c2 elements
    assert c.bytes == 4 * (h * w * (c1 + c2) + c1 * c2)


def test_depthwise_grouped_dilated():
    dw = nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32, bias=False)
    c = count(dw, torch.randn(1, 32, 16, 16))
    # out 1 x 32 x 8 x 8 = 2048; each accumulates 1 (c_in/groups) x 9 weights
    assert c.macs == 2048 * 9
    g = nn.Conv2d(8, 12, 3, padding=1, groups=4)
    c = count(g, torch.randn(1, 8, 5, 5))
    # out 12 x 25 = 300; each over 8/4 = 2 channels x 9 = 18
    assert c.macs == 300 * 18 and c.other_flops == 300
    d = nn.Conv2d(3, 4, 3, dilation=2)
    c = count(d, torch.randn(1, 3, 9, 9))
    # dilated 3x3 spans 5: out 9 - 4 = 5, 4 x 25 = 100 outputs x 27
    assert c.macs == 100 * 27


def test_conv1d_conv3d():
    c = count(nn.Conv1d(4, 8, 5, stride=2, padding=2), torch.randn(2, 4, 20))
    # L_out = (20 + 4 - 5) // 2 + 1 = 10; 2 x 8 x 10 = 160 outputs x 4 x 5
    assert c.macs == 160 * 20 and c.other_flops == 160
    c = count(nn.Conv3d(2, 4, 3, padding=1, bias=False), torch.randn(1, 2, 4, 6, 6))
    # out 4 x 4 x 6 x 6 = 576 outputs x 2 x 27
    assert c.macs == 576 * 54


def test_conv_transpose():
    ct = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    x = torch.randn(1, 4, 5, 5)
    c = count(ct, x)
    # every input element (4 x 25 = 100) is scattered over c_out/groups x 3 x 3 = 3 x 9 outputs
    assert c.macs == 100 * 27
    # out (5-1)*2 - 2 + 3 + 1 = 10: 6 x 10 x 10 bias adds
    assert c.other_flops == 600
    c = count(nn.ConvTranspose1d(3, 5, 4, stride=2), torch.randn(2, 3, 7))
    assert c.macs == 2 * 3 * 7 * 5 * 4


def test_functional_conv_and_backend_entry_points():
    x, w = torch.randn(1, 4, 6, 6), torch.randn(8, 2, 3, 3)
    c = count(Fn(lambda a, b: F.conv2d(a, b, groups=2, padding=1)), (x, w))
    # out 8 x 36 = 288, each over 2 x 9
    assert c.macs == 288 * 18
    # the dispatch-level entry points (as seen without inference mode) count the same
    c2 = count(Fn(lambda a, b: torch.ops.aten.convolution(a, b, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 2)), (x, w))
    assert c2.macs == c.macs and list(c2.events.op) == ["aten::convolution"]
    c3 = count(Fn(lambda a, b: torch.ops.aten.mkldnn_convolution(a, b, None, [1, 1], [1, 1], [1, 1], 2)), (x, w))
    assert c3.macs == c.macs
