"""Memory budgets: ``--memory-budget`` parsed, or the device's own memory.

``parse_budget``: a number of bytes with an optional unit, case-insensitive, spaces allowed:
``B``; SI ``KB``, ``MB``, ``GB``, ``TB`` (powers of 1000); binary ``KiB``, ``MiB``, ``GiB``, ``TiB``
(powers of 1024); decimals allowed (``1.5GiB``); plain digits are bytes. Anything else, zero or
negative is a :class:`~harness.errors.HarnessError` (exit 2). ``device_budget``: a CUDA device's
total memory, or the CPU's available RAM (``MemAvailable`` of ``/proc/meminfo``).
"""
from __future__ import annotations

import re

from ..errors import HarnessError

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
MEMINFO = "/proc/meminfo"


def parse_budget(text: str | int) -> int:
    """Bytes of ``16GiB``, ``500MB``, ``1.5 GB`` or ``123456`` (module docstring)."""
    m = _BUDGET.match(str(text))
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in UNITS:
        raise HarnessError(f"--memory-budget {text!r} is not a size; give bytes with an optional unit: "
                           "16GiB, 500MB, 1.5GB, 123456 (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
    value = int(float(m.group(1)) * UNITS[unit])
    if value <= 0:
        raise HarnessError(f"--memory-budget {text!r} must be more than 0 bytes")
    return value


def device_budget(device: str) -> tuple[int, str]:
    """``(bytes, where from)``: a CUDA device's total memory, else the CPU's available RAM."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise HarnessError(f"--device {device}: no CUDA GPU here to read the memory of; give --memory-budget")
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        return int(props.total_memory), f"{props.name} total memory"
    try:
        with open(MEMINFO) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available RAM (MemAvailable)"
    except OSError:
        pass
    raise HarnessError(f"cannot read the available memory ({MEMINFO}); give --memory-budget")
