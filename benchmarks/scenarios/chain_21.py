"""A chain of 21 identical 256x256 linear layers on a batch of 32: 21 units of work (~1 ms on one core).

The regression benchmark pairs files of this family whose work differs by a known factor
(chain_21 / chain_20 = 1.05, chain_26 / chain_20 = 1.30). Every layer has the same shape,
so time scales with the layer count.
"""
import torch
from torch import nn

LAYERS = 21
description = f"{LAYERS} x Linear(256, 256), batch 32 (benchmark workload)"
batch_size = 32


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(256, 256) for _ in range(LAYERS)])


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 256, device=device)
