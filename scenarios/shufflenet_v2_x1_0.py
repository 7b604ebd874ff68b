"""ShuffleNetV2 1.0x (torchvision, random weights): group convs and channel shuffle on 224x224 images."""
import torch
import torchvision

description = "ShuffleNetV2 1.0x (torchvision, random weights): group convs and channel shuffle on 224x224 images"
batch_size = 1


def build_model() -> torch.nn.Module:
    # weights=None: random initialisation, nothing is downloaded
    return torchvision.models.shufflenet_v2_x1_0(weights=None)


def make_inputs(batch_size: int, device) -> torch.Tensor:
    return torch.randn(batch_size, 3, 224, 224, device=device)
