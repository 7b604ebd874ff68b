"""Shared parts of the 2 % benchmark pairs (chain_50/51, decode_chain_50/51).

One Linear(256, 256) + ReLU applied N times, its weights shared by every application, so
that the memory footprint is the same for N and N + 1 and time scales with N: the
N + 1 file does (N + 1) / N times the work (51 / 50 = 1.02).

The decode pair drives the same chain through ``--workload generate``'s interface (b):
``prefill(model, inputs)`` embeds the prompt's token ids and runs the chain over every
position; each ``decode_step`` runs it over one new token per sequence and appends the
hidden state to the cache. The chain is ~all of a decode step's work (the cache append
and argmax are a few microseconds), so a decode step of the 51 file is ~2 % slower.
"""
from __future__ import annotations

import torch
from torch import nn

VOCAB = 512
WIDTH = 256


class Chain(nn.Module):
    """``x -> relu(layer(x))`` applied ``n`` times with one shared ``layer``."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.layer = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        for _ in range(self.n):
            x = torch.relu(self.layer(x))
        return x


class TokenChain(nn.Module):
    """Token ids -> embedding -> :class:`Chain` (a decoder without attention)."""

    def __init__(self, n: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.chain = Chain(n)

    def forward(self, ids):
        return self.chain(self.embed(ids))


def seeded(cls, n: int) -> nn.Module:
    torch.manual_seed(0)
    return cls(n)


def features(batch_size: int, device) -> torch.Tensor:
    return torch.randn(batch_size, WIDTH, device=device)


def tokens(batch_size: int, device, length: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, VOCAB, (batch_size, length), generator=g).to(device)


def _next_token(hidden: torch.Tensor) -> torch.Tensor:
    """A deterministic next token per sequence from the last hidden state (batch, 1)."""
    return hidden[:, -1:].argmax(dim=-1) % VOCAB


def prefill(model: TokenChain, inputs) -> dict:
    hidden = model(inputs)
    return {"cache": hidden, "token": _next_token(hidden)}


def decode_step(model: TokenChain, state: dict) -> dict:
    hidden = model(state["token"])
    return {"cache": torch.cat([state["cache"], hidden], dim=1), "token": _next_token(hidden)}
