"""Human-readable numbers with SI prefixes (1 G = 1e9, never 2**30)."""
from __future__ import annotations

import math

_PREFIXES = ["", "K", "M", "G", "T", "P", "E", "Z", "Y"]


def si(value: float | int | None, unit: str = "", digits: int = 3) -> str:
    """Format ``value`` with an SI prefix: ``si(30.94e9, 'FLOP') -> '30.9 GFLOP'``.

    Prefixes go up to Y (1e24). ``None`` and NaN print as ``n/a``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    v = float(value)
    if v == 0:
        return f"0 {unit}".rstrip()
    exp = min(int(math.floor(math.log10(abs(v)) / 3)), len(_PREFIXES) - 1)
    exp = max(exp, 0)
    scaled = v / 10 ** (3 * exp)
    # keep `digits` significant digits without scientific notation
    decimals = max(digits - 1 - int(math.floor(math.log10(abs(scaled)))), 0) if scaled else 0
    return f"{scaled:.{decimals}f} {_PREFIXES[exp]}{unit}".rstrip()


def seconds(value: float | None) -> str:
    """Format a duration in s, ms, us or ns."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    for scale, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
        if abs(value) >= scale or name == "ns":
            return f"{value / scale:.3g} {name}"
    return f"{value} s"


def percent(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.{digits}f}%"
