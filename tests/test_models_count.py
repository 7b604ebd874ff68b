"""Models by name, counted: every figure cross-checked against torch's own counters.

Each model is loaded through ``harness.models.load`` (random weights, small inputs) and
counted on the CPU and on the meta device. The truth: params = the sum of ``numel()``
over ``model.parameters()`` (tied weights once); MACs = FlopCounterMode's matmul-class
FLOPs / 2 with PyTorch's fused paths off (no MHA fast path, math SDPA), where it sees
every matmul the counter has a formula for; coverage 1.0 (no op without a formula).
"""
import warnings

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import harness
from harness.core.calls import split_inputs
from harness.errors import HarnessError
from harness.models import ModelOptions, load

pytest.importorskip("timm")
pytest.importorskip("transformers")

# dense timm models, image side small enough to keep each under a few seconds
TIMM = [("convnext_atto", 32), ("mobilenetv3_small_050", 32), ("efficientnet_b0", 32), ("vit_tiny_patch16_224", 32),
        ("regnetx_002", 32), ("mixer_s16_224", 32), ("ghostnet_050", 32), ("levit_128s", 64), ("poolformer_s12", 32),
        ("resnet18", 32)]

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=128)
HF = {
    "llama": TINY,
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=64),
    "bert": TINY,
    "t5": dict(d_model=64, d_ff=128, num_layers=2, num_heads=4, d_kv=16, vocab_size=128),
    "vit": dict({k: v for k, v in TINY.items() if k != "vocab_size"}, image_size=32, patch_size=8),
    "whisper": dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                    encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=128, max_source_positions=16,
                    max_target_positions=32, num_mel_bins=16, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                    decoder_start_token_id=1),
}
HF_KIND = {"llama": "causal-lm", "gpt2": "causal-lm", "bert": "text", "t5": "seq2seq", "vit": "vision",
           "whisper": "speech-seq2seq"}


def torch_macs(model, inputs) -> int:
    """FlopCounterMode's total / 2 with the fused paths off."""
    call = split_inputs(inputs)
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), sdpa_kernel(SDPBackend.MATH), torch.no_grad(), FlopCounterMode(display=False) as fc:
            warnings.simplefilter("ignore")
            call(model)
    finally:
        torch.backends.mha.set_fastpath_enabled(was)
    return fc.get_total_flops() // 2


def check_counts(scen, batch_size: int = 1):
    model = scen.build_model().eval()
    inputs = scen.make_inputs(batch_size, "cpu")
    c = harness.count(model, inputs)
    assert c.params == sum(p.numel() for p in model.parameters())
    assert c.macs == torch_macs(model, inputs)
    assert c.macs > 0 and c.flops == 2 * c.macs
    assert c.coverage["share_of_calls"] == 1.0 and c.uncounted.empty, c.coverage["uncounted_ops"]
    with torch.device("meta"):
        meta_model = scen.build_model().eval()
    m = harness.count(meta_model, inputs, device="meta")
    assert (m.macs, m.params, m.device) == (c.macs, c.params, "meta")
    return c


@pytest.mark.parametrize("name, size", TIMM, ids=[n for n, _ in TIMM])
def test_timm_models_count_exactly(name, size):
    scen = load(f"timm:{name}", ModelOptions(input_size=size))
    assert scen.name == f"timm-{name}" and scen.kind == "image-classification"
    assert tuple(scen.make_inputs(2, "cpu").shape) == (2, 3, size, size)
    check_counts(scen)


@pytest.mark.parametrize("model_type", list(HF))
def test_transformers_configs_count_exactly(model_type):
    scen = load(f"hf:{model_type}", ModelOptions(model_kwargs=HF[model_type], seq_len=16))
    assert scen.kind == HF_KIND[model_type]
    check_counts(scen, batch_size=2)


def test_llama_macs_by_hand():
    # per layer: q,k,v,o projections 4*T*d*d (4 kv heads = 4 heads), QK^T and PV 2*T*T*d,
    # gated MLP 3*T*d*ff; lm head T*d*vocab; batch 2, T 16, d 64, ff 128, vocab 128
    b, t, d, ff, vocab = 2, 16, 64, 128, 128
    layer = 4 * t * d * d + 2 * t * t * d + 3 * t * d * ff
    scen = load("hf:llama", ModelOptions(model_kwargs=TINY, seq_len=t))
    c = harness.count(scen.build_model().eval(), scen.make_inputs(b, "cpu"))
    assert c.macs == b * (2 * layer + t * d * vocab) == 3_014_656
    # embedding + 2 x (4 projections, 3 MLP matrices, 2 RMSNorm weights) + final norm + lm head
    assert c.params == vocab * d + 2 * (4 * d * d + 3 * d * ff + 2 * d) + d + d * vocab == 98_624


def test_torchvision_model_counts_exactly_and_takes_num_classes():
    scen = load("torchvision:lraspp_mobilenet_v3_large", ModelOptions(input_size=64))
    assert scen.kind == "segmentation"
    check_counts(scen)
    scen = load("torchvision:mobilenet_v3_small", ModelOptions(input_size=32, model_kwargs={"num_classes": 10}))
    model = scen.build_model().eval()
    with torch.no_grad():
        assert tuple(model(scen.make_inputs(3, "cpu")).shape) == (3, 10)


def test_a_model_that_fails_to_build_is_reported_not_a_crash():
    # whisper's padding id 50256 is outside a 128-token vocabulary: the constructor raises
    scen = load("hf:whisper", ModelOptions(model_kwargs={k: v for k, v in HF["whisper"].items() if k != "pad_token_id"}))
    with pytest.raises(HarnessError) as err:
        scen.build_model()
    assert err.value.exit_code == 2
    assert str(err.value).startswith("hf:whisper could not be built: AssertionError: Padding_idx")
    assert "\n" not in str(err.value)


def test_profile_end_to_end_on_a_named_model(tmp_path):
    scen = load("hf:gpt2", ModelOptions(model_kwargs=HF["gpt2"], seq_len=8))
    run = harness.profile(scen.build_model(), scen.make_inputs(2, "cpu"), name=scen.name, warmup=1, iters=3,
                          logdir=tmp_path)
    assert run.summary["scenario"] == "hf-gpt2"
    assert run.path.parent == tmp_path / "hf-gpt2"
    assert run.summary["macs"] == harness.count(scen.build_model().eval(), scen.make_inputs(2, "cpu")).macs > 0
    assert run.summary["latency_s"]["n"] == 3
