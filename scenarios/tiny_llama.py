"""A tiny Llama-style decoder with a KV cache, generated with the harness's own loop.

RMSNorm, rotary position embeddings (computed per call from ``inv_freq``, as
transformers' Llama does), grouped-query attention (8 query heads share 2 key/value
heads; ``F.scaled_dot_product_attention(..., enable_gqa=True)``), a SwiGLU MLP and an
untied LM head. The cache is one ``(key, value)`` pair per layer, each
``(batch, kv_heads, context, head_dim)``, grown with ``torch.cat`` (as transformers'
``DynamicCache``), so its tensors hold exactly the context.

Interface (b) of ``--workload generate``: ``prefill(model, inputs) -> state`` and
``decode_step(model, state) -> state``; ``state["cache"]`` is the KV cache.
"""
import torch
import torch.nn.functional as F
from torch import nn

description = "Llama-style decoder (4 layers, d 128, 8 heads / 2 KV heads, SwiGLU 384, vocab 512), KV-cache generation"
workload = "generate"
batch_size = 1
prompt_len = 32
new_tokens = 8

VOCAB, D_MODEL, LAYERS, HEADS, KV_HEADS, FFN = 512, 128, 4, 8, 2, 384
HEAD_DIM = D_MODEL // HEADS


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Rotary(nn.Module):
    """cos/sin of ``position x inv_freq`` for the positions of this call."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim))

    def forward(self, start: int, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # float32 positions and frequencies whatever the model's dtype (bf16 cannot count past 256)
        pos = torch.arange(start, start + length, device=self.inv_freq.device, dtype=torch.float32)
        freqs = torch.outer(pos, self.inv_freq.float())
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(D_MODEL, HEADS * HEAD_DIM, bias=False)
        self.k_proj = nn.Linear(D_MODEL, KV_HEADS * HEAD_DIM, bias=False)
        self.v_proj = nn.Linear(D_MODEL, KV_HEADS * HEAD_DIM, bias=False)
        self.o_proj = nn.Linear(HEADS * HEAD_DIM, D_MODEL, bias=False)

    def forward(self, x, cos, sin, cache):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, HEADS, HEAD_DIM).transpose(1, 2)
        k = self.k_proj(x).view(b, t, KV_HEADS, HEAD_DIM).transpose(1, 2)
        v = self.v_proj(x).view(b, t, KV_HEADS, HEAD_DIM).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            k = torch.cat((cache[0], k), dim=2)
            v = torch.cat((cache[1], v), dim=2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1, enable_gqa=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, HEADS * HEAD_DIM)), (k, v)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj = nn.Linear(D_MODEL, FFN, bias=False)
        self.up_proj = nn.Linear(D_MODEL, FFN, bias=False)
        self.down_proj = nn.Linear(FFN, D_MODEL, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_norm = nn.RMSNorm(D_MODEL, eps=1e-6)
        self.attn = Attention()
        self.post_norm = nn.RMSNorm(D_MODEL, eps=1e-6)
        self.mlp = MLP()

    def forward(self, x, cos, sin, cache):
        a, cache = self.attn(self.input_norm(x), cos, sin, cache)
        x = x + a
        return x + self.mlp(self.post_norm(x)), cache


class TinyLlama(nn.Module):
    """``forward(ids, cache=None) -> (logits, cache)``: logits for every position given."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D_MODEL)
        self.rotary = Rotary(HEAD_DIM)
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
        self.norm = nn.RMSNorm(D_MODEL, eps=1e-6)
        self.lm_head = nn.Linear(D_MODEL, VOCAB, bias=False)

    def forward(self, ids: torch.Tensor, cache: list | None = None):
        start = 0 if cache is None else cache[0][0].shape[2]
        x = self.embed(ids)
        cos, sin = self.rotary(start, ids.shape[1], x.dtype)
        new_cache = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, cos, sin, None if cache is None else cache[i])
            new_cache.append(kv)
        return self.lm_head(self.norm(x)), new_cache


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return TinyLlama()


def make_inputs(batch_size: int, device) -> torch.Tensor:
    """The prompt: token ids (batch, prompt_len); the harness resizes it to --prompt-len."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, VOCAB, (batch_size, prompt_len), generator=g).to(device)


def prefill(model: nn.Module, inputs: torch.Tensor) -> dict:
    """One forward over the prompt; greedy first token."""
    logits, cache = model(inputs)
    return {"token": logits[:, -1:].argmax(-1), "cache": cache}


def decode_step(model: nn.Module, state: dict) -> dict:
    """One forward of one token per sequence with the cache; greedy next token."""
    logits, cache = model(state["token"], state["cache"])
    return {"token": logits[:, -1:].argmax(-1), "cache": cache}
