"""``python -m harness run SCENARIO``: the main job, with a short readable summary."""
from __future__ import annotations

import argparse
import math
import shlex
import sys

from ..errors import HarnessError
from ..core.units import percent, seconds, si

# The seeds' key_averages().table(sort_by=...) names, mapped to ops.csv columns.
SORT_KEYS = {
    "self_time": "self_time_s",
    "self_cpu_time_total": "self_cpu_time_total_s",
    "cpu_time_total": "cpu_time_total_s",
    "self_cpu_memory_usage": "self_cpu_memory_usage_bytes",
    "cpu_memory_usage": "cpu_memory_usage_bytes",
    "self_cuda_time_total": "self_device_time_total_s",
    "cuda_time_total": "device_time_total_s",
    "self_device_time_total": "self_device_time_total_s",
    "device_time_total": "device_time_total_s",
    "flops": "flops",
    "count": "calls",
    "calls": "calls",
}


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options every verb that runs a scenario shares."""
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the scenario's, else 1)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the scenario's, else cpu)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: the scenario's, else float32)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up iterations before timing (default 5)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations, each synchronized (default 20)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--logdir", default="logs", help="where runs are written (default: logs)")
    p.add_argument("--tag", default=None, help="a label kept in summary.json and history.csv")
    p.add_argument("--workload", default=None, metavar="NAME",
                   help="how the model is driven: forward (default: the scenario's `workload`, else forward)")
    p.add_argument("--prompt-len", type=int, default=None, help="generate: prompt tokens (default: the scenario's)")
    p.add_argument("--new-tokens", type=int, default=None, help="generate: tokens to generate (default: the scenario's)")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="measure, profile and count a scenario; write a run directory",
                       description="Measure un-profiled latency, profile with torch.profiler, count the work, "
                                   "join them per operator and module, and write LOGDIR/<scenario>/<run_id>/.")
    p.add_argument("scenario", help="a built-in scenario name (see `list`) or a path to a scenario .py file")
    add_run_options(p)
    p.add_argument("--top", type=int, default=10, help="operators to show (default 10; 0 hides the table)")
    p.add_argument("--sort-by", default="self_time", choices=sorted(SORT_KEYS), metavar="KEY",
                   help="operator table order: self_time (default: self time incl. the kernels an op dispatches), "
                        "self_cpu_time_total, cpu_time_total, self_cpu_memory_usage, cpu_memory_usage, "
                        "device_time_total, self_device_time_total, flops, calls")
    p.add_argument("--active", type=int, default=3, help="forwards recorded in the trace (default 3)")
    p.add_argument("--gzip", action="store_true", help="write the trace as .pt.trace.json.gz")
    p.add_argument("--with-stack", action="store_true", help="record Python stacks in the trace (bigger)")
    p.add_argument("--with-modules", action="store_true", help="record the module hierarchy in the trace")
    p.add_argument("--json", action="store_true", help="print summary.json on stdout (progress goes to stderr)")
    from ..distributed.command import add_options as add_distributed_options

    add_distributed_options(p)  # --nproc-per-node, --backend, --rank-timeout-s
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise HarnessError(f"--top must be 0 or more, got {args.top}")
    if args.active < 1:
        raise HarnessError(f"--active must be at least 1, got {args.active}")
    if args.batch_size is not None and args.batch_size < 1:
        raise HarnessError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.iters is not None and args.iters < 1:
        raise HarnessError(f"--iters must be at least 1, got {args.iters}")
    if args.warmup is not None and args.warmup < 0:
        raise HarnessError(f"--warmup must be at least 0, got {args.warmup}")
    from ..pipeline.profiling import ProfileConfig  # torch is imported only once the arguments are valid
    from ..pipeline.run import run_scenario

    cfg = ProfileConfig(active=args.active, gzip=args.gzip, with_stack=args.with_stack, with_modules=args.with_modules)
    from ..distributed import command as distributed

    if distributed.wanted(args):  # several ranks: launched here, or this process is a torchrun rank
        return distributed.main(args, cfg)
    interactive = sys.stderr.isatty() and not args.json

    def progress(stage: str) -> None:
        if interactive:
            print(f"\r\033[K{stage}…", end="", file=sys.stderr, flush=True)

    run = run_scenario(args.scenario, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                       warmup=args.warmup, iters=args.iters, logdir=args.logdir, tag=args.tag,
                       threads=args.threads, workload=args.workload, workload_options=workload_options(args),
                       profile_config=cfg, progress=progress)
    if interactive:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    if args.json:
        from ..core.fsio import to_json

        sys.stdout.write(to_json(run.summary))
        return 0
    print(render_summary(run.summary))
    if args.top:
        print()
        print(render_top_ops(run.ops, run.summary, top=args.top, sort_by=args.sort_by))
    print()
    print(f"inspect:  tensorboard --logdir {shlex.quote(str(args.logdir))}")
    print(f"          open {shlex.quote(str(run.path))}/report.html   (works offline)")
    return 0


def workload_options(args: argparse.Namespace) -> dict:
    """The workload's own options given on the command line (unset ones are left to the scenario)."""
    names = ("prompt_len", "new_tokens")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def render_summary(s: dict) -> str:
    lat = s["latency_s"]
    cov = s.get("coverage") or {}
    lines = [f"{s['scenario']} · batch {s['batch_size']} · {s['dtype']} · {s['device']} ({s['device_name']}, {s['threads']} threads)"]
    row = lambda k, v: lines.append(f"  {k:<14}{v}")  # noqa: E731
    row("params", f"{si(s['params'])} ({s['params']:,})")
    row("work", f"{si(s['macs'], 'MAC')} = {si(s['flops'], 'FLOP')}   + {si(s['other_flops'], 'FLOP')} other"
                f"   · {si(s['bytes'], 'B')} moved")
    row("latency", f"p50 {seconds(lat['p50'])}   p90 {seconds(lat['p90'])}   min {seconds(lat['min'])}"
                   f"   std {seconds(lat['std'])}   ({lat['n']} iters after {s['warmup']} warm-up, un-profiled)")
    peak = s.get("peak_flop_per_s")
    peak_txt = f"{si(peak, 'FLOP/s')} ({s.get('peak_source')})" if peak else "unknown peak"
    row("achieved", f"{si(s['achieved_flop_per_s'], 'FLOP/s')} of {peak_txt}"
                    f"  → utilization {percent(s.get('utilization'))}"
                    + ("   (measure the peak: python -m harness calibrate)" if s.get("peak_source") == "derived" else ""))
    if s.get("mem_bandwidth_bytes_per_s"):
        ai = s.get("arithmetic_intensity")
        row("bandwidth", f"{si(s.get('achieved_bytes_per_s'), 'B/s')} of {si(s['mem_bandwidth_bytes_per_s'], 'B/s')}"
                         + (f"   · intensity {ai:.1f} FLOP/B" if ai else ""))
    act = s.get("peak_activation_bytes")
    row("peak memory", f"{si(s['peak_memory_bytes'], 'B')}" + (
        f" (weights {si(s.get('weights_bytes'), 'B')} + activations {si(act, 'B')})" if s["device"] == "cpu" and act is not None else ""))
    prof = s.get("profiled") or {}
    row("profiled", f"{prof.get('steps')} forwards, {seconds(prof.get('time_per_forward_s'))} each in ops and labels"
                    f"   · coverage {percent(cov.get('share_of_ops'))} of ops, {percent(cov.get('share_of_time'))} of op time")
    if cov.get("top_uncounted_by_time"):
        names = ", ".join(f"{u['op']} ({seconds(u['time_s'])})" for u in cov["top_uncounted_by_time"][:3])
        row("uncounted", names)
    row("files", f"{s.get('path')}/")
    return "\n".join(lines)


def render_top_ops(ops, s: dict, *, top: int, sort_by: str) -> str:
    col = SORT_KEYS[sort_by]
    if col not in ops.columns:
        raise HarnessError(f"--sort-by {sort_by} is not available on {s['device']} runs")
    df = ops.sort_values(col, ascending=False, kind="stable").head(top)
    cuda = s["device"] == "cuda"
    head = ["operator", "calls", "time", "share", "self " + ("CUDA" if cuda else "CPU"), "total", "FLOP",
            "FLOP/s", "util", "self mem"]
    rows = []
    for _, r in df.iterrows():
        self_raw = r.get("self_device_time_total_s") if cuda else r.get("self_cpu_time_total_s")
        total_raw = r.get("device_time_total_s") if cuda else r.get("cpu_time_total_s")
        mem = r.get("self_cpu_memory_usage_bytes")
        rows.append([
            str(r["name"])[:44],
            _num(r.get("calls"), "{:.0f}"),
            seconds(r["self_time_s"]),
            percent(r.get("time_share")),
            seconds(self_raw) if _ok(self_raw) else "",
            seconds(total_raw) if _ok(total_raw) else "",
            si(r["flops"]) if r["flops"] else ("uncounted" if not r.get("counted", True) and r["kind"] == "op" else ""),
            si(r.get("achieved_flop_per_s")) if _ok(r.get("achieved_flop_per_s")) and r["flops"] else "",
            percent(r.get("utilization")) if _ok(r.get("utilization")) and r["flops"] else "",
            si(mem, "B") if _ok(mem) and mem else "",
        ])
    widths = [max(len(h), *(len(x[i]) for x in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    out = [f"Top {len(rows)} operators by {sort_by.replace('_', ' ')} (per forward; time = self time incl. kernels the op dispatched)",
           fmt(head), fmt(["-" * w for w in widths])]
    out += [fmt(r) for r in rows]
    return "\n".join(out)


def _ok(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _num(v, f: str) -> str:
    return f.format(v) if _ok(v) else ""
