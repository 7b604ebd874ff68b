"""ViT-B/16 (torchvision, random weights): fused multi-head attention on 224x224 images."""
import torch
import torchvision

description = "ViT-B/16 (torchvision, random weights): fused multi-head attention on 224x224 images"
batch_size = 1


def build_model() -> torch.nn.Module:
    # weights=None: random initialisation, nothing is downloaded
    return torchvision.models.vit_b_16(weights=None)


def make_inputs(batch_size: int, device) -> torch.Tensor:
    return torch.randn(batch_size, 3, 224, 224, device=device)
