"""How undisturbed a measured span was: did this process get the CPUs it asked for?

A :class:`ContentionProbe` wraps a timed span (the latency loop, the profiled pass)::

    with ContentionProbe(threads=2, device="cpu", iterations=20) as probe:
        ...timed iterations...
    probe.result()   # the `contention` object of summary.json (README: "Disturbed runs")

It snapshots, before and after the span, the process's CPU time and involuntary context
switches (``getrusage(RUSAGE_SELF)``, all threads), the wall clock, the run-queue delay of
every thread of the process (``/proc/self/task/*/schedstat``, field 2: nanoseconds spent
runnable but waiting for a CPU), the machine's ``cpu`` line of ``/proc/stat`` (steal and
busy jiffies) and the 1-minute load average; on CUDA, the other processes holding the GPU.

:func:`judge` applies the documented thresholds to those figures; :func:`merge` folds the
figures of several spans into one object (times summed, every ratio at its worst), so a
run is disturbed when any of its spans was.

Why run-queue delay decides and CPU share does not: measured on a 2-vCPU host (README,
``benchmarks/contention.py --study``), a 2-thread OpenMP loop next to one busy process
gets 2/3 of its 2 CPUs and waits for a CPU 1/3 of the time; but a quiet model with Python
overhead or idle gaps also shows a low CPU share (its workers sleep), while its run-queue
delay stays near zero. Delay is time the scheduler kept a runnable thread off the CPU —
contention by definition. The CPU share rule is the fallback where schedstat is missing.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.units import percent

# Thresholds (justified by measurement in README "Disturbed runs"; keep them in sync).
RUN_DELAY_SHARE_MAX = 0.10  # threads waited for a CPU this share of threads x wall or more
STEAL_SHARE_MAX = 0.10  # the hypervisor took this share of the machine's CPU time or more
CPU_SHARE_MIN = 0.70  # fallback only (no schedstat, CPU device): had less than this share

THRESHOLDS = {
    "run_delay_share_max": RUN_DELAY_SHARE_MAX,
    "steal_share_max": STEAL_SHARE_MAX,
    "cpu_share_min": CPU_SHARE_MIN,
}

# /proc/stat's cpu line: user nice system idle iowait irq softirq steal [guest guest_nice];
# guest time is already inside user, so the total is the first 8 fields.
_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def parse_proc_stat(text: str) -> dict[str, int] | None:
    """Jiffies of the aggregate ``cpu`` line of /proc/stat, by field name.

    ``steal`` is absent when the kernel reports fewer than 8 fields (kernels before 2.6.11);
    ``None`` when there is no ``cpu`` line.
    """
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            values = [int(v) for v in parts[1:len(_STAT_FIELDS) + 1]]
            return dict(zip(_STAT_FIELDS, values))
    return None


def stat_shares(before: dict | None, after: dict | None, own_cpu_s: float,
                clock_ticks: int) -> tuple[float | None, float | None]:
    """``(steal_share, others_cpu_share)`` over a span, from two parsed /proc/stat lines.

    steal_share = Δsteal / Δ(all 8 fields); others_cpu_share = (Δbusy − own_cpu_s × clock_ticks)
    / Δ(all), busy = all − idle − iowait − steal, clamped at 0: the machine's CPU time used by
    everyone but us, as a share of all its CPUs. Either is None when unknown.
    """
    if not before or not after:
        return None, None
    delta = {k: after[k] - before[k] for k in after if k in before}
    total = sum(delta.values())
    if total <= 0:
        return None, None
    steal = delta["steal"] / total if "steal" in delta else None
    busy = total - delta["idle"] - delta.get("iowait", 0) - delta.get("steal", 0)
    others = max(0.0, busy - own_cpu_s * clock_ticks) / total
    return steal, others


def run_delays_ns(task_dir: str | os.PathLike = "/proc/self/task") -> dict[str, int] | None:
    """Run-queue delay (ns runnable but waiting for a CPU) of each thread, by thread id.

    schedstat's second field; None where the kernel has no schedstat (then the CPU share
    rule decides).
    """
    out: dict[str, int] = {}
    try:
        tids = os.listdir(task_dir)
    except OSError:
        return None
    for tid in tids:
        try:
            out[tid] = int(Path(task_dir, tid, "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # thread gone between listdir and read, or no schedstat
    return out or None


def _read_stat() -> dict[str, int] | None:
    try:
        return parse_proc_stat(Path("/proc/stat").read_text())
    except OSError:
        return None


def _loadavg_1m() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def gpu_other_processes(device: str) -> int | None:
    """Other processes holding a CUDA device (best effort): NVML through pynvml, else nvidia-smi.

    Counts compute processes whose pid is not ours. None on CPU, when neither tool is present,
    on any error, or when our own pid is not in the list (a PID namespace hides who is who).
    """
    if not str(device).startswith("cuda"):
        return None
    try:
        pids = _gpu_pids_nvml(device)
    except Exception:  # noqa: BLE001 - best effort by contract, never an error
        pids = None
    if pids is None:
        pids = _gpu_pids_smi(device)
    if pids is None or os.getpid() not in pids:
        return None
    return len([p for p in pids if p != os.getpid()])


def _cuda_index(device: str) -> int:
    from ..core.devices import cuda_index

    return cuda_index(device)


def _gpu_pids_nvml(device: str) -> set[int] | None:
    try:
        import pynvml
    except ImportError:
        return None
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(_cuda_index(device))
    return {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}


def _gpu_pids_smi(device: str) -> set[int] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, "--query-compute-apps=pid", "--format=csv,noheader", "-i",
                              str(_cuda_index(device))], capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            return None
        return {int(line) for line in res.stdout.split() if line.strip().isdigit()}
    except Exception:  # noqa: BLE001 - best effort by contract
        return None


@dataclass(frozen=True)
class Snapshot:
    """Counters at one instant; a probe takes one at enter and one at exit."""

    wall_s: float
    cpu_s: float
    involuntary_switches: int
    run_delays_ns: dict[str, int] | None
    stat: dict[str, int] | None
    loadavg_1m: float | None
    gpu_others: int | None

    @classmethod
    def take(cls, device: str) -> "Snapshot":
        gpu = gpu_other_processes(device)  # slow (a subprocess): outside the clocked part
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return cls(wall_s=time.perf_counter(), cpu_s=ru.ru_utime + ru.ru_stime,
                   involuntary_switches=ru.ru_nivcsw, run_delays_ns=run_delays_ns(),
                   stat=_read_stat(), loadavg_1m=_loadavg_1m(), gpu_others=gpu)


def run_delay_between(before: dict[str, int] | None, after: dict[str, int] | None) -> float | None:
    """Seconds all threads waited for a CPU between two snapshots.

    Threads born during the span count from 0; a thread that ended during the span is lost
    (an undercount, never an overcount).
    """
    if before is None or after is None:
        return None
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) * 1e-9


def _ratio(num: float | None, den: float) -> float | None:
    return None if num is None or den <= 0 else num / den


def figures_between(a: Snapshot, b: Snapshot, *, threads: int, device: str,
                    iterations: int | None) -> dict:
    """The measured figures of a span (every key of :meth:`ContentionProbe.result` but the verdict).

    cpu_share = cpu_s / (wall_s × threads); run_delay_share = run_delay_s / (wall_s × threads);
    involuntary_switches_per_iter = involuntary_switches / iterations.
    """
    wall = b.wall_s - a.wall_s
    cpu = b.cpu_s - a.cpu_s
    switches = b.involuntary_switches - a.involuntary_switches
    delay = run_delay_between(a.run_delays_ns, b.run_delays_ns)
    steal, others = stat_shares(a.stat, b.stat, cpu, os.sysconf("SC_CLK_TCK"))
    gpus = [g for g in (a.gpu_others, b.gpu_others) if g is not None]
    return {
        "device": device,
        "threads": threads,
        "iterations": iterations,
        "spans": 1,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_share": _ratio(cpu, wall * threads),
        "run_delay_s": delay,
        "run_delay_share": _ratio(delay, wall * threads),
        "involuntary_switches": switches,
        "involuntary_switches_per_iter": _ratio(switches, iterations or 0),
        "steal_share": steal,
        "others_cpu_share": others,
        "loadavg_1m_before": a.loadavg_1m,
        "loadavg_1m_after": b.loadavg_1m,
        "gpu_other_processes": max(gpus) if gpus else None,
    }


def judge(figures: dict) -> tuple[bool, str]:
    """``(disturbed, reason)``: the rules below, any of which marks the span disturbed.

    1. run_delay_share >= RUN_DELAY_SHARE_MAX (threads runnable but kept off the CPU);
    2. steal_share >= STEAL_SHARE_MAX (the hypervisor ran someone else on our vCPUs);
    3. only when run_delay_share is unknown (no schedstat) and the device is the CPU:
       cpu_share < CPU_SHARE_MIN.
    Warn-only figures (loadavg, others_cpu_share, switches, gpu_other_processes) never decide:
    the load includes us, and a neighbour on other CPUs need not slow us down.
    The reason names every rule that fired, with the figure and its limit; "" when quiet.
    """
    reasons = []
    threads = figures.get("threads")
    cpus = f"its {threads} CPU{'s' if threads != 1 else ''}"
    delay, cpu_share, steal = (figures.get(k) for k in ("run_delay_share", "cpu_share", "steal_share"))
    had = f"; the process had {percent(cpu_share, 0)} of {cpus}" if cpu_share is not None else ""
    if delay is not None and delay >= RUN_DELAY_SHARE_MAX:
        reasons.append(f"its threads waited for a CPU {percent(delay, 0)} of the time "
                       f"(limit {percent(RUN_DELAY_SHARE_MAX, 0)}){had}")
    if steal is not None and steal >= STEAL_SHARE_MAX:
        reasons.append(f"the hypervisor took {percent(steal, 0)} of the machine's CPU time "
                       f"(steal, limit {percent(STEAL_SHARE_MAX, 0)})")
    if (delay is None and str(figures.get("device", "cpu")).startswith("cpu")
            and cpu_share is not None and cpu_share < CPU_SHARE_MIN):
        reasons.append(f"the process had {percent(cpu_share, 0)} of {cpus} "
                       f"(limit {percent(CPU_SHARE_MIN, 0)}; no run-queue delay on this kernel)")
    return bool(reasons), "; ".join(reasons)


def verdict(figures: dict) -> dict:
    """``figures`` plus ``disturbed``, ``reason`` and ``thresholds``."""
    disturbed, reason = judge(figures)
    return {**figures, "disturbed": disturbed, "reason": reason, "thresholds": dict(THRESHOLDS)}


class ContentionProbe:
    """Context manager measuring how undisturbed a span was; see the module docstring."""

    def __init__(self, threads: int, device: str = "cpu", iterations: int | None = None):
        self.threads = max(1, int(threads))
        self.device = str(device)
        self.iterations = iterations
        self._before: Snapshot | None = None
        self._after: Snapshot | None = None

    def __enter__(self) -> "ContentionProbe":
        self._before = Snapshot.take(self.device)
        self._after = None
        return self

    def __exit__(self, *exc) -> None:
        self._after = Snapshot.take(self.device)

    def result(self) -> dict:
        """The ``contention`` object of summary.json (keys and units: README "Disturbed runs")."""
        if self._before is None or self._after is None:
            raise RuntimeError("ContentionProbe.result() before the span ended")
        return verdict(figures_between(self._before, self._after, threads=self.threads,
                                       device=self.device, iterations=self.iterations))


_SUMMED = ("wall_s", "cpu_s", "run_delay_s", "involuntary_switches", "iterations", "spans")
_HIGHEST = ("threads", "run_delay_share", "involuntary_switches_per_iter", "steal_share",
            "others_cpu_share", "loadavg_1m_before", "loadavg_1m_after", "gpu_other_processes")


def _fold(values: list, how) -> object:
    known = [v for v in values if v is not None]
    return how(known) if known else None


def merge(results: list[dict]) -> dict:
    """One ``contention`` object for several probed spans (e.g. timed loop + profiled pass).

    Times, switches, iterations and span counts are summed; every share and rate keeps its
    worst value (cpu_share its lowest, the others their highest), so the merged object is
    disturbed exactly when one of the spans was. None where no span knew the figure.
    """
    if not results:
        raise ValueError("merge() needs at least one contention result")
    out = {}
    for key in dict.fromkeys(k for r in results for k in r):  # every key, in first-seen order
        values = [r.get(key) for r in results]
        if key in _SUMMED:
            out[key] = _fold(values, sum)
        elif key in _HIGHEST:
            out[key] = _fold(values, max)
        elif key == "cpu_share":
            out[key] = _fold(values, min)
        elif key == "device":
            out[key] = values[0]
    return verdict(out)
