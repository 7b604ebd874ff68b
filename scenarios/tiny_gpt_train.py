"""tiny_gpt trained: next-token cross-entropy, AdamW, every block activation-checkpointed (non-reentrant)."""
import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

_spec = importlib.util.spec_from_file_location("_tiny_gpt", Path(__file__).with_name("tiny_gpt.py"))
_gpt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gpt)

description = "tiny_gpt training step: cross-entropy on next tokens, AdamW, checkpointed blocks"
workload = "train"
batch_size = 2
seq_len = _gpt.seq_len
tokens_per_sample = seq_len


class CheckpointedGPT(_gpt.TinyGPT):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tok(tokens) + self.pos(pos)
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False)
        return self.head(self.ln_f(x))


def build_model():
    return CheckpointedGPT()


def make_inputs(batch_size: int, device):
    return _gpt.make_inputs(batch_size, device)


def make_targets(batch_size: int, device):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, _gpt.vocab, (batch_size, seq_len), generator=g).to(device)


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=3e-4, weight_decay=0.1)
