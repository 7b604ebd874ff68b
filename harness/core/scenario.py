"""The scenario record (:class:`Scenario`) and where the built-in scenarios live.

Below both :mod:`harness.pipeline.scenario` (which loads scenario files and dispatches
names to :mod:`harness.models`) and :mod:`harness.models` (whose named models are
scenarios), so neither imports the other's side."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["SCENARIO_DIR", "Scenario", "builtin_paths"]

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"


@dataclass
class Scenario:
    """A loaded scenario. ``batch_size``/``device``/``dtype`` are the file's defaults."""

    name: str
    description: str
    path: Path | None  # None for a model by name (harness.models)
    build_model: Callable[[], Any]
    make_inputs: Callable[[int, Any], Any]
    batch_size: int = 1
    device: str = "cpu"
    dtype: str = "float32"
    workload: str = "forward"
    module: Any = None  # the scenario file's module: workloads read their own hooks from it


def builtin_paths() -> dict[str, Path]:
    """Built-in scenario files by stem."""
    if not SCENARIO_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.py")) if not p.name.startswith("_")}
