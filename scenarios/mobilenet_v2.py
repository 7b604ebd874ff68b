"""MobileNetV2 (torchvision, random weights): depthwise-separable convs on 224x224 images."""
import torch
import torchvision

description = "MobileNetV2 (torchvision, random weights): depthwise-separable convs on 224x224 images"
batch_size = 1


def build_model() -> torch.nn.Module:
    # weights=None: random initialisation, nothing is downloaded
    return torchvision.models.mobilenet_v2(weights=None)


def make_inputs(batch_size: int, device) -> torch.Tensor:
    return torch.randn(batch_size, 3, 224, 224, device=device)
