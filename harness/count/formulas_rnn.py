"""Recurrent formulas: LSTM, GRU and Elman RNN (tanh / relu) in every form PyTorch
dispatches: the composite ops (``aten::lstm``/``gru``/``rnn_tanh``/``rnn_relu``,
dense ``.input`` and packed ``.data``), the cells (``lstm_cell`` ...), the oneDNN
kernel (``mkldnn_rnn_layer``, one layer and direction), the fused pointwise cells
(``_thnn_fused_lstm_cell``/``_thnn_fused_gru_cell``) and cuDNN / MIOpen
(``_cudnn_rnn``/``miopen_rnn``).  Multi-layer, bidirectional, batch_first, packed
sequences and LSTM projections (``proj_size``) are handled.

With T tokens processed by a layer and direction (sequence length x batch for
dense input; the sum of ``batch_sizes`` = rows of ``data`` for packed input), G
gates (LSTM 4, GRU 3, RNN 1), hidden size H, layer input size I, recurrent size
R (H, or the projection size P for an LSTM with projections):

* macs  = T * G*H * (I + R)  [+ T * P*H for the LSTM projection];
* other = T * H * c, with c per hidden unit and token:
  LSTM 13 = 4 (sum of the input and hidden gate pre-activations) + 5 (3 sigmoid,
  2 tanh) + 3 (c = f*c + i*g) + 1 (h = o*tanh(c));
  GRU 10 = r: 2 (add, sigmoid), z: 2, n: 3 (r*hn, add, tanh), h: 3 ((1-z)*n + z*h);
  RNN 2 = 1 (add) + 1 (tanh or relu);
  plus 2*G per unit with biases (b_ih and b_hh adds);
* inter-layer dropout in training (p > 0): one flop per element of each layer
  output but the last;
* bytes: the default rule of the op (input, states, weights read; outputs written).
"""
from __future__ import annotations

from .registry import Tensor, Work, register

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
CELL = {"lstm": 13, "gru": 10, "rnn_tanh": 2, "rnn_relu": 2}
#: oneDNN / cuDNN / MIOpen mode numbers
MODES = {0: "rnn_relu", 1: "rnn_tanh", 2: "lstm", 3: "gru"}


def _tokens(x, packed: bool) -> int:
    if packed or x.dim() == 2:
        return x.shape[0]
    return x.shape[0] * x.shape[1]


def layer_work(kind: str, tokens: int, w_ih, w_hh, has_biases: bool, w_hr=None) -> Work:
    """One layer, one direction: macs = T*G*H*(I+R) [+ T*P*H]; other = T*H*(c + 2G with biases)."""
    g = GATES[kind]
    gh, in_size = w_ih.shape[0], w_ih.shape[1]
    h = gh // g
    macs = tokens * gh * (in_size + w_hh.shape[1])
    if w_hr is not None:
        macs += tokens * w_hr.shape[0] * w_hr.shape[1]
    other = tokens * h * (CELL[kind] + (2 * g if has_biases else 0))
    return Work(macs, other)


def stack_work(kind: str, tokens: int, params, has_biases: bool, num_layers: int, dropout: float, train: bool,
               bidirectional: bool, per_group: int | None = None) -> Work:
    """A multi-layer (bi)directional stack from its flat parameter list."""
    dirs = 2 if bidirectional else 1
    params = [p for p in params if isinstance(p, Tensor)]
    groups = num_layers * dirs
    per = per_group or (len(params) // groups if groups else 0)
    has_proj = kind == "lstm" and per in (3, 5)
    macs = other = 0
    for layer in range(num_layers):
        out_width = 0
        for d in range(dirs):
            grp = params[(layer * dirs + d) * per:(layer * dirs + d + 1) * per]
            w = layer_work(kind, tokens, grp[0], grp[1], has_biases, grp[-1] if has_proj else None)
            macs += w.macs
            other += w.other
            out_width += grp[-1].shape[0] if has_proj else grp[1].shape[1]
        if train and dropout and dropout > 0 and layer < num_layers - 1:
            other += tokens * out_width
    return Work(macs, other)


def _rnn_input(kind):
    def formula(res, x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first=False,
                *args, **kw):
        return stack_work(kind, _tokens(x, False), params, bool(has_biases), int(num_layers), float(dropout),
                          bool(train), bool(bidirectional))

    return formula


def _rnn_data(kind):
    def formula(res, data, batch_sizes, hx, params, has_biases, num_layers, dropout, train, bidirectional,
                *args, **kw):
        return stack_work(kind, _tokens(data, True), params, bool(has_biases), int(num_layers), float(dropout),
                          bool(train), bool(bidirectional))

    return formula


_LSTM_IN, _LSTM_DATA = _rnn_input("lstm"), _rnn_data("lstm")
_GRU_IN, _GRU_DATA = _rnn_input("gru"), _rnn_data("gru")
_TANH_IN, _TANH_DATA = _rnn_input("rnn_tanh"), _rnn_data("rnn_tanh")
_RELU_IN, _RELU_DATA = _rnn_input("rnn_relu"), _rnn_data("rnn_relu")


def _dispatch_overload(f_input, f_data, doc):
    def formula(res, x, second, *args, **kw):
        # .data(data, batch_sizes: Tensor, hx, params, ...) vs .input(input, hx, params, ...)
        if len(args) >= 2 and isinstance(args[1], (list, tuple)) and isinstance(second, Tensor) and \
                not second.is_floating_point() and second.dim() == 1 and isinstance(args[0], (list, tuple, Tensor)):
            return f_data(res, x, second, *args, **kw)
        return f_input(res, x, second, *args, **kw)

    formula.__doc__ = doc
    return formula


register("lstm")(_dispatch_overload(_LSTM_IN, _LSTM_DATA, "aten::lstm (.input / .data): stack formula, G=4."))
register("gru")(_dispatch_overload(_GRU_IN, _GRU_DATA, "aten::gru (.input / .data): stack formula, G=3."))
register("rnn_tanh")(_dispatch_overload(_TANH_IN, _TANH_DATA, "aten::rnn_tanh: stack formula, G=1."))
register("rnn_relu")(_dispatch_overload(_RELU_IN, _RELU_DATA, "aten::rnn_relu: stack formula, G=1."))


def _cell(kind):
    def formula(res, x, hx, w_ih, w_hh, b_ih=None, b_hh=None, *args, **kw):
        tokens = x.shape[0] if x.dim() == 2 else 1
        g = GATES[kind]
        h = w_ih.shape[0] // g
        macs = tokens * w_ih.shape[0] * (w_ih.shape[1] + w_hh.shape[1])
        biases = (b_ih is not None) + (b_hh is not None)
        return Work(macs, tokens * h * (CELL[kind] + g * biases))

    formula.__doc__ = f"{kind}_cell(x, h, W_ih, W_hh, b_ih, b_hh): one step, macs = B*G*H*(I+H); other = B*H*c."
    return formula


register("lstm_cell")(_cell("lstm"))
register("gru_cell")(_cell("gru"))
register("rnn_tanh_cell")(_cell("rnn_tanh"))
register("rnn_relu_cell")(_cell("rnn_relu"))


@register("_thnn_fused_lstm_cell")
def fused_lstm_cell(res, input_gates, hidden_gates, cx, input_bias=None, hidden_bias=None, *args, **kw):
    """Pointwise LSTM cell on precomputed gates [B, 4H]: other = B*H*(13 + 4 per bias)."""
    b, gh = input_gates.shape[0], input_gates.shape[-1]
    h = gh // 4
    biases = (input_bias is not None) + (hidden_bias is not None)
    return Work(0, b * h * (13 + 4 * biases))


@register("_thnn_fused_gru_cell")
def fused_gru_cell(res, input_gates, hidden_gates, hx, input_bias=None, hidden_bias=None, *args, **kw):
    """Pointwise GRU cell on precomputed gates [B, 3H]: other = B*H*(10 + 3 per bias)."""
    b, gh = input_gates.shape[0], input_gates.shape[-1]
    h = gh // 3
    biases = (input_bias is not None) + (hidden_bias is not None)
    return Work(0, b * h * (10 + 3 * biases))


@register("mkldnn_rnn_layer")
def mkldnn_rnn_layer(res, x, w_ih, w_hh, b_ih, b_hh, hx, cx, reverse, batch_sizes, mode, hidden_size, num_layers,
                     has_biases, bidirectional, batch_first, train, *args, **kw):
    """oneDNN kernel for one layer and direction over the whole sequence: layer formula with T = seq x batch."""
    kind = MODES.get(int(mode), "lstm")
    tokens = sum(int(b) for b in batch_sizes) if batch_sizes else _tokens(x, False)
    return layer_work(kind, tokens, w_ih, w_hh, bool(has_biases))


@register("_cudnn_rnn")
def cudnn_rnn(res, x, weight, weight_stride0, weight_buf, hx, cx, mode, hidden_size, proj_size, num_layers,
              batch_first, dropout, train, bidirectional, batch_sizes, *args, **kw):
    """cuDNN RNN (flat weights, weight_stride0 tensors per layer and direction): stack formula."""
    kind = MODES.get(int(mode), "lstm")
    tokens = x.shape[0] if batch_sizes else _tokens(x, False)
    per = int(weight_stride0)
    has_biases = per in (4, 5)
    return stack_work(kind, tokens, weight, has_biases, int(num_layers), float(dropout), bool(train),
                      bool(bidirectional), per_group=per)


@register("miopen_rnn")
def miopen_rnn(res, x, weight, weight_stride0, hx, cx, mode, hidden_size, num_layers, batch_first, dropout, train,
               bidirectional, batch_sizes, *args, **kw):
    """MIOpen RNN (flat weights): stack formula."""
    kind = MODES.get(int(mode), "lstm")
    tokens = x.shape[0] if batch_sizes else _tokens(x, False)
    per = int(weight_stride0)
    return stack_work(kind, tokens, weight, per == 4, int(num_layers), float(dropout), bool(train),
                      bool(bidirectional), per_group=per)
