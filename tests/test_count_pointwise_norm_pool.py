"""Hand-computed counts for elementwise ops, activations, softmax, norms, pooling, views and copies."""
import torch
import torch.nn.functional as F
from torch import nn

from harness.count import count

from conftest import F32, Fn


def test_elementwise_and_activations():
    x, y = torch.randn(4, 5), torch.randn(4, 5)
    # one flop per output element; reads x and y, writes the result
    c = count(Fn(torch.add), (x, y))
    assert (c.macs, c.other_flops, c.bytes) == (0, 20, F32 * 60)
    # alpha != 1 scales the second operand: one more flop per element
    assert count(Fn(lambda a, b: torch.add(a, b, alpha=2)), (x, y)).other_flops == 40
    for act in (F.relu, F.gelu, F.silu, torch.sigmoid, torch.tanh, F.hardswish):
        assert count(Fn(act), x).other_flops == 20, act
    # in-place activation: read and write the same tensor
    c = count(nn.ReLU(inplace=True), torch.randn(4, 5))
    assert c.other_flops == 20 and c.bytes == F32 * 40
    # x + y broadcast: the output has 4 x 5 elements
    assert count(Fn(torch.mul), (x, torch.randn(5))).other_flops == 20


def test_softmax_and_log_softmax():
    x = torch.randn(3, 7)
    # 5 per element: max, subtract, exp, sum, divide
    assert count(Fn(lambda t: t.softmax(-1)), x).other_flops == 5 * 21
    # log_softmax: 5 per element + a log per row (3 rows)
    assert count(Fn(lambda t: F.log_softmax(t, -1)), x).other_flops == 5 * 21 + 3


def test_reductions():
    x = torch.randn(4, 6)
    assert count(Fn(lambda t: t.sum(-1)), x).other_flops == 24
    # mean: 24 adds + 4 divides
    assert count(Fn(lambda t: t.mean(-1)), x).other_flops == 28
    assert count(Fn(lambda t: t.var(-1)), x).other_flops == 4 * 24


def test_batch_norm_eval_and_train():
    x = torch.randn(2, 3, 4, 4)  # n = 96 elements, C = 3 channels
    bn = nn.BatchNorm2d(3).eval()
    c = count(bn, x)
    # normalize 2n + (add eps, rsqrt) 2C + weight n + bias n
    assert c.other_flops == 2 * 96 + 2 * 3 + 96 + 96 == 390
    # reads x and 4 per-channel vectors, writes y
    assert c.bytes == F32 * (96 + 4 * 3 + 96)
    bn.train()
    c = count(bn, x)
    # + batch statistics 4n + running-statistics update 4C + nn.BatchNorm2d's num_batches_tracked += 1
    assert c.other_flops == 390 + 4 * 96 + 4 * 3 + 1
    assert c.training


def test_layer_group_instance_rms_norm():
    x = torch.randn(2, 5, 8)  # n = 80, 10 rows of 8
    # statistics 4n + normalize 2n + 2 per row + weight n + bias n
    assert count(nn.LayerNorm(8), x).other_flops == 8 * 80 + 2 * 10 == 660
    # RMS: square and add 2n + 2 per row + normalize n + weight n
    assert count(nn.RMSNorm(8), x).other_flops == 4 * 80 + 2 * 10 == 340
    y = torch.randn(2, 4, 3, 3)  # n = 72
    # group norm with 2 groups: G = 2 x 2 = 4: 6n + 2G + affine 2n
    assert count(nn.GroupNorm(2, 4), y).other_flops == 8 * 72 + 2 * 4
    # instance norm (no affine, batch statistics): G = 2 x 4 = 8: 6n + 2G
    assert count(nn.InstanceNorm2d(4), y).other_flops == 6 * 72 + 2 * 8


def test_pooling():
    # 2x2 max pool: 1 x 3 x 4 x 4 = 48 outputs, 4 compares each
    assert count(nn.MaxPool2d(2), torch.randn(1, 3, 8, 8)).other_flops == 48 * 4
    # 3x3 average pool, stride 2, padding 1 on 7x7: out 4x4, 2 channels: 32 outputs x 9
    assert count(nn.AvgPool2d(3, stride=2, padding=1), torch.randn(1, 2, 7, 7)).other_flops == 32 * 9
    # adaptive 5x7 -> 2x3: rows [0,3),[2,5) = 3+3; cols [0,3),[2,5),[4,7) = 3+3+3; 6 x 9 = 54
    assert count(nn.AdaptiveAvgPool2d((2, 3)), torch.randn(1, 1, 5, 7)).other_flops == 54
    # global average pooling reads every element once
    assert count(nn.AdaptiveAvgPool2d(1), torch.randn(2, 3, 4, 4)).other_flops == 96
    c = count(nn.MaxPool1d(3, stride=1), torch.randn(1, 2, 10))
    assert c.other_flops == 2 * 8 * 3


def test_views_are_free_and_copies_move_bytes():
    x = torch.randn(4, 6)
    c = count(Fn(lambda t: t.flatten().view(2, 12).transpose(0, 1).unsqueeze(0).permute(2, 1, 0)[0].expand(12, 5)), x)
    assert (c.macs, c.other_flops, c.bytes) == (0, 0, 0)
    # flattening a transposed tensor cannot view: it copies (read 24, write 24)
    assert count(Fn(lambda t: t.t().flatten()), x).bytes == F32 * 48
    assert c.coverage["share_of_calls"] == 1.0
    # a contiguous copy of a transposed tensor: read 24, write 24
    c = count(Fn(lambda t: t.t().contiguous()), x)
    assert c.bytes == F32 * 48 and c.other_flops == 0
    # reshape of a non-viewable tensor copies
    assert count(Fn(lambda t: t.t().reshape(24)), x).bytes == F32 * 48
    # reshape that can view is free
    assert count(Fn(lambda t: t.reshape(24)), x).bytes == 0
    # cat reads both inputs, writes the result
    assert count(Fn(lambda a, b: torch.cat([a, b])), (x, x.clone())).bytes == F32 * (24 + 24 + 48)
    # clone: read + write
    assert count(Fn(lambda t: t.clone()), x).bytes == F32 * 48


def test_dropout_eval_free_train_counted():
    d = nn.Dropout(0.5).eval()
    c = count(d, torch.randn(4, 5))
    assert (c.other_flops, c.bytes) == (0, 0)
    d.train()
    assert count(d, torch.randn(4, 5)).other_flops == 20


def test_embedding_reads_only_looked_up_rows():
    emb = nn.Embedding(10000, 300)
    idx = torch.randint(0, 10000, (2, 7))
    c = count(emb, idx)
    assert c.macs == 0 and c.other_flops == 0
    # indices (14 x int64) + 14 rows of 300 read + 14 x 300 written
    assert c.bytes == 8 * 14 + 2 * F32 * 14 * 300
    assert c.by_op.dtype.tolist() == ["float32"]


def test_embedding_bag():
    bag = nn.EmbeddingBag(100, 8, mode="mean")
    idx, off = torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([0, 2])
    c = count(bag, (idx, off))
    # 6 gathered rows x 8 adds + 2 bags x 8 divides
    assert c.other_flops == 6 * 8 + 2 * 8


def test_interpolation():
    x = torch.randn(1, 2, 4, 4)
    # nearest: data movement only; bilinear: 3 lerps x 3 flops per output (2 x 8 x 8 = 128)
    assert count(Fn(lambda t: F.interpolate(t, scale_factor=2)), x).other_flops == 0
    c = count(Fn(lambda t: F.interpolate(t, scale_factor=2, mode="bilinear")), x)
    assert c.other_flops == 9 * 128 and c.coverage["share_of_calls"] == 1.0
