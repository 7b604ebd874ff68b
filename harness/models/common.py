"""What every model source shares: the scenario it returns, its errors, seeded inputs."""
from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..errors import HarnessError
from ..core.scenario import Scenario

PIP_NAMES = {"timm": "timm", "transformers": "transformers"}
EXTRAS = {"timm": "timm", "transformers": "hf"}

#: The variables that keep Hugging Face libraries (transformers, huggingface_hub, timm's hub) offline.
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@contextlib.contextmanager
def offline():
    """Hugging Face libraries offline for the block (a value the user set is kept): nothing is ever
    downloaded, also with ``--weights``."""
    before = {v: os.environ.get(v) for v in OFFLINE_VARS}
    for v in OFFLINE_VARS:
        os.environ.setdefault(v, "1")
    try:
        yield
    finally:
        for v, old in before.items():
            if old is None:
                os.environ.pop(v, None)


@dataclass
class NamedModel(Scenario):
    """A scenario built from a qualified name.

    ``qualified``: the name as given (``timm:convnext_tiny``); ``source``: torchvision,
    timm or hf; ``kind``: what the model is and therefore what its inputs are:
    ``image-classification``, ``detection``, ``segmentation``, ``video``, ``optical-flow``,
    ``causal-lm``, ``seq2seq``, ``speech-seq2seq``, ``text``, ``vision``, ``audio``.
    """

    qualified: str = ""
    source: str = ""
    kind: str = ""


def disk_name(source: str, name: str) -> str:
    """The scenario name used for run directories and history: ``timm:x`` -> ``timm-x``.

    Characters a directory name cannot hold (``/``, ``\\``, ``:``) become ``-``; a leading
    ``./`` is dropped: ``hf:./cfg/llama`` -> ``hf-cfg-llama``, ``hf:org/m`` -> ``hf-org-m``.
    """
    name = re.sub(r"^(\./)+", "", name).strip("/\\")
    return f"{source}-" + re.sub(r"[/\\:\s]+", "-", name)


def unknown(what: str, name: str, known: Iterable[str], hint: str) -> HarnessError:
    """An 'unknown NAME; did you mean ...' error naming up to 3 close matches (difflib)."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    mean = f"; did you mean {', '.join(close)}?" if close else ""
    return HarnessError(f"unknown {what} {name!r}{mean} ({hint})")


def require(module: str, source: str):
    """Import an optional library, or exit 2 with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise HarnessError(f"{source}: models need {module}, which is not installed here; "
                           f"pip install {PIP_NAMES[module]}   (or pip install 'harness[{EXTRAS[module]}]')") from None


def check_kwargs(qualified: str, kwargs: dict, accepted: Iterable[str]) -> None:
    """Refuse a --model-kwargs key the constructor or config does not know, naming close ones."""
    accepted = list(accepted)
    for key in kwargs:
        if key not in accepted:
            raise unknown(f"--model-kwargs key for {qualified}:", key, accepted,
                          "a constructor argument or config field of this model")


def build_error(qualified: str, exc: BaseException) -> HarnessError:
    """A model constructor that raised (bad kwargs, unsupported combination) as one line."""
    from ..core.text import short_exc

    return HarnessError(f"{qualified} could not be built: {short_exc(exc)}"[:400])


def seeded(build: Callable[[], Any]) -> Callable[[], Any]:
    """``build`` with the random weights drawn from seed 0, leaving the caller's RNG as it was."""

    def build_model():
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build()

    return build_model


def randn(shape: tuple, device: Any, seed: int = 0):
    """A reproducible float tensor of ``shape`` on ``device`` (drawn on the CPU)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(device)


def randint(high: int, shape: tuple, device: Any, seed: int = 0):
    """Reproducible integer ids in ``[0, high)`` of ``shape`` on ``device``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, shape, generator=g).to(device)
