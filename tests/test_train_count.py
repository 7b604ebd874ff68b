"""Counting a training step: backward and optimizer counted by their own ops, not assumed 3 x forward."""
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.flop_counter import FlopCounterMode

import harness
from harness.count import Counter
from harness.pipeline.workloads.train import split_work


def _phase(c, name, col="flops"):
    return int(c.by_phase.set_index("phase").loc[name, col])


def _module(c, path, phase, col="flops"):
    bm = c.by_module
    return int(bm[(bm.path == path) & (bm.phase == phase)][col].iloc[0])


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18()


# resnet18 at 224 x 224, batch 1, by hand (MACs = output elements x input channels x kernel area):
CONV1_MACS = 64 * 112 * 112 * 3 * 7 * 7  # 7x7 stride 2: 118,013,952
LAYER1_MACS = 4 * 64 * 56 * 56 * 64 * 9  # two blocks of two 3x3 convs, 64 -> 64 at 56: 4 x 115,605,504


def _stage_macs(cout: int, side: int) -> int:
    """layer2-4: a strided 3x3 conv cout/2 -> cout, three 3x3 convs cout -> cout and a 1x1 downsample
    cout/2 -> cout, all at the output side; each stage halves the side and doubles the channels, so each
    costs the same: 57,802,752 + 3 x 115,605,504 + 6,422,528 = 411,041,792."""
    return side * side * cout * (cout // 2 * 9 + 3 * cout * 9 + cout // 2)


FORWARD_MACS = CONV1_MACS + LAYER1_MACS + _stage_macs(128, 28) + _stage_macs(256, 14) + _stage_macs(512, 7) \
    + 512 * 1000  # fc; = 1,814,073,344
CONV1_FLOPS = 2 * CONV1_MACS  # 236,027,904


def test_resnet18_reference_figures(resnet18):
    assert _stage_macs(128, 28) == _stage_macs(256, 14) == _stage_macs(512, 7) == 411_041_792
    assert 2 * FORWARD_MACS == 3_628_146_688
    x = torch.randn(1, 3, 224, 224)
    c = harness.count(resnet18, x, train=True, optimizer="none")
    assert c.phases == ["forward", "backward"]
    assert _phase(c, "forward") == 2 * FORWARD_MACS
    # backward: grad input + grad weight of every conv and linear (2 x forward), less conv1's grad input
    # (the image does not require grad): 7,256,293,376 - 236,027,904 = 7,020,265,472
    assert _phase(c, "backward") == 2 * 2 * FORWARD_MACS - CONV1_FLOPS
    assert _phase(c, "forward") + _phase(c, "backward") == c.flops == 10_648_412_160
    # PyTorch's own test_flop_counter figure: the input requires grad, so conv1 computes its input gradient
    c = harness.count(resnet18, x.clone().requires_grad_(True), train=True, optimizer="none")
    assert c.flops == 3 * 2 * FORWARD_MACS == 10_884_440_064
    assert c.coverage["share_of_calls"] == 1.0, c.coverage


def test_resnet18_backward_by_module(resnet18):
    c = harness.count(resnet18, torch.randn(1, 3, 224, 224), train=True, optimizer="none")
    layer1_conv = 2 * 64 * 56 * 56 * 64 * 9  # 3x3, 64 -> 64 at 56 x 56: 2 x 115,605,504 FLOPs
    assert _module(c, "layer1.0.conv1", "forward") == layer1_conv == 231_211_008
    assert _module(c, "layer1.0.conv1", "backward") == 2 * layer1_conv == 462_422_016  # grad input + grad weight
    # the first layer computes no input gradient: its backward is its forward (grad weight only)
    conv1_fwd = 64 * 112 * 112 * 3 * 7 * 7 * 2
    assert _module(c, "conv1", "forward") == conv1_fwd == CONV1_FLOPS == 236_027_904
    assert _module(c, "conv1", "backward") == conv1_fwd
    # fc: grad input (1 x 512 x 1000) + grad weight, bias grad a sum (other flops)
    assert _module(c, "fc", "backward") == 2 * 2 * 512 * 1000
    # every backward FLOP of a conv/linear lands on a module below the root
    bw = c.by_module[c.by_module.phase == "backward"]
    children = bw[bw.depth == 1].flops.sum()
    assert children == _phase(c, "backward")


def test_matmul_flops_agree_with_flop_counter_mode(resnet18):
    x = torch.randn(2, 3, 224, 224)
    with FlopCounterMode(display=False) as fcm:
        resnet18(x).float().mean().backward()
    resnet18.zero_grad(set_to_none=True)
    c = harness.count(resnet18, x, train=True, optimizer="none")
    assert c.flops == fcm.get_total_flops()


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def test_linear_backward_by_hand():
    m, x = _mlp(), torch.randn(8, 64)
    c = harness.count(m, x, train=True, optimizer="none")
    fwd = 8 * 64 * 128 + 8 * 128 * 10
    assert c.macs == fwd + 8 * 64 * 128 + 2 * 8 * 128 * 10  # first layer: grad weight only
    assert _phase(c, "backward", "macs") == 8 * 64 * 128 + 2 * 8 * 128 * 10
    assert _module(c, "0", "backward", "macs") == 8 * 64 * 128
    assert _module(c, "2", "backward", "macs") == 2 * 8 * 128 * 10


def test_frozen_layer_backward_is_its_input_gradient_only():
    m, x = _mlp(), torch.randn(8, 64)
    for p in m[2].parameters():
        p.requires_grad_(False)
    c = harness.count(m, x, train=True, optimizer="none")
    assert _module(c, "2", "backward", "macs") == 8 * 128 * 10  # grad input, no grad weight
    assert _module(c, "0", "backward", "macs") == 8 * 64 * 128  # grad weight, no grad input
    assert c.trainable_params == 64 * 128 + 128


@pytest.mark.parametrize("kw", [{}, {"foreach": True}, {"fused": True}])
def test_adamw_single_foreach_and_fused_count_the_same_arithmetic(kw):
    m, x = _mlp(), torch.randn(8, 64)
    n = sum(p.numel() for p in m.parameters())  # 9,610
    c = harness.count(m, x, train=True, optimizer=torch.optim.AdamW(m.parameters(), lr=1e-3, **kw))
    # 14 per element (weight decay 1, lerp 3, scale + addcmul 4, sqrt/div/add-eps 3, addcdiv 3) + 4 step += 1
    assert _phase(c, "optimizer", "other_flops") == 14 * n + 4
    assert _phase(c, "optimizer", "macs") == 0
    assert c.coverage["share_of_calls"] == 1.0
    if kw.get("fused"):  # reads params, grads, 2 moments; writes params, 2 moments; + step tensors
        assert _phase(c, "optimizer", "bytes") == 7 * 4 * n + 3 * 4 * 4


@pytest.mark.parametrize("kw", [{}, {"foreach": True}, {"fused": True}])
def test_sgd_momentum_counts(kw):
    m, x = _mlp(), torch.randn(8, 64)
    n = sum(p.numel() for p in m.parameters())
    c = harness.count(m, x, train=True, optimizer=torch.optim.SGD(m.parameters(), lr=1e-2, momentum=0.9, **kw))
    assert _phase(c, "optimizer", "other_flops") == 4 * n  # buf*m + g (2n), param - lr*buf (2n)


def test_count_train_leaves_model_and_optimizer_as_found():
    m, x = _mlp(), torch.randn(8, 64)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-1)
    m(x).sum().backward()
    opt.step()
    before = [p.detach().clone() for p in m.parameters()]
    state = opt.state_dict()["state"][0]["exp_avg"].clone()
    m.eval()
    harness.count(m, x, train=True, optimizer=opt)
    assert all(torch.equal(a, p) for a, p in zip(before, m.parameters()))
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], state)
    assert not m.training


class Checkpointed(nn.Module):
    def __init__(self, reentrant: bool):
        super().__init__()
        self.reentrant = reentrant
        self.inp = nn.Linear(32, 64)
        self.block = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64))
        self.out = nn.Linear(64, 8)

    def forward(self, x):
        h = self.inp(x)
        h = checkpoint(self.block, h, use_reentrant=self.reentrant)
        return self.out(h)


@pytest.mark.parametrize("reentrant", [True, False])
def test_checkpoint_recompute_is_told_apart(reentrant):
    torch.manual_seed(0)
    m, x = Checkpointed(reentrant), torch.randn(4, 32)
    counter = Counter(m)
    with counter:
        with counter.phase("forward"):
            loss = m(x).mean()
        with counter.phase("backward"):
            loss.backward()
    c = counter.result()
    work = split_work(c, counter.recomputed())
    block_fwd_macs = 4 * 64 * 256 + 4 * 256 * 64
    # reentrant: the block's whole forward re-runs; non-reentrant stops once every tensor the
    # backward needs is recomputed: the last Linear's output is not needed, so only the first runs
    rerun_macs = block_fwd_macs if reentrant else 4 * 64 * 256
    assert work["recomputed_flops"] == 2 * rerun_macs
    assert work["hardware_flops"] - work["model_flops"] == 2 * rerun_macs
    # the model FLOPs equal those of the same model without checkpointing
    plain = harness.count(_unchecked(m), x, train=True, optimizer="none")
    assert work["model_flops"] == plain.flops
    # the recomputed forward is charged to the block, in the backward phase
    assert _module(c, "block", "backward", "macs") == rerun_macs + 2 * block_fwd_macs


def _unchecked(m):
    plain = nn.Sequential(m.inp, m.block, m.out)
    return plain


def test_attention_backward_counts_recomputed_scores():
    torch.manual_seed(0)
    b, h, L, E = 1, 2, 16, 8
    q, k, v = (torch.randn(b, h, L, E, requires_grad=True) for _ in range(3))

    class Attn(nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

    counter = Counter(Attn())
    with counter:
        with counter.phase("forward"):
            out = Attn()(q, k, v)
            loss = out.sum()
        with counter.phase("backward"):
            loss.backward()
    c = counter.result()
    per_matmul = b * h * L * L * E
    assert _phase(c, "forward", "macs") == 2 * per_matmul
    assert _phase(c, "backward", "macs") == 5 * per_matmul  # recomputed QK^T + dP, dV, dQ, dK (as FlopCounterMode)
    work = split_work(c, counter.recomputed())
    assert work["recomputed_flops"] == 2 * per_matmul
    assert work["model_flops"] == 2 * (2 + 4) * per_matmul  # backward = 2 x forward once the recompute is out


def test_counting_a_step_leaves_buffers_and_rng_as_found():
    """The uncounted warm-up step (an optimizer without state) must not move BatchNorm's running
    statistics or the caller's random stream either."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 4))
    x = torch.randn(4, 8)
    buffers = {k: v.clone() for k, v in m.state_dict().items()}
    rng = torch.get_rng_state()
    harness.count(m, x, train=True)
    assert all(torch.equal(buffers[k], v) for k, v in m.state_dict().items())  # weights, running stats, count
    assert torch.equal(torch.get_rng_state(), rng)


def test_the_counter_does_not_import_the_pipeline():
    # harness.count sits below harness.pipeline: counting a training step (its step, default loss and
    # optimizer live in harness.core.training) loads no harness.pipeline module
    import os
    import subprocess
    import sys

    code = ("import sys, torch, harness.count as hc; "
            "c = hc.count(torch.nn.Linear(3, 2), torch.randn(4, 3), train=True); "
            "print(c.flops > 0, sorted(m for m in sys.modules if m.startswith('harness.pipeline')))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "[]"], r.stdout
