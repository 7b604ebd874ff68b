"""The memory forecast (harness.memory.forecast) against hand-derived arithmetic.

A stack of Linear blocks trained with AdamW: every category at the start of the step, at the end of
the forward and at the peak is written out from the layer sizes; checkpointing drops the saved
activations by the formula; bfloat16 halves what is stored in the model's dtype; a generation's
KV cache is 2 x layers x kv_heads x head_dim x context x batch x dtype size.
"""
import textwrap

import pytest
import torch

from harness.memory import categories as C
from harness.memory.forecast import forecast_spec
from harness.pipeline.spec import RunSpec

F_, H_, L_ = 64, 96, 3  # features, hidden width, blocks

STACK = textwrap.dedent('''
    import torch
    from torch import nn
    from torch.utils.checkpoint import checkpoint

    F, H, L = {F}, {H}, {L}
    CHECKPOINT = {ckpt}

    class Stack(nn.Module):
        """L blocks of Linear(F, H), ReLU, Linear(H, F), ReLU."""
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(F, H), nn.ReLU(), nn.Linear(H, F), nn.ReLU())
                                        for _ in range(L))

        def forward(self, x):
            for b in self.blocks:
                x = checkpoint(b, x, use_reentrant=False, preserve_rng_state=False) if CHECKPOINT else b(x)
            return x

    def build_model():
        return Stack()

    def make_inputs(batch_size, device):
        return torch.randn(batch_size, F, device=device)
''')


def _scenario(tmp_path, ckpt=False):
    path = tmp_path / f"stack{'_ckpt' if ckpt else ''}.py"
    path.write_text(STACK.format(F=F_, H=H_, L=L_, ckpt=ckpt))
    return str(path)


def _at(forecast, t):
    """Bytes by category after event t (categories never holding bytes are 0)."""
    tl = forecast.timeline
    row = tl[tl.t_index == t].set_index("category")["bytes"]
    return {c: int(row.get(c, 0)) for c in C.CATEGORIES}


def _end_of(forecast, phase):
    tl = forecast.timeline
    return _at(forecast, int(tl[tl.phase == phase].t_index.max()))


def _train(tmp_path, batch, ckpt=False, dtype="float32", optimizer="adamw"):
    spec = RunSpec(target=_scenario(tmp_path, ckpt), workload="train", workload_options={"optimizer": optimizer},
                   batch_size=batch, dtype=dtype, device="cpu", logdir=None)
    return forecast_spec(spec)


def test_linear_stack_train_step_adamw_matches_the_formula(tmp_path):
    b = 8
    f = _train(tmp_path, b)
    params = L_ * (F_ * H_ + H_ + H_ * F_ + F_) * 4  # weights and biases of 2 Linears per block, float32
    tensors = 4 * L_  # parameter tensors: one AdamW step counter each, a float32 scalar (4 bytes)
    adamw = 2 * params + 4 * tensors  # exp_avg and exp_avg_sq like each parameter, plus the steps
    x = b * F_ * 4
    start = _at(f, int(f.timeline[f.timeline.phase == "setup"].t_index.max()))
    # before the step: weights, the last step's gradients, AdamW's state, the input
    assert start == {**dict.fromkeys(C.CATEGORIES, 0), C.PARAMETERS: params, C.GRADIENTS: params,
                     C.OPTIMIZER_STATE: adamw, C.INPUTS: x}
    assert f.start_bytes == 2 * params + adamw + x
    # end of the forward (zero_grad freed the gradients): each block saved its ReLUs' outputs,
    # (b, H) and (b, F), the second Linear's input being the first ReLU's output; the first Linear's input
    # is the block's input: the previous block's output, or x (an input); the loss is the output (4 bytes)
    acts = L_ * (b * H_ * 4 + b * F_ * 4)
    assert _end_of(f, "forward") == {**dict.fromkeys(C.CATEGORIES, 0), C.PARAMETERS: params,
                                     C.OPTIMIZER_STATE: adamw, C.INPUTS: x, C.ACTIVATIONS: acts, C.OUTPUTS: 4}
    # end of the backward: gradients like the weights, no activation left
    end_bw = _end_of(f, "backward")
    assert end_bw[C.GRADIENTS] == params and end_bw[C.ACTIVATIONS] == 0 and end_bw[C.TEMPORARIES] == 0
    # the peak: AdamW (single-tensor on the CPU: denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps),
    # one parameter after the other) holds sqrt and its quotient of a largest parameter (H x F floats) at once,
    # while the loop's `denom` still holds the previous parameter's: the H-float bias before the second
    # Linear's (F, H) weight; on top of the weights, gradients, state, input and loss
    temporaries = (2 * H_ * F_ + H_) * 4
    assert f.at_phase == "optimizer"
    assert f.peak_bytes == 2 * params + adamw + x + 4 + temporaries
    assert f.by_category_at_peak[C.TEMPORARIES] == temporaries
    assert set(f.timeline.columns) == {"t_index", "phase", "category", "bytes"}
    assert f.to_dict()["by_category_at_peak"] == f.by_category_at_peak


def test_checkpointing_drops_the_saved_activations_by_the_formula(tmp_path):
    b = 8
    plain, ckpt = _train(tmp_path, b), _train(tmp_path, b, ckpt=True)
    # a checkpointed block keeps only its input for the recomputation: blocks 2..L's inputs, (b, F) each
    assert _end_of(ckpt, "forward")[C.ACTIVATIONS] == (L_ - 1) * b * F_ * 4
    drop = _end_of(plain, "forward")[C.ACTIVATIONS] - _end_of(ckpt, "forward")[C.ACTIVATIONS]
    assert drop == L_ * b * H_ * 4 + b * F_ * 4  # L x (b, H) + L x (b, F) - (L - 1) x (b, F)


def test_bfloat16_halves_weights_gradients_and_activations(tmp_path):
    b = 8
    f32, b16 = _train(tmp_path, b), _train(tmp_path, b, dtype="bfloat16")
    s32, s16 = _end_of(f32, "forward"), _end_of(b16, "forward")
    for cat in (C.PARAMETERS, C.ACTIVATIONS, C.INPUTS):
        assert s16[cat] * 2 == s32[cat], cat
    steps = 4 * 4 * L_  # AdamW's step counters stay float32 scalars
    assert (s16[C.OPTIMIZER_STATE] - steps) * 2 == s32[C.OPTIMIZER_STATE] - steps
    assert b16.dtype == "bfloat16" and b16.by_category_at_peak[C.PARAMETERS] * 2 == f32.by_category_at_peak[C.PARAMETERS]


def test_optimizers_state_sgd_and_none(tmp_path):
    params = L_ * (F_ * H_ + H_ + H_ * F_ + F_) * 4
    sgd, none = _train(tmp_path, 4, optimizer="sgd"), _train(tmp_path, 4, optimizer="none")
    assert _end_of(sgd, "forward")[C.OPTIMIZER_STATE] == params  # one momentum buffer like each parameter
    assert _end_of(none, "forward")[C.OPTIMIZER_STATE] == 0
    assert "optimizer" not in set(none.timeline.phase)
    assert sgd.options["optimizer"] == "sgd"


def test_activations_scale_with_batch(tmp_path):
    a4, a8 = (_end_of(_train(tmp_path, b), "forward")[C.ACTIVATIONS] for b in (4, 8))
    assert a8 - a4 == L_ * 4 * (H_ + F_) * 4


def test_generate_kv_cache_is_the_formula():
    # tiny_llama: 4 layers, 2 KV heads of head_dim 16 (d 128 / 8 heads), float32
    layers, kv_heads, head_dim = 4, 2, 128 // 8
    for batch, prompt, new in ((2, 24, 5), (3, 16, 3)):
        spec = RunSpec(target="tiny_llama", workload="generate", batch_size=batch, logdir=None,
                       workload_options={"prompt_len": prompt, "new_tokens": new})
        f = forecast_spec(spec)
        context = prompt + new
        assert f.kv_cache_bytes == 2 * layers * kv_heads * head_dim * context * batch * 4
        assert f.options["prompt_len"] == prompt and f.options["new_tokens"] == new
        assert f.by_category_at_peak[C.KV_CACHE] > 0 and f.by_category_at_peak[C.ACTIVATIONS] == 0


def test_generate_kv_cache_of_a_transformers_llama_in_bfloat16():
    pytest.importorskip("transformers")
    spec = RunSpec(target="hf_tiny_llama", workload="generate", batch_size=2, dtype="bfloat16", logdir=None,
                   workload_options={"prompt_len": 20, "new_tokens": 4})
    f = forecast_spec(spec)
    assert f.kv_cache_bytes == 2 * 4 * 2 * 16 * (20 + 4) * 2 * 2


def test_attention_on_meta_saves_what_the_fused_kernel_saves():
    """A causal self-attention trained: on meta the saved tensors are the fused kernel's (output and
    log-sum-exp), not the math path's (b, heads, T, T) softmax; and the counter's meta SDPA is left alone."""
    from torch.nn import functional as F

    from harness.memory.attention import fused_attention

    q = torch.randn(2, 4, 32, 8, device="meta", requires_grad=True)
    with fused_attention():
        out = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    assert type(out.grad_fn).__name__ == "ScaledDotProductFlashAttentionForCpuBackward0"
    saved = [t for t in (out.grad_fn._saved_output, out.grad_fn._saved_logsumexp)]
    assert [tuple(t.shape) for t in saved] == [(2, 4, 32, 8), (2, 4, 32)]
    after = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    assert type(after.grad_fn).__name__ != "ScaledDotProductFlashAttentionForCpuBackward0"


def test_cuda_target_rounds_to_512_bytes(tmp_path):
    spec = RunSpec(target=_scenario(tmp_path), workload="forward", batch_size=3, device="cpu", logdir=None)
    cpu = forecast_spec(spec)
    from harness.memory.forecast import forecast_prepared, meta_prepared
    from harness.pipeline import scenario as scenarios
    from harness.pipeline import workloads

    sc = scenarios.load(spec.target)
    cuda = forecast_prepared(meta_prepared(sc, spec), workloads.get("forward"), target="cuda")
    # parameters: weights (H x F floats) and biases (H or F floats), each rounded up to 512 bytes
    per_block = 2 * -(-H_ * F_ * 4 // 512) * 512 + -(-H_ * 4 // 512) * 512 + -(-F_ * 4 // 512) * 512
    assert cuda.by_category_at_peak[C.PARAMETERS] == L_ * per_block
    assert cpu.by_category_at_peak[C.PARAMETERS] == L_ * (2 * H_ * F_ + H_ + F_) * 4
