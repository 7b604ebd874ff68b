"""One 256x256 linear layer (+ReLU) applied 26 times to a batch of 32: 26 units of work (~1 ms on one core).

The regression benchmark pairs files of this family whose work differs by a known factor
(chain_21 / chain_20 = 1.05, chain_26 / chain_20 = 1.30). The layer's weights are shared by
every application, so the memory footprint is the same for every file and time scales
with the number of applications (separate layers would add cache misses as well as work).
"""
import torch
from torch import nn

APPLICATIONS = 26
description = f"Linear(256, 256) + ReLU applied {APPLICATIONS} times, batch 32 (benchmark workload)"
batch_size = 32


class Chain(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.layer = nn.Linear(256, 256)

    def forward(self, x):
        for _ in range(self.n):
            x = torch.relu(self.layer(x))
        return x


def build_model():
    torch.manual_seed(0)
    return Chain(APPLICATIONS)


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 256, device=device)
