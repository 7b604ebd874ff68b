"""Scenarios: a model, its inputs and a device, defined in a plain Python file.

A scenario module defines ``build_model() -> nn.Module`` and
``make_inputs(batch_size: int, device) -> Tensor | tuple | dict`` (a dict is passed
as keyword arguments), and optionally the constants ``name`` (default: the file's
stem), ``batch_size``, ``device``, ``dtype`` and ``description``.
Built-in scenarios live in the repository's ``scenarios/`` directory; any file that
follows the convention runs by path.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from ..core.scenario import SCENARIO_DIR, Scenario, builtin_paths
from ..core.text import short_exc
from ..errors import HarnessError

__all__ = ["SCENARIO_DIR", "Scenario", "build", "builtin_paths", "inputs", "load"]


def _import_file(path: Path) -> ModuleType:
    mod_name = f"harness_scenario_{path.stem}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise HarnessError(f"scenario file {path} cannot be imported as Python (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise HarnessError(
            f"scenario file {path} has a syntax error at line {exc.lineno}: {exc.msg}; fix the file and run again"
        ) from exc
    except Exception as exc:  # the file's own top-level code raised
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise HarnessError(
            f"scenario file {path} raised while importing (line {where.lineno}): {short_exc(exc)}"
        ) from exc
    return module


def load(name_or_path: str | os.PathLike, options: Any = None) -> Scenario:
    """Load a built-in scenario by name, a user's scenario file by path, or a model by
    name (``torchvision:NAME``, ``timm:NAME``, ``hf:ID_OR_PATH``; ``options``:
    :class:`harness.models.ModelOptions`).

    Raises :class:`HarnessError` (exit code 2) for unknown names (naming the closest
    ones), missing files, syntax errors and missing functions.
    """
    text = str(name_or_path)
    from .. import models

    if models.is_qualified(text):
        return models.load(text, options)
    looks_like_path = text.endswith(".py") or "/" in text or "\\" in text
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.exists():
            raise HarnessError(f"scenario file {path} does not exist; give a path to a .py file or a built-in name (see `python -m harness list`)")
        if path.is_dir():
            raise HarnessError(f"scenario path {path} is a directory; give a .py file")
    else:
        known = builtin_paths()
        if text not in known:
            close = difflib.get_close_matches(text, list(known), n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise HarnessError(
                f"unknown scenario '{text}'{hint} (`python -m harness list` shows all; a file path runs your own)"
            )
        path = known[text]
    module = _import_file(path.resolve())
    missing = [fn for fn in ("build_model", "make_inputs") if not callable(getattr(module, fn, None))]
    if missing:
        raise HarnessError(
            f"scenario file {path} lacks {' and '.join(missing)}(); a scenario defines build_model() and make_inputs(batch_size, device)"
        )
    doc = (module.__doc__ or "").strip().splitlines()
    return Scenario(
        name=str(getattr(module, "name", path.stem)),
        description=str(getattr(module, "description", doc[0] if doc else "")),
        path=path.resolve(),
        build_model=module.build_model,
        make_inputs=module.make_inputs,
        batch_size=int(getattr(module, "batch_size", 1)),
        device=str(getattr(module, "device", "cpu")),
        dtype=str(getattr(module, "dtype", "float32")),
        workload=str(getattr(module, "workload", "forward")),
        module=module,
    )


def build(scenario: Scenario):
    """Call the scenario's ``build_model``; errors become a one-line HarnessError."""
    try:
        model = scenario.build_model()
    except HarnessError:
        raise
    except Exception as exc:
        raise HarnessError(f"scenario '{scenario.name}' raised while building its model: {short_exc(exc)}") from exc
    import torch

    if not isinstance(model, torch.nn.Module):
        raise HarnessError(f"scenario '{scenario.name}': build_model() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def inputs(scenario: Scenario, batch_size: int, device: Any):
    try:
        return scenario.make_inputs(batch_size, device)
    except Exception as exc:
        raise HarnessError(f"scenario '{scenario.name}' raised while making inputs: {short_exc(exc)}") from exc
