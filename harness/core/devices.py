"""One answer to "which CUDA device is this?" for every stage."""
from __future__ import annotations

from typing import Any


def cuda_index(device: Any) -> int:
    """The CUDA device index of ``device`` (``cuda:1`` -> 1; plain ``cuda`` -> the current device);
    0 for a device that is not CUDA (its index is never used then)."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return 0
    return dev.index if dev.index is not None else torch.cuda.current_device()
