"""ResNet-50 (torchvision, random weights) on 224x224 RGB images."""
import torch
import torchvision

description = "ResNet-50 (torchvision, random weights) on 224x224 RGB images"
batch_size = 1


def build_model() -> torch.nn.Module:
    # weights=None: random initialisation, nothing is downloaded
    return torchvision.models.resnet50(weights=None)


def make_inputs(batch_size: int, device) -> torch.Tensor:
    return torch.randn(batch_size, 3, 224, 224, device=device)
