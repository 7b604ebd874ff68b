"""What this CPU can do per cycle, read from ``/proc/cpuinfo`` and ``/sys``.

The derived peak is ``cores × FLOP per cycle per core × clock``
(:func:`harness.hardware.formulas.cpu_peak_flop_per_s`). Each factor is a guess that
this module makes as honestly as it can and writes down:

* **FLOP per cycle per core** comes from the vector ISA flags. The number of FMA
  units cannot be read from the flags: AVX-512 server parts are *assumed* to have two
  512-bit FMA units (64 fp32 FLOP/cycle); some Xeon Bronze/Silver/Gold 5xxx SKUs have
  one (32). AMD Zen 4 (family 0x19 with AVX-512) runs 512-bit instructions on two
  256-bit pipes, so it is counted like AVX2 (32). AVX2 + FMA: two 256-bit FMA units
  (32); AMD Zen/Zen+ (family 0x17, model < 0x30) split 256-bit ops into 128-bit
  halves (16). AVX without FMA: one 256-bit add and one multiply per cycle (16).
  SSE2: 8. fp64 is half of fp32.
* **bf16**: with ``avx512_bf16`` (``vdpbf16ps``: two bf16 products and two adds per fp32
  lane) twice the fp32 rate; with AMX (``amx_bf16`` + ``amx_tile``) 1024 bf16 FLOP per
  cycle per core (Intel: one TMUL does 1024 BF16 / 2048 INT8 operations per cycle on
  4th-gen Xeon), reachable only by oneDNN matmuls/convolutions; otherwise PyTorch
  converts bf16 to fp32 and the fp32 rate applies. fp16 likewise with ``avx512_fp16``
  / ``amx_fp16``.
* **int8** (integer ops, not FLOP): AMX 2048 ops/cycle/core; VNNI (``vpdpbusd``: 4
  products + 4 adds per 32-bit lane) four times the fp32 rate; otherwise unknown.
* **clock**: ``cpufreq/cpuinfo_max_freq`` when the kernel exposes it (the single-core
  turbo, an upper bound), else the nominal clock in the model name (``@ 2.90GHz``),
  else ``cpu MHz`` from ``/proc/cpuinfo`` - the *current* clock, not the sustained
  maximum (common in VMs). ``harness calibrate`` measures the sustained clock.
* **fastest path** per dtype (``Throughput.paths``): the instruction family the figure
  assumes - ``fma`` (fp32/fp64 vector FMA), ``amx_bf16`` / ``avx512_bf16`` / ``fp32``
  (bf16 computed in fp32) for bf16, ``amx_fp16`` / ``avx512_fp16`` / ``fp32`` for fp16,
  ``amx_int8`` / ``vnni`` for int8. ``harness calibrate`` must measure that path for
  its figure to replace the derived one.
* **caches** (:func:`cache_levels`): L1 data, L2 and L3 sizes and how many logical CPUs
  share each, from ``/sys/devices/system/cpu/cpu0/cache/index*``.
* **cores**: threads beyond the physical cores in this process's affinity mask add no
  FMA units (SMT siblings share them), so ``min(threads, physical cores)`` is used.

The calibration (:mod:`harness.hardware.calibration`) measures all of this; a derived
figure is what you get before running it.
"""
from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

FLAGS_OF_INTEREST = (
    "sse2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "hypervisor",
)

AMX_BF16_FLOP_PER_CYCLE = 1024   # Intel 4th-gen Xeon (Sapphire Rapids) TMUL, per core
AMX_INT8_OP_PER_CYCLE = 2048


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one dict per logical CPU (keys as printed, values stripped)."""
    cpus: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                cpus.append(cur)
                cur = {}
            continue
        if ":" in line:
            k, _, v = line.partition(":")
            cur[k.strip()] = v.strip()
    if cur:
        cpus.append(cur)
    return cpus


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


@dataclass
class Throughput:
    """Per-core, per-cycle rates derived from ISA flags (``None``: unknown)."""

    isa: str
    flop_per_cycle: dict[str, float] = field(default_factory=dict)   # float32, float64, bfloat16, float16
    int_op_per_cycle: dict[str, float] = field(default_factory=dict)  # int8
    notes: dict[str, str] = field(default_factory=dict)               # per dtype: how
    paths: dict[str, str] = field(default_factory=dict)               # per dtype: fastest path id
    assumptions: list[str] = field(default_factory=list)


def throughput_from_flags(flags: set[str] | list[str], vendor: str = "", family: int | None = None,
                          model: int | None = None, machine: str | None = None) -> Throughput:
    """FLOP per cycle per core for each dtype, from the ISA flags (see the module docstring)."""
    flags = set(flags)
    amd = "AMD" in vendor.upper()
    machine = machine or platform.machine()
    t = Throughput(isa="unknown")
    fp32: float | None
    if "avx512f" in flags:
        if amd and family == 0x19:
            fp32 = 32
            t.isa = "AVX-512 on 2x256-bit FMA pipes (AMD Zen 4)"
            t.assumptions.append("AMD Zen 4 executes a 512-bit FMA as two 256-bit halves: 32 fp32 FLOP/cycle")
        else:
            fp32 = 64
            t.isa = "AVX-512, 2 FMA units assumed"
            t.assumptions.append("AVX-512 counted with 2 FMA units (64 fp32 FLOP/cycle); "
                                 "parts with 1 unit do 32 - the flags cannot tell, `harness calibrate` measures it")
    elif "avx2" in flags and "fma" in flags:
        if amd and family == 0x17 and model is not None and model < 0x30:
            fp32 = 16
            t.isa = "AVX2+FMA on 128-bit pipes (AMD Zen/Zen+)"
        else:
            fp32 = 32
            t.isa = "AVX2+FMA, 2 FMA units"
            t.assumptions.append("AVX2 counted with 2 x 256-bit FMA units (32 fp32 FLOP/cycle)")
    elif "avx" in flags:
        fp32, t.isa = 16, "AVX (no FMA): 1 add + 1 mul x 256-bit"
    elif "sse2" in flags or machine in ("x86_64", "AMD64"):
        fp32, t.isa = 8, "SSE2: 1 add + 1 mul x 128-bit"
    else:
        fp32 = None
        t.isa = f"unknown ({machine})"
        t.assumptions.append("no x86 vector flags: FLOP/cycle unknown; `harness calibrate` measures it")
    if fp32 is None:
        return t
    t.flop_per_cycle["float32"] = fp32
    t.notes["float32"] = f"{fp32:g} FLOP/cycle ({t.isa})"
    t.flop_per_cycle["float64"] = fp32 / 2
    t.notes["float64"] = f"{fp32 / 2:g} FLOP/cycle (half the fp32 lanes)"
    t.paths.update(float32="fma", float64="fma")
    _half_precision(t, flags, fp32)
    _int8(t, flags, fp32)
    return t


def _half_precision(t: Throughput, flags: set[str], fp32: float) -> None:
    """bf16 and fp16 rates and fastest paths (see the module docstring)."""

    if "amx_bf16" in flags and "amx_tile" in flags:
        t.flop_per_cycle["bfloat16"], t.paths["bfloat16"] = AMX_BF16_FLOP_PER_CYCLE, "amx_bf16"
        t.notes["bfloat16"] = (f"{AMX_BF16_FLOP_PER_CYCLE} FLOP/cycle (AMX TMUL; oneDNN matmul/conv only, "
                               "other bf16 ops run at vector rates)")
    elif "avx512_bf16" in flags:
        t.flop_per_cycle["bfloat16"], t.paths["bfloat16"] = 2 * fp32, "avx512_bf16"
        t.notes["bfloat16"] = f"{2 * fp32:g} FLOP/cycle (avx512_bf16 vdpbf16ps: 2x the fp32 rate)"
    else:
        t.flop_per_cycle["bfloat16"], t.paths["bfloat16"] = fp32, "fp32"
        t.notes["bfloat16"] = f"{fp32:g} FLOP/cycle (no native bf16 arithmetic: computed in fp32)"

    if "amx_fp16" in flags and "amx_tile" in flags:
        t.flop_per_cycle["float16"], t.paths["float16"] = AMX_BF16_FLOP_PER_CYCLE, "amx_fp16"
        t.notes["float16"] = f"{AMX_BF16_FLOP_PER_CYCLE} FLOP/cycle (AMX-FP16 TMUL, assumed = AMX-BF16)"
    elif "avx512_fp16" in flags:
        t.flop_per_cycle["float16"], t.paths["float16"] = 2 * fp32, "avx512_fp16"
        t.notes["float16"] = f"{2 * fp32:g} FLOP/cycle (avx512_fp16: 2x the fp32 lanes)"
    else:
        t.flop_per_cycle["float16"], t.paths["float16"] = fp32, "fp32"
        t.notes["float16"] = f"{fp32:g} FLOP/cycle (no native fp16 arithmetic: computed in fp32)"


def _int8(t: Throughput, flags: set[str], fp32: float) -> None:
    """int8 integer ops per cycle and fastest path (see the module docstring)."""
    if "amx_int8" in flags and "amx_tile" in flags:
        t.int_op_per_cycle["int8"], t.paths["int8"] = AMX_INT8_OP_PER_CYCLE, "amx_int8"
        t.notes["int8"] = f"{AMX_INT8_OP_PER_CYCLE} int8 ops/cycle (AMX TMUL)"
    elif "avx512_vnni" in flags or "avx_vnni" in flags:
        t.int_op_per_cycle["int8"], t.paths["int8"] = 4 * fp32, "vnni"
        t.notes["int8"] = f"{4 * fp32:g} int8 ops/cycle (VNNI vpdpbusd: 4x the fp32 rate)"
    else:
        t.notes["int8"] = "no VNNI/AMX: int8 rate unknown"


def _max_freq_hz(sys_root: str) -> float | None:
    base = Path(sys_root) / "devices/system/cpu"
    best = None
    for name in ("cpuinfo_max_freq", "scaling_max_freq"):
        txt = _read(base / "cpu0/cpufreq" / name)
        if txt and txt.strip().isdigit():
            v = int(txt.strip()) * 1e3  # kHz
            best = v if best is None else max(best, v)
            break
    return best


def _size_bytes(text: str | None) -> int | None:
    """``"32K"`` -> 32768 (sysfs cache sizes are binary K/M/G)."""
    m = re.match(r"(\d+)\s*([KMG]?)", (text or "").strip())
    return int(m.group(1)) * {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}[m.group(2)] if m else None


def _count_cpu_list(text: str | None) -> int | None:
    """``"0-3,8"`` -> 5 (a sysfs CPU list)."""
    n = 0
    for part in (text or "").strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return None
        n += int(hi) - int(lo) + 1 if hi else 1
    return n or None


def cache_levels(sys_root: str = "/sys") -> dict[str, dict]:
    """cpu0's data caches: ``{"L1": {"size_bytes": 32768, "shared_cpus": 2}, "L2": ..., "L3": ...}``.

    From ``devices/system/cpu/cpu0/cache/index*/{level,type,size,shared_cpu_list}``;
    instruction caches are skipped; ``shared_cpus`` is how many logical CPUs share one
    instance (``None`` when the list is missing). Levels the kernel does not list are absent.
    """
    base = Path(sys_root) / "devices/system/cpu/cpu0/cache"
    out: dict[str, dict] = {}
    try:
        entries = sorted(base.glob("index*"))
    except OSError:
        return out
    for idx in entries:
        lvl, kind = (_read(idx / "level") or "").strip(), (_read(idx / "type") or "").strip()
        size = _size_bytes(_read(idx / "size"))
        if lvl not in ("1", "2", "3") or kind == "Instruction" or not size:
            continue
        out[f"L{lvl}"] = {"size_bytes": size, "shared_cpus": _count_cpu_list(_read(idx / "shared_cpu_list"))}
    return dict(sorted(out.items()))


def _llc_bytes(levels: dict) -> int | None:
    """The last level's size, of :func:`cache_levels`' result."""
    return levels[max(levels)]["size_bytes"] if levels else None


def _usable_and_physical(cpus: list[dict]) -> tuple[list[int], int]:
    """The CPUs this process may run on, and how many distinct physical cores they are."""
    try:
        usable = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = list(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    for c in cpus:
        try:
            if int(c.get("processor", -1)) not in usable:
                continue
        except ValueError:
            continue
        if "core id" in c:
            cores.add((c.get("physical id", "0"), c["core id"]))
    return usable, (len(cores) if cores else len(usable))


def _clock(sys_root: str, model_name: str | None, mhz_now: list[float]) -> tuple[float | None, str]:
    """The CPU's top clock and where it came from: cpufreq's maximum, else the model name's
    nominal GHz, else the current 'cpu MHz' (said so), else unknown."""
    clock_hz = _max_freq_hz(sys_root)
    if clock_hz is not None:
        return clock_hz, "cpufreq cpuinfo_max_freq (max turbo)"
    m = re.search(r"@\s*([\d.]+)\s*GHz", model_name or "")
    if m:
        return float(m.group(1)) * 1e9, "nominal clock in the model name"
    if mhz_now:
        return max(mhz_now) * 1e6, "/proc/cpuinfo 'cpu MHz' (current clock, not the sustained maximum)"
    return None, "unknown"


def cpu_info(cpuinfo_text: str | None = None, sys_root: str = "/sys") -> dict:
    """This machine's CPU: model, vendor, flags of interest, cores, clock and its source,
    last-level cache, and the derived per-cycle rates (``flop_per_cycle_per_core``).

    Plain JSON-able dict (for env.json). Works without ``/proc`` (then most fields are
    ``None`` and ``isa`` says unknown).
    """
    if cpuinfo_text is None:
        cpuinfo_text = _read("/proc/cpuinfo") or ""
    cpus = parse_cpuinfo(cpuinfo_text)
    first = cpus[0] if cpus else {}
    model_name = first.get("model name") or first.get("Model") or platform.processor() or platform.machine()
    vendor = first.get("vendor_id", "")
    family = int(first["cpu family"]) if first.get("cpu family", "").isdigit() else None
    model = int(first["model"]) if first.get("model", "").isdigit() else None
    stepping = int(first["stepping"]) if first.get("stepping", "").isdigit() else None
    flags = set((first.get("flags") or first.get("Features") or "").split())

    usable, physical = _usable_and_physical(cpus)
    mhz_now = [float(c["cpu MHz"]) for c in cpus if _is_float(c.get("cpu MHz"))]
    clock_hz, clock_source = _clock(sys_root, model_name, mhz_now)

    tp = throughput_from_flags(flags, vendor, family, model)
    info = {
        "model_name": model_name,
        "vendor": vendor or None,
        "family": family,
        "model": model,
        "stepping": stepping,
        "machine": platform.machine(),
        "flags": [f for f in FLAGS_OF_INTEREST if f in flags],
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(usable),
        "physical_cores": physical,
        "clock_hz": clock_hz,
        "clock_source": clock_source,
        "cpu_mhz_now": max(mhz_now) if mhz_now else None,
        "llc_bytes": _llc_bytes(caches := cache_levels(sys_root)),  # sysfs read once
        "caches": caches,
        "isa": tp.isa,
        "flop_per_cycle_per_core": dict(tp.flop_per_cycle),
        "fastest_paths": dict(tp.paths),
        "int_op_per_cycle_per_core": dict(tp.int_op_per_cycle),
        "assumptions": list(tp.assumptions),
    }
    torch = sys.modules.get("torch")
    if torch is not None:  # only if already imported: never pay torch's import for this
        try:
            info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        except Exception:  # pragma: no cover - older torch
            pass
    return info


def _is_float(s: str | None) -> bool:
    try:
        float(s)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return False


def cpu_id(info: dict) -> str:
    """A stable description of the CPU for cache keys: model name plus family/model/stepping
    (VMs often report a bare "AMD EPYC" for several generations)."""
    parts = [str(info.get("model_name") or "unknown")]
    if info.get("family") is not None:
        parts.append(f"family {info['family']} model {info.get('model')} stepping {info.get('stepping')}")
    return " / ".join(parts)
