"""Measure this CPU's peak: FMA-bound FLOP/s per dtype, memory bytes/s, sustained clock.

How (``python -m harness calibrate``; a few seconds on 2 cores):

* A tiny C kernel (:data:`KERNEL_SOURCE`) is compiled once with the system C compiler
  (``$CC``, else ``cc``/``gcc``/``clang``; ``-O2 -march=native -ffp-contract=fast``) into
  the cache directory and loaded with :mod:`ctypes`. ctypes releases the GIL, so one
  Python thread per requested thread runs the kernel at the same time; each call
  stamps its own start/end with ``CLOCK_MONOTONIC`` and the rate is the total work
  over the span from the first start to the last end.
* **FLOP/s**: 12 independent vector accumulators ``c = c*m + a`` (contracted to FMA),
  as wide as the compiler's target allows (512-bit with AVX-512, 256 with AVX, else
  128): enough independent chains to cover FMA latency × units on current cores, so
  the loop is FMA-throughput bound. fp32 and fp64 always; bf16 with ``avx512_bf16``
  (``vdpbf16ps``), fp16 with ``avx512_fp16`` - skipped with a reason otherwise (AMX is
  not measured: its tile setup needs a kernel permission request; the derived AMX
  figure is used instead).
* **clock**: a chain of dependent register-register integer adds (latency 1 cycle on
  x86 and Arm cores), run on all threads at once (at most one per usable CPU): adds per
  second = sustained Hz. Repeats are interleaved (clock, fp32, fp64, ..., again) so that
  on a shared machine whose clock drifts all figures come from the same quiet moments;
  FLOP per cycle = FLOP/s / threads / clock is then a stable ratio (≈ 32 for AVX2 with
  two FMA units). On Intel parts heavy AVX-512 code runs at a lower clock than integer
  code, so that ratio can read below 64 there; the FLOP/s is still the measured peak.
* **bytes/s**: ``dst.copy_(src)`` (counted as 2 × size, the STREAM convention) and
  ``src.sum()`` (1 × size) on torch tensors ≥ 4 × the last-level cache; the larger
  of the two is the bandwidth ceiling.
* Every figure is the best of a few short repeats: a peak, not a typical value.
* Reference only: a 1024³ ``torch.mm`` (MKL/oneDNN sgemm). It is *not* the peak: on
  AMD CPUs MKL takes an AVX2 path while oneDNN convolutions reach about twice that.

Without a C compiler the FLOP/s are not measured (the derived figures stay in use) and
only the bandwidth is measured; the result says so.

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
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from .cpu import cpu_id, cpu_info

SCHEMA = 1
NACC = 12
ADDS_PER_ITER = 100

KERNEL_SOURCE = r"""
#include <stdint.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define VBYTES 64
#elif defined(__AVX__)
#define VBYTES 32
#else
#define VBYTES 16
#endif
#define NACC 12
#define ADDS_PER_ITER 100

typedef float vf32 __attribute__((vector_size(VBYTES)));
typedef double vf64 __attribute__((vector_size(VBYTES)));

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int harness_vector_bytes(void) { return VBYTES; }
int harness_accumulators(void) { return NACC; }
int harness_adds_per_iter(void) { return ADDS_PER_ITER; }

#define ACC12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

/* c = c*m + a on NACC independent vectors: FMA-throughput bound; m < 1 keeps values finite. */
#define DECL(i) VT c##i = a * (ST)(i + 1);
#define STEP(i) c##i = c##i * m + a;
#define SUM(i) s += c##i;

#define VT vf32
#define ST float
double harness_fma_f32(int64_t iters, int64_t *t) {
    VT m = (VT){0} + (ST)0.999999, a = (VT){0} + (ST)1e-6;
    ACC12(DECL)
    t[0] = now_ns();
    for (int64_t i = 0; i < iters; i++) { ACC12(STEP) }
    t[1] = now_ns();
    VT s = (VT){0};
    ACC12(SUM)
    double r = 0;
    for (int l = 0; l < (int)(VBYTES / sizeof(ST)); l++) r += s[l];
    return r;
}
#undef VT
#undef ST

#define VT vf64
#define ST double
double harness_fma_f64(int64_t iters, int64_t *t) {
    VT m = (VT){0} + (ST)0.999999, a = (VT){0} + (ST)1e-6;
    ACC12(DECL)
    t[0] = now_ns();
    for (int64_t i = 0; i < iters; i++) { ACC12(STEP) }
    t[1] = now_ns();
    VT s = (VT){0};
    ACC12(SUM)
    double r = 0;
    for (int l = 0; l < (int)(VBYTES / sizeof(ST)); l++) r += s[l];
    return r;
}
#undef VT
#undef ST

#if defined(__AVX512BF16__)
int harness_has_bf16(void) { return 1; }
/* vdpbf16ps: per fp32 lane, 2 bf16 products + 2 adds = 4 FLOP; 16 lanes = 64 FLOP per instruction. */
#define BDECL(i) __m512 b##i = _mm512_set1_ps((float)(i));  /* distinct: identical chains get merged */
#define BSTEP(i) b##i = _mm512_dpbf16_ps(b##i, x, y);
#define BSUM(i) s = _mm512_add_ps(s, b##i);
double harness_dp_bf16(int64_t iters, int64_t *t) {
    __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80);  /* bf16 1.0 */
    __m512bh y = (__m512bh)_mm512_set1_epi16(0x3a83);  /* bf16 ~1e-3 */
    ACC12(BDECL)
    t[0] = now_ns();
    for (int64_t i = 0; i < iters; i++) { ACC12(BSTEP) }
    t[1] = now_ns();
    __m512 s = _mm512_setzero_ps();
    ACC12(BSUM)
    return (double)_mm512_reduce_add_ps(s);
}
#else
int harness_has_bf16(void) { return 0; }
double harness_dp_bf16(int64_t iters, int64_t *t) { (void)iters; t[0] = t[1] = 0; return 0; }
#endif

#if defined(__AVX512FP16__)
int harness_has_fp16(void) { return 1; }
/* vfmadd on 32 fp16 lanes = 64 FLOP per instruction. */
#define HDECL(i) __m512h h##i = _mm512_set1_ph((_Float16)(0.0625f * (i)));  /* distinct starts */
#define HSTEP(i) h##i = _mm512_fmadd_ph(h##i, m, a);
#define HSUM(i) s = _mm512_add_ph(s, h##i);
double harness_fma_f16(int64_t iters, int64_t *t) {
    __m512h m = _mm512_set1_ph((_Float16)0.5f), a = _mm512_set1_ph((_Float16)0.25f);
    ACC12(HDECL)
    t[0] = now_ns();
    for (int64_t i = 0; i < iters; i++) { ACC12(HSTEP) }
    t[1] = now_ns();
    __m512h s = _mm512_set1_ph((_Float16)0.0f);
    ACC12(HSUM)
    return (double)_mm512_reduce_add_ph(s);
}
#else
int harness_has_fp16(void) { return 0; }
double harness_fma_f16(int64_t iters, int64_t *t) { (void)iters; t[0] = t[1] = 0; return 0; }
#endif

/* Dependent register-register adds: one per cycle. Returns -1 where no asm is known. */
double harness_add_chain(int64_t iters, int64_t *t) {
    uint64_t x = 0;
    volatile uint64_t one_src = 1;
    uint64_t one = one_src;
    t[0] = now_ns();
    for (int64_t i = 0; i < iters; i++) {
#if defined(__x86_64__) || defined(__i386__)
        __asm__ volatile(".rept 100\n\tadd %1, %0\n\t.endr" : "+r"(x) : "r"(one));
#elif defined(__aarch64__)
        __asm__ volatile(".rept 100\n\tadd %0, %0, %1\n\t.endr" : "+r"(x) : "r"(one));
#else
        t[1] = t[0];
        return -1;
#endif
    }
    t[1] = now_ns();
    return (double)x;
}
"""


def cache_dir() -> Path:
    """``$HARNESS_CACHE_DIR`` or ``~/.cache/harness``."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "harness"


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


# --------------------------------------------------------------------------- compiling

def _compiler() -> list[str] | None:
    cc = os.environ.get("CC")
    if cc:
        parts = shlex.split(cc)
        return parts if parts and shutil.which(parts[0]) else None
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def _compiler_version(cc: list[str]) -> str:
    try:
        out = subprocess.run(cc + ["--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


FLAGS = ["-O2", "-march=native", "-ffp-contract=fast", "-fPIC", "-shared"]


def build_kernel(info: dict | None = None) -> tuple[ctypes.CDLL | None, dict]:
    """Compile (once, cached by source/compiler/CPU hash) and load the kernel library.

    Returns ``(lib, meta)``; ``lib`` is ``None`` and ``meta["error"]`` says why when no
    compiler is found or compilation fails.
    """
    info = info or cpu_info()
    cc = _compiler()
    if cc is None:
        return None, {"error": "no C compiler found ($CC, cc, gcc, clang)"}
    version = _compiler_version(cc)
    digest = hashlib.sha256("\0".join(
        [KERNEL_SOURCE, " ".join(cc), version, " ".join(FLAGS), cpu_id(info), " ".join(info.get("flags", []))]
    ).encode()).hexdigest()[:16]
    kdir = cache_dir() / "kernels"
    so = kdir / f"peak-{digest}.so"
    meta = {"compiler": " ".join(cc), "compiler_version": version, "flags": " ".join(FLAGS), "library": str(so)}
    if not so.exists():
        try:
            kdir.mkdir(parents=True, exist_ok=True)
            tmpdir = tempfile.TemporaryDirectory(dir=kdir)
        except OSError as e:
            return None, {**meta, "error": f"cannot write kernels to {kdir}: {e} (set HARNESS_CACHE_DIR)"}
        with tmpdir as tmp:
            src = Path(tmp) / "peak.c"
            src.write_text(KERNEL_SOURCE)
            out = Path(tmp) / "peak.so"
            try:
                proc = subprocess.run(cc + FLAGS + [str(src), "-o", str(out)],
                                      capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.SubprocessError) as e:
                return None, {**meta, "error": f"compiler failed to run: {e}"}
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                return None, {**meta, "error": f"compilation failed: {last}"}
            os.replace(out, so)
    try:
        lib = ctypes.CDLL(str(so))
    except OSError as e:
        return None, {**meta, "error": f"cannot load {so}: {e}"}
    for fn in ("harness_fma_f32", "harness_fma_f64", "harness_dp_bf16", "harness_fma_f16", "harness_add_chain"):
        f = getattr(lib, fn)
        f.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)]
        f.restype = ctypes.c_double
    for fn in ("harness_vector_bytes", "harness_accumulators", "harness_adds_per_iter",
               "harness_has_bf16", "harness_has_fp16"):
        getattr(lib, fn).restype = ctypes.c_int
    meta["vector_bits"] = lib.harness_vector_bytes() * 8
    meta["accumulators"] = lib.harness_accumulators()
    return lib, meta


# --------------------------------------------------------------------------- measuring

def _parallel(fn, iters: int, threads: int) -> tuple[float, list[float]]:
    """Run ``fn(iters)`` on ``threads`` Python threads at once (ctypes drops the GIL).

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


def _sized_iters(fn, target_s: float) -> int:
    """Iterations that take about ``target_s`` on one thread (from a short pilot run)."""
    iters = 20_000
    while True:
        stamp = (ctypes.c_int64 * 2)()
        fn(iters, stamp)
        dt = (stamp[1] - stamp[0]) / 1e9
        if dt > 0.01 or iters > 1 << 34:
            return max(1, int(iters * target_s / max(dt, 1e-9)))
        iters *= 8


def _measure_bandwidth(threads: int, llc_bytes: int | None, repeats: int,
                       buffer_bytes: int | None = None) -> dict:
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


def _sgemm_reference(threads: int, repeats: int = 3, n: int = 1024) -> float:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        torch.mm(a, b)
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(old)
    return best


def measure(threads: int | None = None, *, target_s: float = 0.05, repeats: int = 5,
            buffer_bytes: int | None = None, info: dict | None = None) -> dict:
    """Run the calibration (no cache involved) and return the result dict."""
    t_start = time.perf_counter()
    threads = threads or _default_threads()
    info = info or cpu_info()
    result: dict = {
        "schema": SCHEMA,
        "key": {"cpu": cpu_id(info), "model_name": info.get("model_name"), "threads": threads},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": threads,
        "flop_per_s": {},
        "skipped": {},
        "clock_hz": None,
        "flop_per_cycle_per_thread": {},
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
    lib, meta = build_kernel(info)
    result["kernel"] = meta
    if lib is None:
        for dt in ("float32", "float64", "bfloat16", "float16"):
            result["skipped"][dt] = f"not measured: {meta['error']}; the derived figure is used"
        result["warnings"].append(f"FLOP/s not measured ({meta['error']})")
    else:
        vbytes = lib.harness_vector_bytes()
        kernels = [("float32", lib.harness_fma_f32, NACC * (vbytes // 4) * 2),
                   ("float64", lib.harness_fma_f64, NACC * (vbytes // 8) * 2)]
        if lib.harness_has_bf16():
            kernels.append(("bfloat16", lib.harness_dp_bf16, NACC * 64))
        else:
            result["skipped"]["bfloat16"] = ("no avx512_bf16 on this CPU/compiler: PyTorch computes bf16 "
                                             "in fp32 here" + ("; AMX not measured, derived" if
                                                                "amx_bf16" in info.get("flags", []) else ""))
        if lib.harness_has_fp16():
            kernels.append(("float16", lib.harness_fma_f16, NACC * 64))
        else:
            result["skipped"]["float16"] = "no avx512_fp16 on this CPU/compiler: PyTorch computes fp16 in fp32 here"
        probe = (ctypes.c_int64 * 2)()
        has_clock = lib.harness_add_chain(1, probe) >= 0
        if not has_clock:
            result["skipped"]["clock"] = "no add-chain asm for this architecture"
        # Interleave the repeats (clock, fp32, fp64, ... then again) so that on a shared machine
        # whose clock drifts every figure gets samples from the same quiet moments; keep the best.
        # the clock chain runs on at most one thread per usable CPU: time-sliced threads would
        # each see a fraction of a core and report a fraction of its clock
        clock_threads = max(1, min(threads, info.get("usable_cpus") or threads))
        clock_iters = _sized_iters(lib.harness_add_chain, target_s / 2) if has_clock else 0
        # threads beyond the usable CPUs are time-sliced: shorten each so the wall time stays ~target_s
        share = clock_threads / threads
        sized = [(dt, fn, fpi, max(1, int(_sized_iters(fn, target_s) * share))) for dt, fn, fpi in kernels]
        best_clock, spread, best_single = 0.0, 0.0, 0.0
        for _ in range(repeats):
            if has_clock and clock_threads > 1:
                _, per1 = _parallel(lib.harness_add_chain, clock_iters, 1)
                best_single = max(best_single, clock_iters * ADDS_PER_ITER / per1[0])
            if has_clock:
                _, per = _parallel(lib.harness_add_chain, clock_iters, clock_threads)
                # each thread runs its own chain; the slowest one is the all-core sustained clock
                hz = clock_iters * ADDS_PER_ITER / max(per)
                if hz > best_clock:
                    best_clock, spread = hz, max(per) / min(per) - 1
            for dt, fn, fpi, iters in sized:
                span, _ = _parallel(fn, iters, threads)
                rate = threads * iters * fpi / span
                result["flop_per_s"][dt] = max(result["flop_per_s"].get(dt, 0.0), rate)
        result["clock_hz"] = best_clock or None
        if best_single:
            result["clock_hz_one_thread"] = best_single
            if best_clock and best_single > 1.3 * best_clock:
                result["warnings"].append(
                    f"one thread ran at {best_single / 1e9:.2f} GHz but {clock_threads} at once only at "
                    f"{best_clock / 1e9:.2f} GHz each: other processes (or vCPUs sharing a core) took CPU time; "
                    "the figures are what this process got - rerun with --force when the machine is idle")
        if spread > 0.15:
            result["warnings"].append(f"threads ran at clocks {100 * spread:.0f}% apart: another process shared a "
                                      "core; rerun with --force when the machine is idle")
        if result["clock_hz"]:
            busy = clock_threads  # threads that can run at once
            result["concurrent_threads"] = busy
            for dt, rate in result["flop_per_s"].items():
                result["flop_per_cycle_per_thread"][dt] = rate / busy / result["clock_hz"]
        result["method"] = (f"{NACC} independent {vbytes * 8}-bit FMA chains per thread, {threads} threads; "
                            f"clock from dependent integer adds; best of {repeats} interleaved repeats")
        derived = (info.get("flop_per_cycle_per_core") or {}).get("float32")
        measured = result["flop_per_cycle_per_thread"].get("float32")
        if derived and measured:
            cores = min(threads, info.get("physical_cores") or threads)
            expect = derived * cores / result["concurrent_threads"]
            if measured < 0.6 * expect:
                result["warnings"].append(
                    f"measured {measured:.1f} fp32 FLOP/cycle per thread, derived {expect:g}: fewer FMA units "
                    "than assumed, a busy/shared machine, or vCPUs sharing physical cores")
            elif measured > 1.3 * expect:
                result["warnings"].append(
                    f"measured {measured:.1f} fp32 FLOP/cycle per thread exceeds the derived {expect:g}")
    result["bandwidth"] = _measure_bandwidth(threads, info.get("llc_bytes"), repeats, buffer_bytes)
    result["bytes_per_s"] = max(result["bandwidth"]["copy_bytes_per_s"], result["bandwidth"]["read_bytes_per_s"])
    result["reference"] = {"sgemm_flop_per_s": _sgemm_reference(threads),
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
