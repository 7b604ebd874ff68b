"""A model whose forward takes two tensors: an image branch and a feature branch, fused."""
import torch
from torch import nn

description = "Two-input model: conv image branch (3x64x64) + MLP on a 32-feature vector, concatenated"
batch_size = 1


class TwoInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.image = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.features = nn.Sequential(nn.Linear(32, 64), nn.ReLU())
        self.head = nn.Linear(32 + 64, 10)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.image(image), self.features(features)], dim=1))


def build_model() -> nn.Module:
    return TwoInput()


def make_inputs(batch_size: int, device):
    return torch.randn(batch_size, 3, 64, 64, device=device), torch.randn(batch_size, 32, device=device)
