"""Counter: phases a workload names (prefill/decode, forward/backward), and containers never called."""
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from harness.count import Counter, count
from harness.count.counts import BY_PHASE_COLUMNS
from harness.errors import HarnessError


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(8, 16, bias=False)
        self.act = nn.ReLU()
        self.down = nn.Linear(16, 4, bias=False)

    def forward(self, x):
        return self.down(self.act(self.up(x)))


def test_two_phases_each_hand_computed_and_summing_to_totals():
    torch.manual_seed(0)
    m = MLP().eval()
    prompt, token = torch.randn(2, 5, 8), torch.randn(2, 1, 8)
    counter = Counter(m)
    with counter, torch.inference_mode():
        with counter.phase("prefill"):
            m(prompt)  # 10 tokens
        with counter.phase("decode"):
            m(token)  # 2 tokens
    c = counter.result()
    prefill = 10 * 8 * 16 + 10 * 16 * 4  # 1,920
    decode = 2 * 8 * 16 + 2 * 16 * 4  # 384
    assert list(c.by_phase.columns) == BY_PHASE_COLUMNS
    assert c.phases == ["prefill", "decode"]
    assert c.by_phase.macs.tolist() == [prefill, decode]
    assert c.by_phase.flops.tolist() == [2 * prefill, 2 * decode]
    assert c.by_phase.calls.tolist() == [3, 3]  # linear, relu, linear each
    assert c.macs == prefill + decode == c.by_phase.macs.sum()
    for col, total in [("other_flops", c.other_flops), ("bytes", c.bytes)]:
        assert c.by_phase[col].sum() == total == c.events[col].sum() == c.by_op[col].sum()
    # relu: one flop per element, 10 x 16 then 2 x 16
    assert c.by_phase.other_flops.tolist() == [160, 32]
    assert c.events.phase.tolist() == ["prefill"] * 3 + ["decode"] * 3
    assert c.by_op.groupby("phase", sort=False).macs.sum().to_dict() == {"prefill": prefill, "decode": decode}
    mods = c.by_module.set_index(["phase", "path"])
    assert mods.loc[("prefill", "up"), "macs"] == 10 * 8 * 16 and mods.loc[("decode", "up"), "macs"] == 2 * 8 * 16
    assert mods.loc[("prefill", ""), "macs"] == prefill and mods.loc[("decode", ""), "calls"] == 1
    assert mods.loc[("decode", "down"), "output_shape"] == "[2, 1, 4]"
    totals = c.module_totals().set_index("path")
    assert totals.loc["", "macs"] == c.macs and totals.loc["up", "calls"] == 2
    assert totals.loc["up", "output_shape"] == "[2, 5, 16]" and totals.loc["up", "params"] == 128
    ops = c.op_totals()
    assert ops.macs.sum() == c.macs and "phase" not in ops.columns
    assert "phases       prefill 1.92 KMAC" in c.table()
    assert [r["phase"] for r in c.to_dict()["by_phase"]] == ["prefill", "decode"]


def test_training_phases_keep_autograd_and_ops_outside_phases_use_the_default():
    torch.manual_seed(0)
    m = nn.Linear(8, 4, bias=False)
    x = torch.randn(3, 8)
    counter = Counter(m, default_phase="setup")
    with counter:
        torch.zeros(2) + 1  # outside any phase: 'setup'
        with counter.phase("forward"):
            assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
            loss = m(x).sum()
        with counter.phase("backward"):
            loss.backward()
    c = counter.result()
    assert c.phases == ["setup", "forward", "backward"]
    by = c.by_phase.set_index("phase")
    # forward: 3 x 4 x 8; backward: grad_weight = grad_out^T [4,3] @ x [3,8] (x needs no grad)
    assert by.loc["forward", "macs"] == 96 and by.loc["backward", "macs"] == 96 and by.loc["setup", "macs"] == 0
    assert m.weight.grad is not None and m.weight.grad.shape == (4, 8)
    # backward ops run outside any module call: they are credited to the root row of their phase
    root = c.by_module.set_index(["phase", "path"]).loc[("backward", "")]
    assert root.macs == 96 and root.calls == 0
    assert c.coverage["share_of_calls"] == 1.0, c.uncounted


def test_counter_leaves_model_and_torch_as_found():
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).train()
    mean = m[1].running_mean.clone()
    rng = torch.get_rng_state()
    counter = Counter(m)
    with pytest.raises(ValueError, match="boom"):
        with counter:
            m(torch.randn(8, 4))
            m.eval()
            raise ValueError("boom")
    assert m.training and torch.equal(m[1].running_mean, mean) and torch.equal(torch.get_rng_state(), rng)
    assert _get_current_dispatch_mode_stack() == []
    mm = torch.nn.modules.module
    assert not mm._global_forward_pre_hooks and not mm._global_forward_hooks
    c = counter.result()
    assert c.phases == ["forward"] and c.training and c.macs == 8 * 4 * 4


def test_counter_misuse_is_a_one_line_error():
    m = nn.Linear(2, 2)
    with pytest.raises(HarnessError, match="nn.Module"):
        Counter(lambda x: x)
    with pytest.raises(HarnessError, match="default_phase"):
        Counter(m, default_phase="")
    counter = Counter(m)
    with counter:
        with pytest.raises(HarnessError, match="after the `with counter:` block"):
            counter.result()
        with pytest.raises(HarnessError, match="cannot nest"):
            with counter:
                pass
        with pytest.raises(HarnessError, match="phase"):
            with counter.phase(""):
                pass
    assert counter.result().by_phase.macs.tolist() == [0]


def test_a_container_never_called_includes_its_children():
    """nn.ModuleList is never called itself: its row sums its layers (as params do); calls stay 0."""

    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    c = count(Stack(), torch.randn(5, 6))
    mods = c.by_module.set_index("path")
    # 5 x (6*6 + 6*6 + 6*3) MACs; 5 x (6 + 6 + 3) bias adds
    assert mods.loc["layers", "macs"] == 5 * (36 + 36 + 18) == c.macs
    assert mods.loc["layers", "other_flops"] == 5 * 15
    assert mods.loc["layers", "calls"] == 0 and mods.loc["layers.0", "calls"] == 1
    assert mods.loc["layers", "params"] == 2 * 42 + 21
    assert mods.loc["layers", "bytes"] == mods.loc[["layers.0", "layers.1", "layers.2"], "bytes"].sum()


def test_transformer_encoder_layers_row_is_not_zero():
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    c = count(enc, torch.randn(1, 10, 32))
    mods = c.by_module.set_index("path")
    assert mods.loc["layers", "macs"] == c.macs > 0 and mods.loc["layers", "calls"] == 0
