"""Shared fixtures: tiny scenario files, the CLI in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

# Hermetic peaks: a calibration this machine's user made (~/.cache/harness) must not change what the
# tests see; each test session (and every CLI process it starts) gets its own empty cache.
os.environ["HARNESS_CACHE_DIR"] = __import__("tempfile").mkdtemp(prefix="harness-test-cache-")

TINY_SCENARIO = '''
"""A tiny conv + linear model for fast end-to-end tests."""
import torch
from torch import nn

description = "tiny conv+linear test model"
batch_size = 2


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10),
    )


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 3, 16, 16, device=device)
'''


F32 = 4  # bytes per float32 element


def hogs_to_halve(threads: int) -> int:
    """How many busy processes make ``threads`` threads of ours wait for a CPU about half the time on
    this machine: with N CPUs in our affinity mask (inherited by the hogs), 2N runnable threads give
    each about half a CPU. 2 hogs next to 2 threads on 2 CPUs, 30 on 16; at least 1."""
    return max(1, 2 * len(os.sched_getaffinity(0)) - threads)


class Fn(torch.nn.Module):
    """Wrap a function of the inputs as a module (count() takes modules)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


@pytest.fixture
def tiny_scenario(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.py"
    p.write_text(textwrap.dedent(TINY_SCENARIO))
    return p


def write_scenario(directory: Path, name: str, body: str) -> Path:
    p = directory / f"{name}.py"
    p.write_text(textwrap.dedent(body))
    return p


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m harness ARGS`` in a subprocess, as a user runs it."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout, env=full_env)
