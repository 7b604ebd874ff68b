"""The terminal's ``kernels`` line of a compiled run: what fusion did, and how much kernel time is attributed."""
from __future__ import annotations

from ..core.units import percent, seconds, si


def kernels_line(s: dict) -> str:
    """Kernels and bytes per iteration eager vs compiled, and the share of kernel time attributed
    to modules and to counted work; the largest unattributed kernels by name."""
    f, cov = s["compile"]["fusion"], s.get("coverage") or {}
    saved = f["bytes_saved"] / f["eager_bytes"] if f.get("eager_bytes") else None
    text = (f"{f['compiled_kernels']:g} per iteration ({f['generated_kernels']:g} generated, {f['extern_kernels']:g} "
            f"extern) vs {f['eager_kernels']:g} ops eager · moved {si(f['compiled_bytes'], 'B')} vs "
            f"{si(f['eager_bytes'], 'B')} eager" + ("" if saved is None else f" ({percent(saved)} saved)" if saved >= 0 else f" ({percent(-saved)} more)")
            + f" · kernel time {seconds(cov.get('kernel_time_per_iteration_s'))}: "
            f"{percent(cov.get('share_of_kernel_time_in_modules'))} in modules, "
            f"{percent(cov.get('share_of_kernel_time_counted'))} counted")
    rest = cov.get("unattributed_kernels") or []
    if rest:
        text += " · unattributed: " + ", ".join(f"{u['kernel']} ({percent(u['share'])})" for u in rest[:3])
    return text
