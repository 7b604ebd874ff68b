"""Measure this CPU's peak: each dtype's fastest path, cache and memory bytes/s, sustained clock.

How (``python -m harness calibrate``; a few seconds on 2 cores):

* The C kernels (:mod:`.kernels`) are compiled once with the system C compiler
  (``$CC``, else ``cc``/``gcc``/``clang``; ``-O2 -march=native -ffp-contract=fast``) into
  the cache directory and loaded with :mod:`ctypes`. ctypes releases the GIL, so one
  Python thread per requested thread runs the kernel at the same time; each call
  stamps its own start/end with ``CLOCK_MONOTONIC`` and the rate is the total work
  over the span from the first start to the last end.
* **FLOP/s per path**: fp32/fp64 ``fma`` (12 independent vector chains ``c = c*m + a``, as
  wide as the target allows), ``avx512_bf16`` (``vdpbf16ps``), ``avx512_fp16``, ``vnni``
  int8 (``vpdpbusd``) and ``amx_bf16``/``amx_int8``/``amx_fp16`` (2x2 blocks of tile dot
  products, after Linux granted tile data with ``arch_prctl(ARCH_REQ_XCOMP_PERM,
  XFEATURE_XTILEDATA)``), plus a 1024-cubed ``torch.mm`` for native bf16/fp16 (oneDNN uses
  AMX where present). Per dtype the peak is the best of the measured paths, recorded only
  when the CPU's **fastest** path (:attr:`harness.hardware.cpu.Throughput.paths`) was among
  them; otherwise ``skipped[dtype]`` names the path and why, and runs keep the derived
  figure. int8 lands in ``int_op_per_s`` (integer ops, not FLOP).
* **clock**: a chain of dependent register-register integer adds (latency 1 cycle on
  x86 and Arm cores), run on all threads at once (at most one per usable CPU): adds per
  second = sustained Hz. Repeats are interleaved (clock, fp32, fp64, ..., again) so that
  on a shared machine whose clock drifts all figures come from the same quiet moments;
  FLOP per cycle per thread is one thread's FLOP/s over one thread's clock, paired within
  each repeat, median over repeats: the core's figure (≈ 32 for AVX2 with two FMA units),
  which vCPUs time-sliced on a shared host do not distort.
* **caches**: per level in ``/sys`` (L1d, L2, L3), a read and a copy loop on every thread
  over a private buffer of :data:`CACHE_FRACTION` × the level's capacity for the run
  (:func:`harness.hardware.formulas.cache_capacity_bytes`) ÷ threads.
* **bytes/s** (DRAM): ``dst.copy_(src)`` (counted as 2 × size, the STREAM convention) and
  ``src.sum()`` (1 × size) on torch tensors ≥ 4 × the last-level cache; the larger
  of the two is the bandwidth ceiling.
* Every figure is the best of a few short repeats: a peak, not a typical value.
* Reference only: a 1024³ fp32 ``torch.mm`` (MKL/oneDNN sgemm). It is *not* the peak.

Without a C compiler the FLOP/s and caches are not measured (the derived figures stay in
use) and only the DRAM bandwidth is measured; the result says so.

The result is cached as JSON (atomic write) in ``$HARNESS_CACHE_DIR`` or
``~/.cache/harness`` under ``calibration/``, one file per CPU (model name +
family/model/stepping) and thread count; :func:`harness.hardware.peak_for` uses it
when present.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import statistics
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from .cache import cache_dir
from .cpu import cpu_id, cpu_info, throughput_from_flags
from .formulas import cache_capacity_bytes
from .kernels import ADDS_PER_ITER, KERNEL_SOURCE, NACC, build_kernel

__all__ = ["KERNEL_SOURCE", "build_kernel", "cache_dir", "calibrate", "calibration_path", "load_calibration",
           "measure"]

SCHEMA = 2  # 2: fastest path per dtype, int_op_per_s, cache levels (schema 1 files are ignored)
CACHE_FRACTION = 0.5  # of a cache level's capacity: the working set of the cache-bandwidth loops
AMX_FLOP_PER_ITER = 4 * 16 * 16 * 32 * 2        # 4 tdpbf16ps of 16x16 outputs, K = 32: 65,536 FLOP
AMX_INT8_OPS_PER_ITER = 4 * 16 * 16 * 64 * 2    # 4 tdpbusd, K = 64: 131,072 int ops



def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-")[:60] or "cpu"


def calibration_path(threads: int, info: dict | None = None) -> Path:
    info = info or cpu_info()
    ident = cpu_id(info)
    h = hashlib.sha256(ident.encode()).hexdigest()[:8]
    return cache_dir() / "calibration" / f"{_slug(str(info.get('model_name')))}-{h}-t{threads}.json"


def _default_threads() -> int:
    import torch

    return torch.get_num_threads()


def load_calibration(threads: int | None = None, info: dict | None = None) -> dict | None:
    """The cached calibration for this CPU and thread count, or ``None``."""
    threads = threads or _default_threads()
    info = info or cpu_info()
    path = calibration_path(threads, info)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    key = data.get("key", {})
    if data.get("schema") != SCHEMA or key.get("cpu") != cpu_id(info) or key.get("threads") != threads:
        return None
    data["path"] = str(path)
    return data


# --------------------------------------------------------------------------- measuring

def _parallel(fn, iters: int, threads: int) -> tuple[float, list[float]]:
    """Run ``fn(iters, stamps)`` on ``threads`` Python threads at once (ctypes drops the GIL).

    Returns (span from first start to last end, per-thread durations), in seconds.
    """
    stamps = [(ctypes.c_int64 * 2)() for _ in range(threads)]
    barrier = threading.Barrier(threads)

    def work(k: int) -> None:
        barrier.wait()
        fn(iters, stamps[k])

    ts = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    starts = [s[0] for s in stamps]
    ends = [s[1] for s in stamps]
    return (max(ends) - min(starts)) / 1e9, [(e - s) / 1e9 for s, e in zip(starts, ends)]


def _sized_iters(fn, target_s: float, start: int = 20_000) -> int:
    """Iterations that take about ``target_s`` on one thread (from short pilot runs)."""
    iters = start
    while True:
        stamp = (ctypes.c_int64 * 2)()
        fn(iters, stamp)
        dt = (stamp[1] - stamp[0]) / 1e9
        if dt > 0.01 or iters > 1 << 34:
            return max(1, int(iters * target_s / max(dt, 1e-9)))
        iters *= 8


def _amx_permission(lib) -> str | None:
    """Ask Linux for AMX tile data (once per process); ``None`` when granted, else why not."""
    err = lib.harness_amx_request()
    if err == 0:
        return None
    if err < 0:
        return "the kernel was built without AMX (compiler target lacks amx-tile)"
    return (f"arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) failed: {os.strerror(err)} "
            "(Linux >= 5.16 grants it; a small sigaltstack also refuses it)")


def _kernel_paths(lib) -> tuple[list[tuple[str, str, object, int]], dict[str, str]]:
    """Every timed path this build has: ``[(dtype, path, fn, ops per iteration)]`` (ops are FLOP,
    integer ops for int8), and ``{path: why it is missing}`` for the paths it lacks."""
    vbytes = lib.harness_vector_bytes()
    kernels = [("float32", "fma", lib.harness_fma_f32, NACC * (vbytes // 4) * 2),
               ("float64", "fma", lib.harness_fma_f64, NACC * (vbytes // 8) * 2)]
    missing: dict[str, str] = {}
    target = "the compiler's -march=native target has no {} instructions"
    # vdpbf16ps / vfmadd*ph on 512 bits: 64 FLOP per instruction; vpdpbusd: 2 ops per byte lane
    for ok, dt, path, fn, per in ((lib.harness_has_bf16(), "bfloat16", "avx512_bf16", lib.harness_dp_bf16, 64),
                                  (lib.harness_has_fp16(), "float16", "avx512_fp16", lib.harness_fma_f16, 64),
                                  (lib.harness_vnni_bytes(), "int8", "vnni", lib.harness_vnni_int8,
                                   2 * lib.harness_vnni_bytes())):
        if ok:
            kernels.append((dt, path, fn, NACC * per))
        else:
            missing[path] = target.format(path)
    amx = [(lib.harness_has_amx_bf16(), "bfloat16", "amx_bf16", lib.harness_amx_bf16, AMX_FLOP_PER_ITER),
           (lib.harness_has_amx_int8(), "int8", "amx_int8", lib.harness_amx_int8, AMX_INT8_OPS_PER_ITER),
           (lib.harness_has_amx_fp16(), "float16", "amx_fp16", lib.harness_amx_fp16, AMX_FLOP_PER_ITER)]
    denied = _amx_permission(lib) if any(ok for ok, *_ in amx) else None
    for ok, dt, path, fn, per in amx:
        if ok and denied is None:
            kernels.append((dt, path, fn, per))
        else:
            missing[path] = denied if ok else target.format(path)
    return kernels, missing


def _clock_threads(threads: int, info: dict) -> int:
    """Threads that can run at once: the clock chain runs on at most one thread per usable CPU
    (time-sliced threads would each see a fraction of a core and report a fraction of its clock)."""
    return max(1, min(threads, info.get("usable_cpus") or threads))


def _run_interleaved(lib, kernels, threads: int, info: dict, target_s: float, repeats: int) -> dict:
    """Clock and every kernel path, repeats interleaved (clock, fp32, fp64, ... then again) so that
    on a shared machine whose clock drifts every figure gets samples from the same quiet moments.

    Each repeat times every path on all ``threads`` (the peak rate) and, right after the clock,
    on one thread alone: one thread's rate over one thread's clock, paired within a repeat, is
    the ops per cycle of one core - an ISA figure that vCPUs time-sliced on a shared host
    cannot distort (measured here: two threads at once each saw 2.2-2.9 GHz of add chain while
    their FMA loops did not slow in step, so all-thread rate / all-thread clock read 100
    FLOP/cycle on a 64-FLOP/cycle AVX-512 core). Returns ``{"rates": {(dtype, path): best
    ops/s}, "per_cycle": {(dtype, path): [one-thread ops per cycle, per repeat]}, "clock_hz",
    "clock_hz_one_thread", "spread", "has_clock"}``."""
    probe = (ctypes.c_int64 * 2)()
    has_clock = lib.harness_add_chain(1, probe) >= 0
    clock_threads = _clock_threads(threads, info)
    clock_iters = _sized_iters(lib.harness_add_chain, target_s / 2) if has_clock else 0
    # threads beyond the usable CPUs are time-sliced: shorten each so the wall time stays ~target_s
    share = clock_threads / threads
    sized = [(dt, path, fn, per, max(1, int(_sized_iters(fn, target_s) * share))) for dt, path, fn, per in kernels]
    out: dict = {"rates": {}, "per_cycle": {}, "clock_hz": None, "clock_hz_one_thread": None, "spread": 0.0,
                 "has_clock": has_clock}
    best_clock = best_single = 0.0
    for _ in range(repeats):
        single = 0.0
        if has_clock:
            _, per1 = _parallel(lib.harness_add_chain, clock_iters, 1)
            single = clock_iters * ADDS_PER_ITER / per1[0]
            best_single = max(best_single, single)
            _, per = _parallel(lib.harness_add_chain, clock_iters, clock_threads)
            hz = clock_iters * ADDS_PER_ITER / max(per)  # the slowest thread: the all-core sustained clock
            if hz > best_clock:
                best_clock, out["spread"] = hz, max(per) / min(per) - 1
        for dt, path, fn, per_iter, iters in sized:
            if single:
                _, one = _parallel(fn, iters, 1)
                out["per_cycle"].setdefault((dt, path), []).append(iters * per_iter / one[0] / single)
            span, _ = _parallel(fn, iters, threads)
            rate = threads * iters * per_iter / span
            out["rates"][(dt, path)] = max(out["rates"].get((dt, path), 0.0), rate)
    out["clock_hz"] = best_clock or None
    out["clock_hz_one_thread"] = best_single if best_single and clock_threads > 1 else None
    return out


def _torch_mm_rate(dtype: str, threads: int, repeats: int = 3, n: int = 1024) -> float:
    """Best FLOP/s of an ``n``-cubed ``torch.mm`` in ``dtype`` (MKL/oneDNN; AMX where oneDNN uses it)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n).to(getattr(torch, dtype))
        b = torch.randn(n, n).to(getattr(torch, dtype))
        torch.mm(a, b)
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(old)
    return best


def _fastest_paths(info: dict) -> dict[str, str]:
    if info.get("fastest_paths"):
        return info["fastest_paths"]
    return throughput_from_flags(info.get("flags", []), info.get("vendor") or "", info.get("family"),
                                 info.get("model")).paths


def _pick_peaks(result: dict, rates: dict, missing: dict, threads: int, info: dict) -> None:
    """Per dtype: the peak is the best rate over the measured paths (kernels and torch.mm) - but
    only when the CPU's fastest path for that dtype was measured; otherwise ``skipped`` says
    which path and why, and the derived figure stays in use."""
    for dt in ("float32", "float64", "bfloat16", "float16", "int8"):
        paths = {p: r for (d, p), r in rates.items() if d == dt}
        fastest = _fastest_paths(info).get(dt)
        if fastest in ("avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16"):
            paths["torch.mm"] = _torch_mm_rate(dt, threads)
        if paths:
            result["path_rates"][dt] = paths
        others = ", ".join(f"{p} {r / 1e9:.1f} G/s" for p, r in paths.items())
        if fastest is None:
            result["skipped"][dt] = "no int8 dot-product instructions (VNNI/AMX) on this CPU"
        elif fastest == "fp32":
            result["skipped"][dt] = f"no native {dt} arithmetic on this CPU: PyTorch computes it in fp32 here"
        elif fastest not in paths:
            result["skipped"][dt] = (f"fastest path {fastest} not measured: {missing.get(fastest, 'no kernel')}; "
                                     "the derived figure is used" + (f" (measured, slower: {others})" if others
                                                                     else ""))
        else:
            best = max(paths, key=paths.get)
            (result["int_op_per_s"] if dt == "int8" else result["flop_per_s"])[dt] = paths[best]
            result["measured_path"][dt] = fastest if best == fastest else f"{fastest} ({best} was faster)"


def _per_cycle(run: dict, dt: str, path_rates: dict[str, float], rate: float, clock: float,
               clock_threads: int) -> float:
    """Ops per cycle per thread of ``dt``'s peak path (the fastest of ``path_rates``): the median over
    repeats of one thread's rate over one thread's clock (see :func:`_run_interleaved`). Paths outside
    the interleaved loop (torch.mm) fall back to the best all-thread rate / threads / the best clock."""
    best = max(path_rates, key=path_rates.__getitem__) if path_rates else None
    paired = run.get("per_cycle", {}).get((dt, best))
    return statistics.median(paired) if paired else rate / clock_threads / clock


def _check_clock(result: dict, run: dict, threads: int, info: dict) -> None:
    """Clock fields, FLOP per cycle per thread, and warnings when the machine was shared."""
    result["clock_hz"] = run["clock_hz"]
    clock_threads = _clock_threads(threads, info)
    single, clock = run["clock_hz_one_thread"], run["clock_hz"]
    if single:
        result["clock_hz_one_thread"] = single
        if clock and single > 1.3 * clock:
            result["warnings"].append(
                f"one thread ran at {single / 1e9:.2f} GHz but {clock_threads} at once only at "
                f"{clock / 1e9:.2f} GHz each: other processes (or vCPUs sharing a core) took CPU time; "
                "the figures are what this process got - rerun with --force when the machine is idle")
    if run["spread"] > 0.15:
        result["warnings"].append(f"threads ran at clocks {100 * run['spread']:.0f}% apart: another process "
                                  "shared a core; rerun with --force when the machine is idle")
    if not clock:
        return
    result["concurrent_threads"] = clock_threads
    for key, rates in (("flop_per_cycle_per_thread", result["flop_per_s"]),
                       ("int_op_per_cycle_per_thread", result["int_op_per_s"])):
        for dt, rate in rates.items():
            result[key][dt] = _per_cycle(run, dt, result["path_rates"].get(dt, {}), rate, clock, clock_threads)
    derived = (info.get("flop_per_cycle_per_core") or {}).get("float32")
    measured = result["flop_per_cycle_per_thread"].get("float32")
    if derived and measured:
        expect = derived  # the ISA's figure for one thread alone on a core, as measured
        if measured < 0.6 * expect:
            result["warnings"].append(
                f"measured {measured:.1f} fp32 FLOP/cycle per thread, derived {expect:g}: fewer FMA units "
                "than assumed, a busy/shared machine, or vCPUs sharing physical cores")
        elif measured > 1.3 * expect:
            result["warnings"].append(f"measured {measured:.1f} fp32 FLOP/cycle per thread exceeds the derived "
                                      f"{expect:g}")


def _measure_flops(result: dict, threads: int, info: dict, target_s: float, repeats: int) -> None:
    """Compile the kernels and fill ``flop_per_s``, ``int_op_per_s``, the clock and their notes."""
    lib, meta = build_kernel(info)
    result["kernel"] = meta
    if lib is None:
        for dt in ("float32", "float64", "bfloat16", "float16", "int8"):
            result["skipped"][dt] = f"not measured: {meta['error']}; the derived figure is used"
        result["warnings"].append(f"FLOP/s not measured ({meta['error']})")
        return None
    kernels, missing = _kernel_paths(lib)
    run = _run_interleaved(lib, kernels, threads, info, target_s, repeats)
    if not run["has_clock"]:
        result["skipped"]["clock"] = "no add-chain asm for this architecture"
    _pick_peaks(result, run["rates"], missing, threads, info)
    _check_clock(result, run, threads, info)
    result["method"] = (f"{NACC} independent {lib.harness_vector_bytes() * 8}-bit FMA/dot-product chains per "
                        f"thread (AMX: 2x2 tile blocks), {threads} threads, plus torch.mm for native bf16/fp16; "
                        f"clock from dependent integer adds; best of {repeats} interleaved repeats")
    return lib


def _measure_caches(lib, threads: int, info: dict, target_s: float, repeats: int) -> dict:
    """L1/L2/L3-resident bandwidth: each thread reads (and copies) a private buffer of
    ``CACHE_FRACTION`` x the level's capacity / threads, best of ``repeats``; the larger of read
    and copy is the level's ceiling. ``{level: {...}}``; empty without caches in /sys or a kernel."""
    caches = info.get("caches") or {}
    if lib is None or not caches:
        return {}
    cores = min(threads, info.get("physical_cores") or threads)
    smt = max(1, (info.get("usable_cpus") or cores) // max(1, info.get("physical_cores") or cores))
    out: dict[str, dict] = {}
    for level, c in caches.items():
        capacity = cache_capacity_bytes(c["size_bytes"], c.get("shared_cpus"), smt, cores)
        per_thread = max(4096, int(CACHE_FRACTION * capacity / threads))
        out[level] = {"capacity_bytes": capacity, "working_set_bytes_per_thread": per_thread,
                      "read_bytes_per_s": 0.0, "copy_bytes_per_s": 0.0}
    kinds = (("read_bytes_per_s", lib.harness_read_bw, 0), ("copy_bytes_per_s", lib.harness_copy_bw, 1))
    sized = {(lv, k): _sized_iters(lambda it, st, f=f, b=d["working_set_bytes_per_thread"]: f(b, it, st),
                                   target_s / 2, start=1)
             for lv, d in out.items() for k, f, _ in kinds}
    for _ in range(repeats):
        for level, d in out.items():
            for key, fn, kind in kinds:
                ws = d["working_set_bytes_per_thread"]
                reps = sized[(level, key)]
                span, _ = _parallel(lambda it, st, f=fn, b=ws: f(b, it, st), reps, threads)
                moved = threads * reps * lib.harness_bw_bytes(ws, kind)
                d[key] = max(d[key], moved / span)
    for d in out.values():
        d["bytes_per_s"] = max(d["read_bytes_per_s"], d["copy_bytes_per_s"])
    return out


def _measure_bandwidth(threads: int, llc_bytes: int | None, repeats: int,
                       buffer_bytes: int | None = None) -> dict:
    """Main-memory bandwidth with torch: copy (2 x size) and sum (1 x size) of buffers >= 4 x LLC."""
    import torch

    nbytes = buffer_bytes or max(4 * (llc_bytes or 32 << 20), 64 << 20)
    n = nbytes // 4
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        src = torch.ones(n, dtype=torch.float32)
        dst = torch.zeros(n, dtype=torch.float32)
        dst.copy_(src)  # first touch of every page before timing
        copy_best = read_best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            dst.copy_(src)
            t1 = time.perf_counter()
            copy_best = max(copy_best, 2 * nbytes / (t1 - t0))
            t0 = time.perf_counter()
            src.sum()
            t1 = time.perf_counter()
            read_best = max(read_best, nbytes / (t1 - t0))
        del src, dst
    finally:
        torch.set_num_threads(old)
    return {"copy_bytes_per_s": copy_best, "read_bytes_per_s": read_best, "buffer_bytes": nbytes,
            "method": "torch dst.copy_(src) counted as 2x size; src.sum() as 1x size; best of "
                      f"{repeats}; buffers 4x LLC or more"}


def _new_result(threads: int, info: dict) -> dict:
    result: dict = {
        "schema": SCHEMA,
        "key": {"cpu": cpu_id(info), "model_name": info.get("model_name"), "threads": threads},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": threads,
        "flop_per_s": {},
        "int_op_per_s": {},
        "measured_path": {},
        "path_rates": {},
        "skipped": {},
        "clock_hz": None,
        "flop_per_cycle_per_thread": {},
        "int_op_per_cycle_per_thread": {},
        "warnings": [],
    }
    try:
        load1 = os.getloadavg()[0]
    except (AttributeError, OSError):
        load1 = None
    result["load_average_before"] = load1
    if load1 is not None and load1 > 0.5:
        result["warnings"].append(f"the machine was busy before calibrating (load average {load1:.2f}): figures "
                                  "may be low; rerun `python -m harness calibrate --force` when it is idle")
    return result


def measure(threads: int | None = None, *, target_s: float = 0.05, repeats: int = 5,
            buffer_bytes: int | None = None, info: dict | None = None) -> dict:
    """Run the calibration (no cache involved) and return the result dict (see the module docstring).

    ``target_s`` is the length of one timed call, ``repeats`` how many interleaved repeats each
    figure is the best of; the whole run takes about ``(paths + 3 cache levels) x repeats x target_s``."""
    t_start = time.perf_counter()
    threads = threads or _default_threads()
    info = info or cpu_info()
    result = _new_result(threads, info)
    lib = _measure_flops(result, threads, info, target_s, repeats)
    result["caches"] = _measure_caches(lib, threads, info, target_s, repeats)
    result["bandwidth"] = _measure_bandwidth(threads, info.get("llc_bytes"), repeats, buffer_bytes)
    result["bytes_per_s"] = max(result["bandwidth"]["copy_bytes_per_s"], result["bandwidth"]["read_bytes_per_s"])
    result["cache_bytes_per_s"] = {lv: d["bytes_per_s"] for lv, d in result["caches"].items()}
    result["cache_sizes_bytes"] = {lv: d["capacity_bytes"] for lv, d in result["caches"].items()}
    result["reference"] = {"sgemm_flop_per_s": _torch_mm_rate("float32", threads),
                           "note": "torch.mm 1024^3 (MKL/oneDNN); a library ceiling, not the hardware peak"}
    result["elapsed_s"] = time.perf_counter() - t_start
    return result



def calibrate(threads: int | None = None, *, force: bool = False, **kwargs) -> dict:
    """The cached calibration for this CPU and thread count; measure and cache it if absent
    (or if ``force``). ``kwargs`` go to :func:`measure`."""
    threads = threads or _default_threads()
    info = cpu_info()
    if not force:
        cached = load_calibration(threads, info)
        if cached is not None:
            cached["cached"] = True
            return cached
    from ..core.fsio import atomic_write_json  # imports pandas: only when writing

    result = measure(threads, info=info, **kwargs)
    path = calibration_path(threads, info)
    try:
        atomic_write_json(path, result)
    except OSError as e:
        from ..errors import HarnessError

        raise HarnessError(f"cannot write the calibration cache {path}: {e} (set HARNESS_CACHE_DIR "
                           "to a writable directory)") from None
    result["path"] = str(path)
    result["cached"] = False
    return result
