"""Embedding(10000, 300) -> LSTM(300, 128) -> Linear(128, 10) text classifier on token ids."""
import torch
from torch import nn

description = "Embedding(10000,300) -> LSTM(300,128) -> Linear(128,10) on 64 token ids (oneDNN LSTM on CPU)"
batch_size = 1
seq_len = 64


class TextLSTM(nn.Module):
    def __init__(self, vocab: int = 10000, embed: int = 300, hidden: int = 128, classes: int = 10):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(tokens))
        return self.fc(out[:, -1])


def build_model() -> nn.Module:
    return TextLSTM()


def make_inputs(batch_size: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 10000, (batch_size, seq_len), generator=g).to(device)
