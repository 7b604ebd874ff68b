"""The job's summary.json from every rank's own summary (pure: no I/O).

Per rank (``ranks``): ``rank, local_rank, host, device, device_name, threads, latency_s
{p50, p90}, flops, achieved_flop_per_s, peak_flop_per_s, utilization, comm_time_s,
comm_share, trace_file``. For the job as a whole, on top of rank 0's keys:

    flops, macs, other_flops, bytes  = sums over ranks (every replica's work)
    latency_s                        = the slowest rank's (largest p50) statistics
    throughput_samples_per_s         = sum of rank batch sizes / slowest p50
    achieved_flop_per_s              = sum of rank flops / slowest p50
    peak_flop_per_s                  = sum of rank peaks (None when one is unknown)
    utilization                      = achieved_flop_per_s / peak_flop_per_s
    imbalance                        = slowest p50 / fastest p50
    comm_time_s, comm_share          = sum of rank collective time / sum of rank iteration time
    peak_memory_bytes                = the largest rank's
    memory                           = the largest rank's measured memory, with every rank's peak and the
                                       imbalance (harness.memory.measured_ranks)
"""
from __future__ import annotations

import copy

from ..core import schema
from ..core.samples import rate, ratio

SUMMED = ("macs", "flops", "other_flops", "bytes")


def rank_row(rank: int, local_rank: int, host: str, s: dict, comm: dict) -> dict:
    lat = s.get("latency_s") or {}
    return {"rank": rank, "local_rank": local_rank, "host": host, "device": s.get("device"),
            "device_name": s.get("device_name"), "threads": s.get("threads"),
            "latency_s": {"p50": lat.get("p50"), "p90": lat.get("p90")}, "flops": s.get("flops"),
            "achieved_flop_per_s": s.get("achieved_flop_per_s"), "peak_flop_per_s": s.get("peak_flop_per_s"),
            "utilization": s.get("utilization"), "comm_time_s": comm.get("comm_time_s"),
            "comm_share": comm.get("comm_share"), "memory_peak_bytes": (s.get("memory") or {}).get("peak_bytes"),
            "trace_file": (s.get("trace_files") or [None])[0]}


def _sum_or_none(values) -> float | None:
    values = list(values)
    return None if not values or any(v is None for v in values) else sum(values)


def _bandwidth(rows: list[dict], summaries: list[dict]) -> float | None:
    """GPUs each have their memory: summed. CPU ranks on one host share it: one per host."""
    per_host: dict[str, float | None] = {}
    total = 0.0
    for row, s in zip(rows, summaries):
        bw = s.get("mem_bandwidth_bytes_per_s")
        if bw is None:
            return None
        if s.get("device") == "cuda":
            total += bw
        else:
            per_host[row["host"]] = bw
    return total + sum(per_host.values())


def job_summary(summaries: list[dict], comms: list[dict], hosts: list[str], local_ranks: list[int], *,
                backend: str) -> dict:
    """The merged summary; ``summaries[k]`` is rank k's summary dict."""
    rows = [rank_row(k, lr, h, s, c) for k, (s, c, h, lr) in enumerate(zip(summaries, comms, hosts, local_ranks))]
    p50 = [r["latency_s"]["p50"] for r in rows]
    slowest = max(range(len(rows)), key=lambda k: p50[k])
    fastest = min(range(len(rows)), key=lambda k: p50[k])
    job = copy.deepcopy(summaries[0])
    for key in SUMMED:
        job[key] = sum(int(s.get(key) or 0) for s in summaries)
    t = p50[slowest]
    peak = _sum_or_none(s.get("peak_flop_per_s") for s in summaries)
    achieved = rate(job["flops"], t)
    comm_time = _sum_or_none(c.get("comm_time_s") for c in comms)
    iter_time = _sum_or_none(c.get("iteration_time_s") for c in comms)
    bandwidth = _bandwidth(rows, summaries)
    job.update({
        "world_size": len(rows), "backend": backend, "ranks": rows, "slowest_rank": slowest, "fastest_rank": fastest,
        "imbalance": t / p50[fastest] if p50[fastest] else None,
        "comm_time_s": comm_time / len(rows) if comm_time is not None else None,
        "comm_share": comm_time / iter_time if comm_time is not None and iter_time else None,
        "latency_s": copy.deepcopy(summaries[slowest]["latency_s"]),
        "throughput_samples_per_s": sum(s.get("batch_size") or 0 for s in summaries) / t if t else None,
        "achieved_flop_per_s": achieved, "peak_flop_per_s": peak,
        "utilization": ratio(achieved, peak),
        "mem_bandwidth_bytes_per_s": bandwidth,
        "achieved_bytes_per_s": rate(job["bytes"], t),
        "peak_memory_bytes": max((s.get("peak_memory_bytes") or 0) for s in summaries),
        "trace_files": [r["trace_file"] for r in rows if r["trace_file"]],
        "trace_bytes": _sum_or_none(s.get("trace_bytes") for s in summaries),
        "warnings": [f"rank {k}: {w}" for k, s in enumerate(summaries) for w in s.get("warnings") or []],
        "peak_exceeded": [{**x, "rank": k} for k, s in enumerate(summaries) for x in s.get("peak_exceeded") or []],
    })
    from ..memory.measured_ranks import merge as merge_memory

    memory = merge_memory(summaries)
    if memory is not None:
        job["memory"] = memory
    job["config_key"] = job_config_key(summaries[0], len(rows), backend)
    return job


def job_config_key(s: dict, world_size: int, backend: str) -> str:
    """A rank's config key plus ``world_size`` and ``backend`` (a 2-rank job never groups with 1 process)."""
    extra = {k: v for k, v in schema.parse_config_key(s["config_key"]).items()
             if k not in ("scenario", "batch_size", "dtype", "device", "threads", "tag")}
    extra.update(world_size=world_size, backend=backend)
    return schema.config_key(s["scenario"], s["batch_size"], s["dtype"], s["device"], s["threads"], s.get("tag"),
                             extra=extra)
