"""transformers' LlamaForCausalLM, tiny and with random weights (needs `pip install transformers`).

The same shape as tiny_llama (4 layers, d 128, 8 heads / 2 KV heads, MLP 384, vocab
512), built from a ``LlamaConfig``: nothing is downloaded. The harness drives it as a
causal LM, interface (a) of ``--workload generate``: ``model(input_ids=...,
past_key_values=..., use_cache=True)``, its ``DynamicCache`` created by every prefill.
"""
import torch

description = "transformers LlamaForCausalLM (tiny config, random weights; needs transformers), KV-cache generation"
workload = "generate"
batch_size = 1
prompt_len = 32
new_tokens = 8
VOCAB = 512


def build_model() -> torch.nn.Module:
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:
        raise RuntimeError("this scenario needs transformers: pip install transformers") from None
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048,
                         rms_norm_eps=1e-6, tie_word_embeddings=False, attn_implementation="sdpa")
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def make_inputs(batch_size: int, device) -> torch.Tensor:
    """The prompt: token ids (batch, prompt_len); the harness resizes it to --prompt-len."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, VOCAB, (batch_size, prompt_len), generator=g).to(device)
