"""Findings: from "achieved vs theoretical" to what to change, with the gain predicted and then measured.

Each run's tables (ops, ops_by_shape, modules, the counter's events) and summary, with the device's
ceilings and the per-op dispatch overhead measured on this machine, give ranked :class:`Finding` records
(README "Findings"). One module per family:

* :mod:`.elementwise` — G4: memory-bound element-wise chains; fusing removes their intermediates;
* :mod:`.fragments` — G3: dispatch-bound calls (work under one op's measured overhead);
* :mod:`.channels` — G1/G2: 1x1 convolutions of unequal widths, grouped convolutions (memory access cost);
* :mod:`.dtype` — float32 matmul/conv work where the bfloat16 ceiling is higher;
* :mod:`.compiled` — an eager inference iteration compiled, predicted whole (the compile prediction);
* :mod:`.layout` — conv2d/pooling shapes faster in channels_last, timed in the run's process;
* :mod:`.underfilled` — conv2d/linear under their ceiling: throughput at 8x the batch, timed likewise;
* :mod:`.decode` — a generate run's decode far below the bandwidth (MBU) and where a step's time goes instead;
* :mod:`.optimizer` — a training step's unfused optimizer against the bytes one fused kernel moves;
* :mod:`.recompute` — the forward ops activation checkpointing re-runs inside backward;
* :mod:`.attention` — attention written out op by op, timed against scaled_dot_product_attention likewise.

:mod:`.model` (the record, ranking, findings.json), :mod:`.context` (what the families read),
:mod:`.overhead` (the measured per-op cost), :mod:`.timing` (the measuring families' timer and time
budget), :mod:`.analyze` (all families over a run),
:mod:`.render` (terminal, report.html, TensorBoard text), :mod:`.verify` (``run --verify-findings``:
A/B verdicts of the top verifiable findings).
"""
from __future__ import annotations

from .model import FAMILIES, SCHEMA_VERSION, Finding, document, from_dict, ranked

__all__ = ["FAMILIES", "SCHEMA_VERSION", "Finding", "document", "from_dict", "ranked"]
