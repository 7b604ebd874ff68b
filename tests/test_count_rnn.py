"""Recurrent layers in every form PyTorch dispatches, against hand arithmetic and the unfused truth.

On CPU the default LSTM runs oneDNN's kernel, which FlopCounterMode does not see
(it reports ~1/10,000 of an LSTM); with oneDNN off the LSTM decomposes into
mm/addmm per step, which FlopCounterMode counts exactly: that is the truth here.
"""
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.flop_counter import FlopCounterMode

from harness.count import count

from conftest import Fn


def unfused_truth_macs(model, *inputs) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.backends.mkldnn.flags(enabled=False), torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(*inputs)
    return fc.get_total_flops() // 2


def totals(c):
    return c.macs, c.other_flops, c.bytes


def test_text_lstm_by_hand_and_blind_spot():
    lstm = nn.LSTM(300, 128, batch_first=True)
    x = torch.randn(1, 64, 300)
    c = count(lstm, x)
    # 64 tokens x 4 gates x 128 units x (300 inputs + 128 recurrent)
    assert c.macs == 64 * 4 * 128 * (300 + 128) == 14_024_704
    # per token and unit: 13 gate/cell flops + 8 bias adds (b_ih and b_hh for 4 gates)
    assert c.other_flops == 64 * 128 * (13 + 8)
    assert c.events.op.tolist() == ["aten::zeros", "aten::zeros", "aten::lstm"]
    assert c.macs == unfused_truth_macs(lstm, x)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        lstm(x)  # default execution: the oneDNN kernel
    assert fc.get_total_flops() * 1000 < c.flops


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("batch_first, bidirectional, layers", [(False, False, 1), (True, True, 2), (False, True, 3)])
def test_stacks_match_unfused_truth_and_meta(cls, batch_first, bidirectional, layers):
    m = cls(6, 5, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional).eval()
    x = torch.randn(4, 7, 6)
    c = count(m, x)
    assert c.coverage["share_of_calls"] == 1.0
    assert c.macs == unfused_truth_macs(m, x)
    assert totals(c) == totals(count(m, x, device="meta"))


def test_gru_and_rnn_by_hand():
    x = torch.randn(7, 2, 6)  # 14 tokens
    c = count(nn.GRU(6, 5), x)
    # 3 gates x 5 units x (6 + 5); other: 10 cell flops + 6 bias adds per unit
    assert c.macs == 14 * 15 * 11 and c.other_flops == 14 * 5 * 16
    c = count(nn.RNN(6, 5, nonlinearity="relu", bias=False), x)
    # 1 gate; other: add + relu per unit, no biases
    assert c.macs == 14 * 5 * 11 and c.other_flops == 14 * 5 * 2


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lstm_projection():
    m = nn.LSTM(6, 5, proj_size=3, num_layers=2)  # oneDNN has no projections: PyTorch warns and decomposes
    x = torch.randn(7, 2, 6)
    c = count(m, x)
    # layer 1: 4*5 x (6 + 3 recurrent) + projection 3 x 5; layer 2 input is 3 wide
    per_token = (20 * 9 + 15) + (20 * 6 + 15)
    assert c.macs == 14 * per_token
    assert c.macs == unfused_truth_macs(m, x)
    assert totals(c) == totals(count(m, x, device="meta"))


def test_packed_sequences():
    m = nn.LSTM(6, 5, bidirectional=True)
    lengths = [7, 5, 3, 2]
    packed = pack_padded_sequence(torch.randn(7, 4, 6), lengths)
    c = count(m, packed)
    # only real tokens: 17, both directions
    assert c.macs == 2 * 17 * 20 * 11
    assert "aten::lstm" in c.events.op.tolist()
    assert c.macs == unfused_truth_macs(m, packed)
    assert totals(c) == totals(count(m, packed, device="meta"))


def test_training_dropout_between_layers():
    m = nn.GRU(6, 5, num_layers=3, dropout=0.5).train()
    x = torch.randn(7, 2, 6)
    eval_count = count(m.eval(), x)
    train_count = count(m.train(), x)
    # dropout on the outputs of layers 1 and 2: 14 tokens x 5 each
    assert train_count.other_flops - eval_count.other_flops == 2 * 14 * 5
    assert train_count.macs == eval_count.macs


def test_cells():
    x, h = torch.randn(3, 6), torch.randn(3, 5)
    c = count(nn.LSTMCell(6, 5), (x, (h, h)))
    assert c.macs == 3 * 20 * 11 and c.other_flops == 3 * 5 * 21
    c = count(nn.GRUCell(6, 5), (x, h))
    assert c.macs == 3 * 15 * 11 and c.other_flops == 3 * 5 * 16
    c = count(nn.RNNCell(6, 5), (x, h))
    assert c.macs == 3 * 5 * 11


def test_low_level_kernels_called_directly():
    lstm = nn.LSTM(8, 4)
    x, h0 = torch.randn(2, 3, 8), torch.zeros(3, 4)
    ws = [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0]
    c = count(Fn(lambda t: torch.ops.aten.mkldnn_rnn_layer(
        t, *ws, h0, h0, False, [], 2, 4, 1, True, False, False, False)[0]), x)
    assert c.events.op.tolist() == ["aten::mkldnn_rnn_layer"]
    ref = count(lstm, x)
    assert (c.macs, c.other_flops) == (ref.macs, ref.other_flops) == (6 * 16 * 12, 6 * 4 * 21)
    # the fused pointwise LSTM cell (CUDA kernel; meta here): 13 + 8 bias flops per unit
    g = [torch.empty(3, 16, device="meta") for _ in range(2)]
    cell = count(Fn(lambda a, b, cx: torch.ops.aten._thnn_fused_lstm_cell(a, b, cx, torch.empty(16, device="meta"),
                                                                            torch.empty(16, device="meta"))[0]),
                 (g[0], g[1], torch.empty(3, 4, device="meta")))
    assert cell.macs == 0 and cell.other_flops == 3 * 4 * 21


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_formula_equals_the_decomposed_path_op_by_op(cls):
    """Without inference mode and oneDNN, PyTorch runs an RNN as mm/addmm, adds and activations
    per step: counting those ops one by one gives the same MACs and other flops as the formula."""
    from harness.count.mode import CountingMode

    m = cls(6, 5, num_layers=2, bidirectional=True).eval()
    x = torch.randn(7, 3, 6)
    formula = count(m, x)
    mode = CountingMode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.backends.mkldnn.flags(enabled=False), torch.no_grad(), mode:
            m(x)
    assert "aten::lstm" not in mode.ev_op and "aten::addmm" in mode.ev_op
    assert all(mode.ev_counted), sorted(set(o for o, c in zip(mode.ev_op, mode.ev_counted) if not c))
    assert (sum(mode.ev_macs), sum(mode.ev_other)) == (formula.macs, formula.other_flops)
