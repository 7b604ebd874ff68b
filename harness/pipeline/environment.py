"""What the numbers depend on: versions, CPU/GPU, threads, the harness commit (env.json)."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

from ..version import __version__

ENV_SCHEMA_VERSION = 1


def git_commit() -> str:
    """The harness checkout's short commit (``-dirty`` when tracked files changed), else ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from ..hardware import cpu_info

    return cpu_info().get("model_name") or platform.processor() or "cpu"


def cuda_facts(device: torch.device) -> dict:
    """The GPU's properties and the math-mode flags that decide its ceilings (each read guarded)."""
    from ..hardware import cuda_flags

    props = torch.cuda.get_device_properties(device)
    return {"name": props.name, "total_memory_bytes": props.total_memory,
            "multi_processor_count": props.multi_processor_count,
            "capability": f"{props.major}.{props.minor}", **cuda_flags.read_cuda_flags()}


def environment(device: torch.device) -> dict:
    """env.json: versions, CPU, threads, device; on CUDA the GPU and its TF32/cuDNN flags."""
    from ..hardware import cpu_info

    env = {
        "schema_version": ENV_SCHEMA_VERSION,
        "harness_version": __version__,
        "git_commit": git_commit(),
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "torch_cuda_version": torch.version.cuda,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_info(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "mkldnn_enabled": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
        "device": device.type,
        "device_name": device_name(device),
    }
    if device.type == "cuda":
        env["gpu"] = cuda_facts(device)
    return env
