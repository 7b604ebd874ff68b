"""``timm:NAME``: ``timm.create_model(NAME, pretrained=False, **model_kwargs)``.

Inputs ``(B, C, H, W)`` from the model's ``pretrained_cfg["input_size"]`` (channels from
``in_chans`` when given); ``--input-size S`` makes it ``(B, C, S, S)``, and a model with a
fixed input size (ViTs) is then built with ``img_size=S`` unless model_kwargs says otherwise.
"""
from __future__ import annotations


from ..errors import HarnessError
from .common import NamedModel, build_error, disk_name, offline, randn, require, seeded, unknown


def list_models(pattern: str | None = None) -> list[str]:
    return sorted(require("timm", "timm").list_models(pattern or ""))


def input_shape(cfg, options) -> tuple[int, int, int]:
    """(C, H, W): the pretrained config's input size, img_size / in_chans kwargs, --input-size."""
    c, h, w = tuple(getattr(cfg, "input_size", None) or (3, 224, 224))
    kw = options.model_kwargs
    if "img_size" in kw:
        size = kw["img_size"]
        h, w = (size, size) if isinstance(size, int) else tuple(size)
    if options.input_size:
        h = w = options.input_size
    return int(kw.get("in_chans", c)), int(h), int(w)


def load(name: str, options) -> NamedModel:
    timm = require("timm", "timm")
    from timm.models import get_pretrained_cfg

    qualified = f"timm:{name}"
    if not timm.is_model(name):
        raise unknown("timm model", name, timm.list_models(), "`python -m harness list timm PATTERN` shows them")
    cfg = get_pretrained_cfg(name)
    kwargs = dict(options.model_kwargs)
    if options.input_size and getattr(cfg, "fixed_input_size", False):
        kwargs.setdefault("img_size", options.input_size)
    if options.weights:
        _check_weights_on_disk(qualified, cfg)

    def build():
        with offline():  # never download, also with --weights
            try:
                return timm.create_model(name, pretrained=options.weights, **kwargs)
            except Exception as exc:
                raise build_error(qualified, exc) from exc

    shape = input_shape(cfg, options)
    return NamedModel(name=disk_name("timm", name), description=f"timm {name} (image, {shape[1]}x{shape[2]}, "
                      f"{'pretrained weights from disk' if options.weights else 'random weights'})", path=None,
                      build_model=seeded(build), make_inputs=lambda b, device: randn((b, *shape), device),
                      qualified=qualified, source="timm", kind="image-classification")


def _check_weights_on_disk(qualified: str, cfg) -> None:
    """--weights: the model's Hugging Face weights file must already be in the local cache."""
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = hub_id.partition("@")
        for filename in ("model.safetensors", "pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(repo, filename, revision=revision or None), str):
                return
    raise HarnessError(f"{qualified}: --weights needs the weights in the local Hugging Face cache "
                       f"({hub_id or 'no hub id for this model'}); nothing is downloaded, run without --weights for random weights")
