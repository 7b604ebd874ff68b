"""Where the hardware module keeps what it computes once: the compiled C kernels
(:mod:`.kernels`, ``kernels/``) and the calibrations (:mod:`.calibration`, ``calibration/``)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """``$HARNESS_CACHE_DIR`` or ``~/.cache/harness``."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "harness"
