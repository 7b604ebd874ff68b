"""G4: element-wise ops are not negligible — memory-bound chains of them, and what fusing them removes.

A **chain** is a run of element-wise ops (activations, arithmetic, comparisons: the unary and binary
ops of :mod:`harness.count.formulas_pointwise`) consecutive in dispatch order within a phase, each taking
the previous one's output (an input of the previous output's shape); ops that move no bytes (views)
between them do not break it. Unfused, every op reads its inputs from memory and writes its output;
fused (``torch.compile`` does it), the chain reads its own inputs once and writes its last output once:
each intermediate output — written by one op, read by the next — is no longer moved, **2 x its bytes**.

Only **memory-bound** chains count (their bytes at the bandwidth take longer than their calls'
dispatch overhead; shorter ones are G3's, :mod:`.fragments`). The prediction keeps the chain's own
measured rate: saved = chain time x removed bytes / chain bytes (the chain moves bytes at the rate it
was measured at, bytes / time), so the removed bytes are charged at the bandwidth the chain achieved.
One finding per phase (a compile fuses every chain at once), one evidence row per chain.
"""
from __future__ import annotations

from ..core.units import percent, seconds, si
from ..count import formulas_pointwise as pw
from .context import Context, broadcast, itemsize, numel, tensor_shapes
from .model import Finding, per_phase, shares

_BASE = set(pw.UNARY) | set(pw.BINARY) | {"add", "sub", "subtract", "rsub", "addcmul", "addcdiv", "lerp"}
ELEMENTWISE = frozenset(_BASE | {n + "_" for n in _BASE})

COLUMNS = ("phase", "ops", "modules", "calls", "time_s", "bytes", "intermediate_bytes", "removed_bytes",
           "achieved_bytes_per_s", "bandwidth", "saved_s")


#: per-channel affine in inference (running statistics): element-wise too; in training it reduces
INFERENCE_ELEMENTWISE = frozenset({"batch_norm"})


def is_elementwise(op: str, also: frozenset = frozenset()) -> bool:
    name = str(op).rsplit("::", 1)[-1].split(".", 1)[0]
    return name in ELEMENTWISE or name in also


def output_bytes(event: dict) -> int:
    """Bytes of an element-wise op's output: the broadcast of its tensor inputs at the event's dtype."""
    return numel(broadcast(tensor_shapes(event["input_shapes"]))) * itemsize(event.get("dtype"))


def chains(events: list[dict], also: frozenset = frozenset()) -> list[list[dict]]:
    """Chains of two or more element-wise events (module docstring), in dispatch order; ``also``: more op
    names that count as element-wise (``batch_norm`` when nothing trains)."""
    out: list[list[dict]] = []
    cur: list[dict] = []
    for e in events:
        if not is_elementwise(e["op"], also):
            if float(e.get("bytes") or 0) == 0 and cur:  # a view between two links does not break the chain
                continue
            cur = _close(cur, out)
            continue
        prev = cur[-1] if cur else None
        if prev is not None and (prev.get("phase") != e.get("phase") or not _consumes(prev, e)):
            cur = _close(cur, out)
        cur.append(e)
    _close(cur, out)
    return out


def _consumes(prev: dict, e: dict) -> bool:
    out_shape = broadcast(tensor_shapes(prev["input_shapes"]))
    return out_shape in tensor_shapes(e["input_shapes"])


def _close(cur: list[dict], out: list[list[dict]]) -> list[dict]:
    if len(cur) >= 2:
        out.append(cur)
    return []


def chain_row(ctx: Context, chain: list[dict]) -> dict:
    """One chain's evidence: time, bytes, intermediates, the bytes fusion removes and the time they cost."""
    phase = str(chain[0].get("phase") or "")
    time_s = sum(ctx.call_time(phase, e["op"], e["input_shapes"]) for e in chain)
    nbytes = float(sum(float(e["bytes"]) for e in chain))
    inter = float(sum(output_bytes(e) for e in chain[:-1]))
    removed = min(2 * inter, nbytes)
    bw, bw_text = ctx.bandwidth(max(float(e["bytes"]) for e in chain))
    return {"phase": phase, "ops": " → ".join(e["op"].removeprefix("aten::") for e in chain),
            "modules": ", ".join(sorted({str(e.get("module") or "") for e in chain} - {""})) or "(model)",
            "calls": len(chain), "time_s": time_s, "bytes": nbytes, "intermediate_bytes": inter,
            "removed_bytes": removed, "achieved_bytes_per_s": nbytes / time_s if time_s > 0 else None,
            "bandwidth": bw_text, "bandwidth_bytes_per_s": bw,
            "saved_s": time_s * removed / nbytes if nbytes > 0 else 0.0}


def memory_bound(ctx: Context, row: dict) -> bool:
    """Its bytes at the bandwidth take at least its calls' dispatch overhead (else it is a fragment)."""
    bw, overhead = row["bandwidth_bytes_per_s"], ctx.overhead_s
    if not bw or overhead is None:
        return True
    return row["bytes"] / bw >= row["calls"] * overhead


def find(ctx: Context) -> list[Finding]:
    """One finding per phase whose memory-bound chains would save at least MIN_SAVED_SHARE fused."""
    if not len(ctx.events):
        return []
    also = INFERENCE_ELEMENTWISE if ctx.summary.get("workload") != "train" else frozenset()
    found = chains(ctx.events.to_dict("records"), also)
    rows = [r for r in (chain_row(ctx, c) for c in found) if memory_bound(ctx, r)]
    return per_phase(rows, lambda phase, mine: _finding(ctx, phase, mine), key="saved_s")


def _finding(ctx: Context, phase: str, rows: list[dict]) -> Finding:
    time_s = sum(r["time_s"] for r in rows)
    saved = sum(r["saved_s"] for r in rows)
    removed = sum(r["removed_bytes"] for r in rows)
    nbytes = sum(r["bytes"] for r in rows)
    top = rows[0]
    arithmetic = (
        f"{len(rows)} element-wise chains ({sum(r['calls'] for r in rows)} calls) take {seconds(time_s)} and move "
        f"{si(nbytes, 'B')}; fused, each intermediate output is neither written nor read again: removed = "
        f"2 x intermediates = {si(removed, 'B')}; at the chains' measured rate ({si(nbytes / time_s if time_s else 0, 'B/s')}) "
        f"that is {seconds(time_s)} x {si(removed, 'B')} / {si(nbytes, 'B')} = {seconds(saved)} "
        f"= {percent(saved / ctx.profiled_s if ctx.profiled_s else 0)} of the profiled {seconds(ctx.profiled_s)}. "
        f"Largest: {top['ops']} in {top['modules']} (intermediates {si(top['intermediate_bytes'], 'B')}, "
        f"ceiling {top['bandwidth']}).")
    return Finding(
        id=f"elementwise:{phase}", family="elementwise", phase=phase or None,
        title=f"{len(rows)} memory-bound element-wise chain{'s' if len(rows) != 1 else ''} in {phase or 'the iteration'}: fuse them",
        evidence=[{k: r[k] for k in COLUMNS} for r in rows], evidence_columns=COLUMNS,
        arithmetic=arithmetic, change="fuse the element-wise chains: torch.compile (or write them as one op)",
        ab_side=ctx.compile_side(phase), ab=ctx.ab(ctx.compile_side(phase)), needs_code_change=False,
        **shares(time_s, saved, ctx.profiled_s, ctx.latency_s))
