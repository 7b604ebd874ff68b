"""The public contract of count(): fields, column contracts, inputs, attribution, state, coverage."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from harness.count import Counts, count
from harness.count.api import BY_MODULE_COLUMNS, BY_OP_COLUMNS, EVENT_COLUMNS

F32 = 4


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.drop(F.relu(self.bn(self.conv(x))))
        return self.fc(y.mean((2, 3)))


def test_params_are_pytorch_truth():
    # 4 * (300*128 + 128*128 + 128 + 128)
    assert count(nn.LSTM(300, 128), torch.randn(5, 1, 300)).params == 220_160

    class TextLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(10000, 300)
            self.lstm = nn.LSTM(300, 128, batch_first=True)
            self.fc = nn.Linear(128, 10)

        def forward(self, tok):
            out, _ = self.lstm(self.embedding(tok))
            return self.fc(out[:, -1])

    c = count(TextLSTM(), torch.randint(0, 10000, (1, 8)))
    # 3,000,000 + 220,160 + 1,290
    assert c.params == 3_221_450 == c.trainable_params
    assert c.by_module.set_index("path").loc["lstm", "params"] == 220_160


def test_tied_weights_counted_once_and_buffers():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 8)
            self.head = nn.Linear(8, 50, bias=False)
            self.head.weight = self.emb.weight
            self.bn = nn.BatchNorm1d(8)

        def forward(self, tok):
            return self.head(self.bn(self.emb(tok)))

    m = Tied()
    m.emb.weight.requires_grad_(True)
    m.bn.weight.requires_grad_(False)
    c = count(m.eval(), torch.randint(0, 50, (3,)))
    # embedding 400 (tied with head) + bn 8 + 8
    assert c.params == 416
    assert c.trainable_params == 408
    # running_mean 8 + running_var 8 + num_batches_tracked 1
    assert c.buffers == 17


def test_column_contracts_and_totals():
    m = Small().eval()
    c = count(m, torch.randn(2, 3, 8, 8))
    assert isinstance(c, Counts)
    assert list(c.by_op.columns) == BY_OP_COLUMNS == [
        "op", "input_shapes", "dtype", "calls", "macs", "flops", "other_flops", "bytes", "module", "phase"]
    assert list(c.by_module.columns) == BY_MODULE_COLUMNS == [
        "path", "type", "depth", "output_shape", "params", "macs", "flops", "other_flops", "bytes", "calls", "phase"]
    assert list(c.events.columns) == EVENT_COLUMNS == [
        "seq", "op", "input_shapes", "dtype", "macs", "flops", "other_flops", "bytes", "module", "counted", "phase"]
    assert list(c.uncounted.columns) == ["op", "calls"]
    assert set(c.coverage) == {"ops_seen", "ops_counted", "calls", "calls_counted", "share_of_calls", "uncounted_ops"}
    assert c.flops == 2 * c.macs
    for df in (c.by_op, c.events):
        assert df.macs.sum() == c.macs and df.other_flops.sum() == c.other_flops and df.bytes.sum() == c.bytes
    root = c.by_module.iloc[0]
    assert (root.path, root.type, root.depth, root.calls) == ("", "Small", 0, 1)
    assert (root.macs, root.other_flops, root.bytes) == (c.macs, c.other_flops, c.bytes)
    assert root.output_shape == "[2, 2]"
    conv = c.by_module.set_index("path").loc["conv"]
    # 2 x 4 x 8 x 8 outputs x 27
    assert conv.macs == 512 * 27 and conv.depth == 1 and conv.type == "Conv2d"
    assert conv.output_shape == "[2, 4, 8, 8]"
    row = c.by_op[c.by_op.op == "aten::conv2d"].iloc[0]
    assert row.input_shapes == "[[2, 3, 8, 8], [4, 3, 3, 3], [4], [], [], [], []]"
    assert (row["dtype"], row["calls"], row["module"]) == ("float32", 1, "conv")
    assert c.events.seq.tolist() == list(range(len(c.events)))
    assert c.events.counted.all()
    d = c.to_dict()
    assert d["macs"] == c.macs and d["by_op"][0]["op"] == c.by_op.op.iloc[0]


def test_inputs_tuple_dict_and_module_called_twice():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(5, 3)

        def forward(self, x, y=None):
            return self.a(x) + self.b(y) + self.a(x)

    m = Two()
    x, y = torch.randn(2, 4), torch.randn(2, 5)
    c1 = count(m, (x, y))
    c2 = count(m, {"x": x, "y": y})
    # a twice: 2 x (2*3*4) ; b once: 2*3*5
    assert c1.macs == c2.macs == 2 * 24 + 30
    a = c1.by_module.set_index("path").loc["a"]
    assert a.calls == 2 and a.macs == 48
    assert c1.by_op[c1.by_op.module == "a"].calls.sum() == 2


def test_shared_weights_and_functional_calls():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 4))
            self.k = nn.Parameter(torch.randn(2, 3, 3, 3))

        def forward(self, x, img):
            h = F.linear(x, self.w)  # 5 x 6 x 4
            h = F.linear(h, self.w.t())  # shared weight, 5 x 4 x 6
            z = torch.einsum("bi,ij->bj", h, self.w.t())  # 5 x 6 x 4
            return z.sum() + F.conv2d(img, self.k).sum()  # 2 x 4 x 4 outputs x 27

    c = count(Functional(), (torch.randn(5, 4), torch.randn(1, 3, 6, 6)))
    assert c.params == 24 + 54
    assert c.macs == 120 + 120 + 120 + 32 * 27


def test_uncounted_op_is_reported_not_silent():
    class Spectral(nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x).abs() + 1

    c = count(Spectral(), torch.randn(4, 16))
    assert c.coverage["share_of_calls"] < 1
    assert "aten::_fft_r2c" in c.coverage["uncounted_ops"]
    assert c.uncounted.set_index("op").loc["aten::_fft_r2c", "calls"] == 1
    ev = c.events[c.events.op == "aten::_fft_r2c"].iloc[0]
    assert not ev.counted
    assert c.coverage["calls"] == c.coverage["calls_counted"] + 1


def _global_hooks():
    mm = torch.nn.modules.module
    return (len(mm._global_forward_pre_hooks), len(mm._global_forward_hooks),
            len(mm._global_forward_hooks_always_called))


def test_leaves_model_and_torch_as_found_eval_train_and_on_error():
    m = Small()
    before = _global_hooks()
    grad = torch.is_grad_enabled()
    m.train()
    bn_mean = m.bn.running_mean.clone()
    tracked = int(m.bn.num_batches_tracked)
    x = torch.randn(2, 3, 8, 8)
    rng = torch.get_rng_state()
    count(m, x)  # dropout in training draws random numbers
    assert m.training and all(mod.training for mod in m.modules())
    assert torch.equal(m.bn.running_mean, bn_mean) and int(m.bn.num_batches_tracked) == tracked
    assert torch.equal(torch.get_rng_state(), rng)
    assert _global_hooks() == before and torch.is_grad_enabled() == grad
    assert not torch.is_inference_mode_enabled()
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())
    m.eval()
    count(m, torch.randn(2, 3, 8, 8))
    assert not m.training

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            self.fc(x)
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        count(Boom(), torch.randn(1, 3))
    assert _global_hooks() == before
    assert _get_current_dispatch_mode_stack() == []
    assert torch.is_grad_enabled() == grad and not torch.is_inference_mode_enabled()
    # the parameters still work with autograd afterwards
    m.train()
    m(torch.randn(2, 3, 8, 8)).sum().backward()
    assert m.conv.weight.grad is not None


def test_inside_callers_inference_mode_and_no_grad():
    m = Small().eval()
    x = torch.randn(2, 3, 8, 8)
    ref = count(m, x)
    with torch.inference_mode():
        a = count(m, x)
    with torch.no_grad():
        b = count(m, x)
    assert (ref.macs, ref.other_flops, ref.bytes) == (a.macs, a.other_flops, a.bytes) == (b.macs, b.other_flops, b.bytes)


def test_by_op_matches_profiler_top_level_events():
    """The lead joins by_op with torch.profiler on (op, input_shapes, dtype): our events are the
    profiler's top-level aten events of an inference-mode run, with the same input_shapes strings."""
    from torch.profiler import ProfilerActivity, profile

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8 * 4 * 4, 10)
            self.emb = nn.Embedding(20, 8)
            self.ln = nn.LayerNorm(8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.lstm = nn.LSTM(8, 8, batch_first=True)

        def forward(self, x, tok):
            y = F.relu(self.bn(self.conv(x)))
            y = F.adaptive_avg_pool2d(F.max_pool2d(y, 2), 4).flatten(1)
            y = self.fc(y)
            e = self.ln(self.emb(tok))
            a, _ = self.attn(e, e, e, need_weights=False)
            h, _ = self.lstm(a)
            z = torch.cat([y, h[:, -1]], dim=1)
            w = torch.einsum("bi,bj->bij", z, z).sum()
            return torch.addmm(z[:, :4], z, torch.ones(18, 4), beta=2, alpha=0.5).softmax(-1) * w

    m = Net().eval()
    x, tok = torch.randn(2, 3, 8, 8), torch.randint(0, 20, (2, 5))
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        m(x, tok)
    top = []
    for e in prof.events():
        if not e.name.startswith("aten::"):
            continue
        parent = e.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            top.append((e.name, str(e.input_shapes)))
    c = count(m, (x, tok))
    ours = list(zip(c.events.op, c.events.input_shapes))
    assert set(ours) == set(top)
    assert ours == top  # same calls in the same order: the lead aligns them one to one
    # spot checks of the profiler's spelling: scalars and None as [], tensor lists as []
    assert ("aten::addmm", "[[2, 4], [2, 18], [18, 4], [], []]") in ours
    assert ("aten::conv2d", "[[2, 3, 8, 8], [8, 3, 3, 3], [], [], [], [], []]") in ours
    assert ("aten::cat", "[[], []]") in ours
    assert "aten::_native_multi_head_attention" in c.events.op.tolist()


def test_buffers_updated_in_eval_are_restored():
    class Cache(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("seen", torch.zeros(4))

        def forward(self, x):
            self.seen.add_(x.sum(0))
            return x * 2

    m = Cache().eval()
    count(m, torch.ones(3, 4))
    assert torch.equal(m.seen, torch.zeros(4))


def test_pending_autograd_graph_survives_a_count():
    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.register_buffer("mask", torch.rand(4))

        def forward(self, x):
            return self.fc(x) * self.mask  # mul saves the buffer for backward

    m = Masked()
    x = torch.randn(2, 4)
    loss = m(x).sum()
    count(m, x)
    loss.backward()  # no "modified by an inplace operation" error
    assert m.fc.weight.grad is not None


def test_harness_count_is_callable_however_it_is_reached():
    import harness
    import harness.count as pkg
    import harness.count.registry  # noqa: F401  (binds the package on `harness`)

    lin = nn.Linear(3, 2)
    x = torch.randn(1, 3)
    assert harness.count(lin, x).macs == 6
    assert pkg(lin, x).macs == 6 and pkg.count(lin, x).macs == 6
    assert harness.count.Counts is Counts


def test_model_created_in_inference_mode():
    with torch.inference_mode():
        m = Small().eval()
    c = count(m, torch.randn(2, 3, 8, 8))
    assert c.macs == count(Small().eval(), torch.randn(2, 3, 8, 8)).macs
