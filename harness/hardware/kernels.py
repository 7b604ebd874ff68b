"""The calibration's C kernels: source, compilation (once, cached) and loading.

:data:`KERNEL_SOURCE` holds every timed loop; each entry point takes an iteration count
and an ``int64_t t[2]`` it stamps with ``CLOCK_MONOTONIC`` start/end, so Python threads
(ctypes drops the GIL) can run them at once and the caller can time the overlap.

* ``harness_fma_f32/f64``: 12 independent vector FMA chains (the fp32/fp64 ``fma`` path).
* ``harness_dp_bf16`` (``avx512_bf16`` path), ``harness_fma_f16`` (``avx512_fp16``).
* ``harness_amx_bf16/int8/fp16`` (``amx_*`` paths): a 2x2 block of tile dot products,
  after ``harness_amx_request()`` asked Linux for tile-data permission.
* ``harness_vnni_int8`` (``vnni`` path): 12 ``vpdpbusd`` chains, 512- or 256-bit.
* ``harness_add_chain``: dependent integer adds, one per cycle (the clock).
* ``harness_read_bw/copy_bw(bytes, reps, t)``: bandwidth over a private buffer.

Paths the compiler's target (``-march=native``) lacks compile to stubs whose
``harness_has_*`` / ``harness_vnni_bytes`` say 0.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from .cache import cache_dir
from .cpu import cpu_id, cpu_info

NACC = 12
ADDS_PER_ITER = 100

KERNEL_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
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

/* ---- int8 VNNI (vpdpbusd): per 32-bit lane 4 u8 x s8 products + 4 adds = 8 ops. */
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
int harness_vnni_bytes(void) { return 64; }
#define IDECL(i) __m512i q##i = _mm512_set1_epi32(i);
#define ISTEP(i) q##i = _mm512_dpbusd_epi32(q##i, x, y);
#define ISUM(i) s = _mm512_add_epi32(s, q##i);
double harness_vnni_int8(int64_t iters, int64_t *t) {
    __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-2), s = _mm512_setzero_si512();
    ACC12(IDECL)
    t[0] = now_ns();
    for (int64_t i = 0; i < iters; i++) { ACC12(ISTEP) }
    t[1] = now_ns();
    ACC12(ISUM)
    return (double)_mm512_reduce_add_epi32(s);
}
#elif defined(__AVXVNNI__)
int harness_vnni_bytes(void) { return 32; }
#define IDECL(i) __m256i q##i = _mm256_set1_epi32(i);
#define ISTEP(i) q##i = _mm256_dpbusd_avx_epi32(q##i, x, y);
#define ISUM(i) s = _mm256_add_epi32(s, q##i);
double harness_vnni_int8(int64_t iters, int64_t *t) {
    __m256i x = _mm256_set1_epi8(3), y = _mm256_set1_epi8(-2), s = _mm256_setzero_si256();
    ACC12(IDECL)
    t[0] = now_ns();
    for (int64_t i = 0; i < iters; i++) { ACC12(ISTEP) }
    t[1] = now_ns();
    ACC12(ISUM)
    return (double)_mm256_extract_epi32(s, 0);
}
#else
int harness_vnni_bytes(void) { return 0; }
double harness_vnni_int8(int64_t iters, int64_t *t) { (void)iters; t[0] = t[1] = 0; return 0; }
#endif

/* ---- AMX tiles (Sapphire Rapids and later). Linux keeps tile data off until the process
   asks: arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18), once per process.
   Tiles 0-3 accumulate (16 rows x 64 B), A in tiles 4-5, B in 6-7: a 2x2 block of independent
   chains, as oneDNN does. One tdpbf16ps/tdpfp16ps = 16 x 16 x 32 x 2 = 16384 FLOP; one
   tdpbusd = 16 x 16 x 64 x 2 = 32768 int8 ops. */
#if defined(__AMX_TILE__) && defined(__linux__)
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>
int harness_amx_request(void) { return syscall(SYS_arch_prctl, 0x1023, 18) == 0 ? 0 : errno; }
static void amx_config(void) {
    unsigned char cfg[64] __attribute__((aligned(64))) = {0};
    cfg[0] = 1;                                        /* palette 1 */
    for (int i = 0; i < 8; i++) { cfg[16 + 2 * i] = 64; cfg[48 + i] = 16; }  /* 64 bytes x 16 rows */
    _tile_loadconfig(cfg);
}
#define AMX_KERNEL(NAME, OP, ELEM, AV, BV)                                       \
double NAME(int64_t iters, int64_t *t) {                                         \
    ELEM a[1024 / sizeof(ELEM)] __attribute__((aligned(64)));                    \
    ELEM b[1024 / sizeof(ELEM)] __attribute__((aligned(64)));                    \
    int32_t c[256] __attribute__((aligned(64)));                                 \
    for (unsigned i = 0; i < 1024 / sizeof(ELEM); i++) { a[i] = AV; b[i] = BV; } \
    amx_config();                                                                \
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);                  \
    _tile_loadd(4, a, 64); _tile_loadd(5, a, 64);                                \
    _tile_loadd(6, b, 64); _tile_loadd(7, b, 64);                                \
    t[0] = now_ns();                                                             \
    for (int64_t i = 0; i < iters; i++) {                                        \
        OP(0, 4, 6); OP(1, 4, 7); OP(2, 5, 6); OP(3, 5, 7);                      \
    }                                                                            \
    t[1] = now_ns();                                                             \
    _tile_stored(0, c, 64);                                                      \
    _tile_release();                                                             \
    return (double)c[0];                                                         \
}
#else
int harness_amx_request(void) { return -1; }
#endif
#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__linux__)
int harness_has_amx_bf16(void) { return 1; }
AMX_KERNEL(harness_amx_bf16, _tile_dpbf16ps, uint16_t, 0x3a83, 0x3f80)
#else
int harness_has_amx_bf16(void) { return 0; }
double harness_amx_bf16(int64_t iters, int64_t *t) { (void)iters; t[0] = t[1] = 0; return 0; }
#endif
#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__linux__)
int harness_has_amx_int8(void) { return 1; }
AMX_KERNEL(harness_amx_int8, _tile_dpbusd, uint8_t, 3, 2)
#else
int harness_has_amx_int8(void) { return 0; }
double harness_amx_int8(int64_t iters, int64_t *t) { (void)iters; t[0] = t[1] = 0; return 0; }
#endif
#if defined(__AMX_TILE__) && defined(__AMX_FP16__) && defined(__linux__)
int harness_has_amx_fp16(void) { return 1; }
AMX_KERNEL(harness_amx_fp16, _tile_dpfp16ps, uint16_t, 0x1419, 0x3c00)
#else
int harness_has_amx_fp16(void) { return 0; }
double harness_amx_fp16(int64_t iters, int64_t *t) { (void)iters; t[0] = t[1] = 0; return 0; }
#endif

/* ---- cache/memory bandwidth over a private buffer of `bytes` (allocated and touched before
   timing). read: every vector added into 8 accumulators; copy: bytes/2 copied into the other
   bytes/2 (STREAM convention: counted as `bytes` moved). The empty asm with a memory clobber
   keeps the compiler from turning the loop into memcpy (which may use non-temporal stores)
   or from merging repeats. Returns -1 when the buffer cannot be allocated. */
typedef float vbw __attribute__((vector_size(VBYTES)));
#define BARRIER() __asm__ volatile("" ::: "memory")
double harness_read_bw(int64_t bytes, int64_t reps, int64_t *t) {
    int64_t n = bytes / (8 * VBYTES) * 8;
    if (n < 8) n = 8;
    vbw *buf = aligned_alloc(64, (size_t)n * VBYTES);
    if (!buf) { t[0] = t[1] = 0; return -1; }
    for (int64_t i = 0; i < n; i++) buf[i] = (vbw){0} + 1.0f;
    vbw s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0}, s7 = {0};
    t[0] = now_ns();
    for (int64_t r = 0; r < reps; r++) {
        for (int64_t i = 0; i < n; i += 8) {
            s0 += buf[i]; s1 += buf[i + 1]; s2 += buf[i + 2]; s3 += buf[i + 3];
            s4 += buf[i + 4]; s5 += buf[i + 5]; s6 += buf[i + 6]; s7 += buf[i + 7];
            BARRIER();
        }
    }
    t[1] = now_ns();
    vbw s = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    free(buf);
    return (double)s[0];
}
double harness_copy_bw(int64_t bytes, int64_t reps, int64_t *t) {
    int64_t n = bytes / 2 / (4 * VBYTES) * 4;
    if (n < 4) n = 4;
    vbw *src = aligned_alloc(64, (size_t)n * VBYTES), *dst = aligned_alloc(64, (size_t)n * VBYTES);
    if (!src || !dst) { free(src); free(dst); t[0] = t[1] = 0; return -1; }
    for (int64_t i = 0; i < n; i++) { src[i] = (vbw){0} + 1.0f; dst[i] = (vbw){0}; }
    t[0] = now_ns();
    for (int64_t r = 0; r < reps; r++) {
        for (int64_t i = 0; i < n; i += 4) {
            vbw a = src[i], b = src[i + 1], c = src[i + 2], d = src[i + 3];
            dst[i] = a; dst[i + 1] = b; dst[i + 2] = c; dst[i + 3] = d;
            BARRIER();
        }
    }
    t[1] = now_ns();
    double r = (double)dst[n - 1][0];
    free(src);
    free(dst);
    return r;
}
int64_t harness_bw_bytes(int64_t bytes, int kind) {
    /* the bytes a call really moves per repeat (rounding above) */
    if (kind == 0) { int64_t n = bytes / (8 * VBYTES) * 8; return (n < 8 ? 8 : n) * VBYTES; }
    int64_t n = bytes / 2 / (4 * VBYTES) * 4;
    return 2 * (n < 4 ? 4 : n) * VBYTES;
}
"""


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
    _declare(lib)
    meta["vector_bits"] = lib.harness_vector_bytes() * 8
    meta["accumulators"] = lib.harness_accumulators()
    return lib, meta


TIMED = ("harness_fma_f32", "harness_fma_f64", "harness_dp_bf16", "harness_fma_f16", "harness_add_chain",
         "harness_vnni_int8", "harness_amx_bf16", "harness_amx_int8", "harness_amx_fp16")
FLAGS_INT = ("harness_vector_bytes", "harness_accumulators", "harness_adds_per_iter", "harness_has_bf16",
             "harness_has_fp16", "harness_vnni_bytes", "harness_amx_request", "harness_has_amx_bf16",
             "harness_has_amx_int8", "harness_has_amx_fp16")


def _declare(lib: ctypes.CDLL) -> None:
    """ctypes signatures of every entry point."""
    stamps = ctypes.POINTER(ctypes.c_int64)
    for fn in TIMED:
        f = getattr(lib, fn)
        f.argtypes, f.restype = [ctypes.c_int64, stamps], ctypes.c_double
    for fn in ("harness_read_bw", "harness_copy_bw"):
        f = getattr(lib, fn)
        f.argtypes, f.restype = [ctypes.c_int64, ctypes.c_int64, stamps], ctypes.c_double
    lib.harness_bw_bytes.argtypes, lib.harness_bw_bytes.restype = [ctypes.c_int64, ctypes.c_int], ctypes.c_int64
    for fn in FLAGS_INT:
        getattr(lib, fn).restype = ctypes.c_int

