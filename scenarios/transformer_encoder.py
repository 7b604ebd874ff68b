"""nn.TransformerEncoder: d_model 512, 8 heads, feed-forward 2048, 6 layers, sequence 128."""
import torch
from torch import nn

description = "nn.TransformerEncoder (d_model 512, 8 heads, ff 2048, 6 layers) on seq 128; fused fast path in eval"
batch_size = 1
seq_len = 128


def build_model() -> nn.Module:
    layer = nn.TransformerEncoderLayer(d_model=512, nhead=8, dim_feedforward=2048, batch_first=True)
    # enable_nested_tensor=False: inputs have no padding mask, keep dense tensors
    return nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)


def make_inputs(batch_size: int, device) -> torch.Tensor:
    return torch.randn(batch_size, seq_len, 512, device=device)
