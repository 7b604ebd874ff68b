"""Linear(512, 512) applied 80 times to a batch of 64 (benchmarks/contention.py's workload).

The scenario of the issue "Honest verdicts on a busy machine": with 2 threads next to a busy
neighbour, OpenMP's barrier makes every iteration 10-100x slower. linear512_80 does exactly
twice linear512_40's work with the same weights (one layer, shared by every application), so
its memory footprint is the same and time scales with the number of applications.
"""
import torch
from torch import nn

APPLICATIONS = 80
description = f"Linear(512, 512) applied {APPLICATIONS} times, batch 64 (contention benchmark)"
batch_size = 64


class Chain(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.layer = nn.Linear(512, 512)

    def forward(self, x):
        for _ in range(self.n):
            x = self.layer(x)
        return x


def build_model():
    torch.manual_seed(0)
    return Chain(APPLICATIONS)


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 512, device=device)
