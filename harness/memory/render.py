"""A memory forecast as terminal lines (``count --memory``, ``plan``, the run's out-of-memory error)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.units import si

if TYPE_CHECKING:
    from .result import MemoryForecast

TOP_SHOWN = 5


def forecast_lines(f: MemoryForecast, title: str = "memory") -> str:
    """The peak, its phase, the split by category and the top owners at the peak."""
    what = f"{f.workload}, batch {f.batch_size}, {f.dtype}"
    if f.options.get("prompt_len") is not None:
        what += f", prompt {f.options['prompt_len']} + {f.options.get('new_tokens')} new tokens"
    lines = [f"{title} (forecast on meta for {f.device}; {what}): peak {si(f.peak_bytes, 'B')} "
             f"({f.peak_bytes:,} B) in {f.at_phase}",
             f"  at the peak    {f.split_text()}"]
    if f.kv_cache_bytes is not None:
        lines.append(f"  KV cache       {si(f.kv_cache_bytes, 'B')} after the last step")
    if f.by_module_at_peak:
        top = ", ".join(f"{m['module']} {si(m['bytes'], 'B')}" for m in f.by_module_at_peak[:TOP_SHOWN])
        lines.append(f"  top modules    {top}")
    return "\n".join(lines)
