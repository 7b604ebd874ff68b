"""``torchvision:NAME``: ``torchvision.models.get_model(NAME, weights=None)``.

Inputs by the builder's package: classification ``(B, 3, S, S)``; segmentation the same
at the weights' resize size (520); detection a **list** of B images ``(3, S, S)`` (the
model resizes them itself); video ``(B, 3, 16, S, S)``; optical flow the tuple of two
frames ``(B, 3, S, S)``. ``S`` is ``--input-size``, else the crop (or resize) size of the
model's default weights' transforms (299 for inception_v3, 112 for r3d_18), else 224.
"""
from __future__ import annotations

import fnmatch
import inspect
from pathlib import Path

from ..errors import HarnessError
from .common import NamedModel, build_error, check_kwargs, disk_name, randn, seeded, unknown

KINDS = {"detection": "detection", "segmentation": "segmentation", "video": "video", "optical_flow": "optical-flow"}
VIDEO_FRAMES = 16


def list_models(pattern: str | None = None) -> list[str]:
    from torchvision.models import list_models as names

    return sorted(n for n in names() if not pattern or fnmatch.fnmatch(n, pattern))


def kind_of(builder) -> str:
    """``image-classification`` or the torchvision.models subpackage the builder lives in."""
    parts = builder.__module__.split(".")
    sub = parts[2] if len(parts) > 3 else ""
    return KINDS.get(sub, "image-classification")


def default_size(name: str) -> int:
    """The side of the images the default weights were evaluated at (crop, else resize), else 224."""
    from torchvision.models import get_model_weights

    try:
        keywords = getattr(get_model_weights(name).DEFAULT.transforms, "keywords", {})
    except (ValueError, AttributeError):
        return 224
    size = keywords.get("crop_size") or keywords.get("resize_size") or 224
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _weights_file(name: str) -> Path:
    import torch
    from torchvision.models import get_model_weights

    url = get_model_weights(name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load(name: str, options) -> NamedModel:
    import torchvision.models as tvm

    qualified = f"torchvision:{name}"
    if name not in tvm.list_models():
        raise unknown("torchvision model", name, tvm.list_models(), "`python -m harness list torchvision` shows all")
    builder = tvm.get_model_builder(name)
    params = inspect.signature(builder).parameters
    kwargs = dict(options.model_kwargs)
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        check_kwargs(qualified, kwargs, params)
    weights = None
    if options.weights:
        path = _weights_file(name)
        if not path.is_file():
            raise HarnessError(f"{qualified}: --weights needs {path} on disk (nothing is downloaded); "
                               "copy the file there or run without --weights (random weights)")
        weights = "DEFAULT"
    if "weights_backbone" in params:
        kwargs.setdefault("weights_backbone", None)  # the default would download ImageNet weights

    def build():
        try:
            return tvm.get_model(name, weights=weights, **kwargs)
        except Exception as exc:
            raise build_error(qualified, exc) from exc

    kind = kind_of(builder)
    make_inputs = input_maker(kind, options.input_size or default_size(name), qualified)
    return NamedModel(name=disk_name("torchvision", name), description=f"torchvision {name} ({kind}, "
                      f"{'pretrained weights from disk' if weights else 'random weights'})", path=None,
                      build_model=seeded(build), make_inputs=make_inputs, qualified=qualified,
                      source="torchvision", kind=kind)


def input_maker(kind: str, size: int, qualified: str):
    """``make_inputs(batch_size, device)`` for a torchvision model of ``kind`` at image side ``size``."""
    if kind == "optical-flow" and (size % 8 or size < 128):
        raise HarnessError(f"{qualified}: optical flow needs --input-size a multiple of 8 and at least 128, got {size}")

    def make_inputs(batch_size: int, device):
        if kind == "detection":
            return [randn((3, size, size), device, seed=i) for i in range(batch_size)]
        if kind == "video":
            return randn((batch_size, 3, VIDEO_FRAMES, size, size), device)
        if kind == "optical-flow":
            return randn((batch_size, 3, size, size), device, 0), randn((batch_size, 3, size, size), device, 1)
        return randn((batch_size, 3, size, size), device)

    return make_inputs
