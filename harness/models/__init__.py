"""Any model by name: ``torchvision:NAME``, ``timm:NAME``, ``hf:ID_OR_PATH``.

:func:`load` turns a source-qualified name into a
:class:`harness.core.scenario.Scenario` (a :class:`~.common.NamedModel`) whose
model is built with random weights (nothing is downloaded) and whose inputs are derived
from the model: image size, sequence length, token ids within the vocabulary.

This module imports neither torch nor timm/transformers: the source modules are imported
when a name is loaded or listed.
"""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HarnessError

SOURCES = ("torchvision", "timm", "hf")
_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_]+):(.*)$")  # two or more characters: "C:\x" is a drive
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")


@dataclass
class ModelOptions:
    """How a named model is built and fed (all optional).

    ``input_size``: image side in pixels (default: the model's own); ``seq_len``: tokens
    (default 128, capped by the model's positions); ``model_kwargs``: constructor
    arguments (torchvision, timm) or config overrides (hf); ``attn_implementation``:
    ``eager`` or ``sdpa`` (hf); ``weights``: load real weights already on disk.
    """

    input_size: int | None = None
    seq_len: int | None = None
    model_kwargs: dict = field(default_factory=dict)
    attn_implementation: str | None = None
    weights: bool = False


def is_qualified(text: str) -> bool:
    """True for ``SOURCE:NAME`` (any source, so that an unknown one errors clearly).

    False for file paths (``./a.py``, ``C:\\x``, ``model.py:bs=8``), existing files and
    built-in scenarios with A/B options (``vgg16:channels_last``).
    """
    text = str(text)
    m = _PREFIX.match(text)
    if not m or Path(text).exists():
        return False
    if m.group(1) in SOURCES:
        return True
    from ..core.scenario import builtin_paths

    return m.group(1) not in builtin_paths()


def split_variant(text: str) -> tuple[str, str]:
    """Split an A/B side into (scenario, options).

    ``timm:resnet50:channels_last`` -> ``("timm:resnet50", "channels_last")``;
    ``vgg16:bs=8`` -> ``("vgg16", "bs=8")``; an existing path is kept whole.
    """
    text = str(text)
    if is_qualified(text):
        source, rest = text.split(":", 1)
        name, _, opts = rest.partition(":")
        return f"{source}:{name}", opts
    if ":" in text and not Path(text).exists():
        scen, opts = text.split(":", 1)
        return scen, opts
    return text, ""


def _source_module(source: str):
    import importlib

    if source not in SOURCES:
        from .common import unknown

        raise unknown("model source", source, SOURCES,
                      "sources: torchvision:NAME, timm:NAME, hf:ID_OR_PATH; or a built-in scenario or a .py file")
    return importlib.import_module(f".source_{source}", __name__)


def load(text: str, options: ModelOptions | None = None):
    """Build a :class:`~harness.core.scenario.Scenario` for ``SOURCE:NAME``.

    Its ``name`` is the on-disk name (``timm:convnext_tiny`` -> ``timm-convnext_tiny``),
    ``path`` is None, ``kind`` says what the model is (``causal-lm``, ``detection`` ...).
    Raises :class:`HarnessError` (exit 2, one line) for an unknown source or name, a
    missing library, an HF id not on disk, bad options.
    """
    m = _PREFIX.match(str(text))
    if not m:
        raise HarnessError(f"{text!r} is not a qualified model name; use torchvision:NAME, timm:NAME or hf:ID_OR_PATH")
    source, name = m.group(1), m.group(2).strip()
    module = _source_module(source)
    if not name:
        raise HarnessError(f"{text!r}: give a model name after '{source}:' (see `python -m harness list {source}`)")
    return module.load(name, options or ModelOptions())


def list_models(source: str, pattern: str | None = None) -> list[str]:
    """Names that can follow ``SOURCE:`` (``pattern``: a glob such as ``convnext*``)."""
    return _source_module(source).list_models(pattern)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of named models, for every verb that takes a scenario."""
    g = parser.add_argument_group("named models (torchvision:NAME, timm:NAME, hf:ID_OR_PATH)")
    g.add_argument("--input-size", type=int, default=None, metavar="N",
                   help="image side in pixels (default: the model's own, e.g. 224, 299 for inception_v3)")
    g.add_argument("--seq-len", type=int, default=None, metavar="N", help="tokens per sequence for text models (default 128)")
    g.add_argument("--model-kwargs", default=None, metavar="JSON",
                   help='constructor arguments, or config overrides for hf: e.g. \'{"num_classes": 10}\'')
    g.add_argument("--attn-implementation", default=None, choices=ATTN_IMPLEMENTATIONS, help="hf models: attention kernel")
    g.add_argument("--weights", action="store_true",
                   help="load real weights if they are already on disk (never downloaded; default: random weights)")


def options_from_args(args) -> ModelOptions:
    """:class:`ModelOptions` from parsed arguments; bad values raise a one-line HarnessError."""
    kwargs = {}
    raw = getattr(args, "model_kwargs", None)
    if raw:
        try:
            kwargs = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"--model-kwargs is not valid JSON ({exc.msg} at character {exc.pos}); "
                               'write a JSON object such as \'{"num_classes": 10}\'') from None
        if not isinstance(kwargs, dict):
            raise HarnessError(f"--model-kwargs must be a JSON object such as '{{\"num_classes\": 10}}', got {raw!r}")
    for flag in ("input_size", "seq_len"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise HarnessError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    attn = getattr(args, "attn_implementation", None)
    if attn is not None and attn not in ATTN_IMPLEMENTATIONS:
        raise HarnessError(f"--attn-implementation must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, got {attn!r}")
    return ModelOptions(input_size=getattr(args, "input_size", None), seq_len=getattr(args, "seq_len", None),
                        model_kwargs=kwargs, attn_implementation=attn, weights=bool(getattr(args, "weights", False)))


__all__ = ["ModelOptions", "SOURCES", "add_arguments", "is_qualified", "list_models", "load", "options_from_args",
           "split_variant"]
