"""Ceilings that are ceilings: the fastest path per dtype, cache levels, per-op TF32 ceilings,
the CUDA flags read safely, bf16 support by compute capability."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from harness.core.fsio import atomic_write_json
from harness.hardware import (
    Peak,
    bf16_native,
    cache_capacity_bytes,
    cache_levels,
    cpu_info,
    op_class,
    peak_for,
)
from harness.hardware import calibration
from harness.hardware import cpu_peak as cpu_peak_mod
from harness.hardware.calibration import SCHEMA, calibration_path
from harness.hardware.cpu import cpu_id

T, G = 1e12, 1e9
KiB, MiB = 1024, 1024 ** 2


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- CUDA flags (real torch, subprocess)

SCENARIOS = {
    "default": "",
    "new_tf32": 'torch.backends.cuda.matmul.fp32_precision = "tf32"',
    "new_ieee": 'torch.backends.cuda.matmul.fp32_precision = "ieee"',
    "new_conv_ieee": 'torch.backends.cudnn.conv.fp32_precision = "ieee"',
    "legacy_allow": "torch.backends.cuda.matmul.allow_tf32 = True",
    "legacy_precision": 'torch.set_float32_matmul_precision("high")',
    "legacy_cudnn_off": "torch.backends.cudnn.allow_tf32 = False",
}
# one interpreter imports torch once, then each scenario runs in a forked child (fresh flag state)
_READER = """
import json, os, sys, torch
from harness.hardware import read_cuda_flags, cuda_tf32_allowed
out = {}
for name, setup in json.loads(sys.argv[1]).items():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        exec(setup)
        f = read_cuda_flags(); f["allowed"] = cuda_tf32_allowed()
        os.write(w, json.dumps(f).encode()); os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        out[name] = json.loads(fh.read())
    os.waitpid(pid, 0)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def flags_after():
    proc = subprocess.run([sys.executable, "-c", _READER, json.dumps(SCENARIOS)], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout)


def test_cuda_flags_defaults_of_torch_2_14(flags_after):
    f = flags_after["default"]
    # torch 2.14: cuBLAS fp32 is IEEE unless asked, cuDNN convolutions default to TF32
    assert f["matmul_fp32_precision"] == "none" and f["tf32_matmul"] is False and f["allowed"] is False
    assert f["conv_fp32_precision"] == "tf32" and f["tf32_conv"] is True
    assert f["cudnn_allow_tf32"] is True and f["float32_matmul_precision"] == "highest"
    assert f["cudnn_benchmark"] is False and f["cudnn_deterministic"] is False


def test_cuda_flags_after_the_new_api_was_set(flags_after):
    # reading torch.get_float32_matmul_precision() or allow_tf32 now raises RuntimeError in torch 2.14
    f = flags_after["new_tf32"]
    assert f["matmul_fp32_precision"] == "tf32" and f["tf32_matmul"] is True and f["allowed"] is True
    assert f["float32_matmul_precision"] is None          # unreadable now: None, no exception
    f = flags_after["new_ieee"]
    assert f["tf32_matmul"] is False and f["allowed"] is False
    f = flags_after["new_conv_ieee"]
    assert f["conv_fp32_precision"] == "ieee" and f["tf32_conv"] is False
    assert f["cudnn_allow_tf32"] is None                  # the legacy getter raises after the new setter


def test_cuda_flags_after_the_legacy_api_was_set(flags_after):
    f = flags_after["legacy_allow"]
    assert f["tf32_matmul"] is True and f["matmul_fp32_precision"] == "tf32"
    assert f["float32_matmul_precision"] == "high"
    assert flags_after["legacy_precision"]["tf32_matmul"] is True
    f = flags_after["legacy_cudnn_off"]
    assert f["tf32_conv"] is False and f["cudnn_allow_tf32"] is False


@pytest.mark.parametrize("cc, native", [((6, 1), False), ((7, 0), False), ((7, 5), False), ((8, 0), True),
                                        ((8, 6), True), ((8, 9), True), ((9, 0), True), ((12, 0), True)])
def test_bf16_native_by_compute_capability(cc, native):
    assert bf16_native(*cc) is native


# ----------------------------------------------------------------------------- per-op ceilings on the GPU table

@pytest.mark.parametrize("op, cls", [
    ("aten::convolution", "conv"), ("aten::_convolution", "conv"), ("aten::conv2d", "conv"),
    ("aten::cudnn_convolution", "conv"), ("aten::cudnn_convolution_relu", "conv"),
    ("aten::conv_transpose2d.input", "conv"), ("aten::mm", "matmul"), ("aten::addmm.default", "matmul"),
    ("aten::bmm", "matmul"), ("aten::linear", "matmul"), ("aten::baddbmm", "matmul"),
    ("aten::_scaled_dot_product_efficient_attention", "matmul"), ("aten::_grouped_mm", "matmul"),
    ("aten::add.Tensor", "other"), ("aten::relu", "other"), ("aten::max_pool2d", "other"), ("mm", "matmul"),
])
def test_op_class(op, cls):
    assert op_class(op) == cls


def test_a100_fp32_conv_runs_at_tf32_by_default_flags():
    flags = {"tf32_matmul": False, "tf32_conv": True}           # torch 2.14's defaults
    p = peak_for("cuda", "float32", device_name="NVIDIA A100-SXM4-40GB", cuda_flags=flags)
    assert (p.dtype, p.flop_per_s) == ("tfloat32", 156 * T)      # the run's highest ceiling
    assert p.ceiling_for_op("aten::cudnn_convolution") == (156 * T, "156 TFLOP/s tf32 (table)")
    assert p.ceiling_for_op("aten::mm") == (19.5 * T, "19.5 TFLOP/s fp32 (table)")
    assert p.ceiling_for_op("aten::add.Tensor") == (19.5 * T, "19.5 TFLOP/s fp32 (table)")
    assert "conv ops tf32 156 TFLOP/s (conv TF32 on)" in p.note and "matmul ops fp32 19.5 TFLOP/s (TF32 off)" in p.note
    assert p.summary_fields()["peak_op_ceilings"] == {
        "matmul": {"flop_per_s": 19.5 * T, "dtype": "float32"},
        "conv": {"flop_per_s": 156 * T, "dtype": "tfloat32"},
        "other": {"flop_per_s": 19.5 * T, "dtype": "float32"}}


def test_h100_fp32_ceilings_follow_the_flags():
    name = "NVIDIA H100 80GB HBM3"
    on = peak_for("cuda", "float32", device_name=name, cuda_flags={"tf32_matmul": True, "tf32_conv": True})
    assert on.ceiling_for_op("aten::addmm")[0] == 494.7 * T and on.ceiling_for_op("aten::convolution")[0] == 494.7 * T
    assert on.ceiling_for_op("aten::gelu")[0] == 67 * T
    mm_only = peak_for("cuda", "float32", device_name=name, cuda_flags={"tf32_matmul": True, "tf32_conv": False})
    assert mm_only.ceiling_for_op("aten::_scaled_dot_product_flash_attention")[0] == 494.7 * T
    assert mm_only.ceiling_for_op("aten::_convolution")[0] == 67 * T
    off = peak_for("cuda", "float32", device_name=name, cuda_flags={"tf32_matmul": False, "tf32_conv": False})
    assert (off.dtype, off.flop_per_s) == ("float32", 67 * T)
    assert {off.ceiling_for_op(op)[0] for op in ("aten::mm", "aten::conv2d", "aten::add")} == {67 * T}
    assert "TF32 off" in off.note
    # a bf16 run is bounded by the bf16 tensor cores whatever the fp32 flags say
    bf = peak_for("cuda", "bf16", device_name=name, cuda_flags={"tf32_matmul": True, "tf32_conv": True})
    assert {bf.ceiling_for_op(op)[0] for op in ("aten::mm", "aten::conv2d", "aten::add")} == {989.4 * T}
    # legacy allow_tf32 still means "TF32 allowed" for both classes
    legacy = peak_for("cuda", "float32", device_name=name, allow_tf32=False)
    assert legacy.ceiling_for_op("aten::conv2d")[0] == 67 * T
    # CUDA: DRAM only, from the table
    assert on.cache_bytes_per_s == {"DRAM": 3350 * G} and on.level_for(1024) == "DRAM"
    assert on.calibrate_hint() is None


# ----------------------------------------------------------------------------- caches: /sys, capacity, levels

def _sys_tree(root, levels):
    for i, (lvl, kind, size, shared) in enumerate(levels):
        d = root / f"devices/system/cpu/cpu0/cache/index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{lvl}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
        (d / "shared_cpu_list").write_text(f"{shared}\n")
    return str(root)


def test_cache_levels_from_a_hand_made_sys(tmp_path):
    root = _sys_tree(tmp_path / "sys", [(1, "Data", "48K", "0,56"), (1, "Instruction", "32K", "0,56"),
                                        (2, "Unified", "2048K", "0,56"), (3, "Unified", "105M", "0-55,112-167")])
    assert cache_levels(root) == {"L1": {"size_bytes": 48 * KiB, "shared_cpus": 2},
                                  "L2": {"size_bytes": 2 * MiB, "shared_cpus": 2},
                                  "L3": {"size_bytes": 105 * MiB, "shared_cpus": 112}}
    info = cpu_info("processor\t: 0\nmodel name\t: X\nflags\t\t: sse2 avx2 fma\n", sys_root=root)
    assert info["llc_bytes"] == 105 * MiB and info["caches"]["L1"]["size_bytes"] == 48 * KiB
    assert cache_levels(str(tmp_path / "nothing")) == {}


def test_cache_capacity_arithmetic():
    # private 48 KiB L1, SMT pairs (shared by 2 logical = 1 core): 4 cores hold 4 x 48 KiB
    assert cache_capacity_bytes(48 * KiB, 2, 2, 4) == 192 * KiB
    # one 32 MiB L3 shared by both cores: 32 MiB, not 64
    assert cache_capacity_bytes(32 * MiB, 2, 1, 2) == 32 * MiB
    # an L2 shared by a 4-core cluster, 6 cores used: ceil(6 / 4) = 2 instances
    assert cache_capacity_bytes(2 * MiB, 4, 1, 6) == 4 * MiB
    # no shared_cpu_list: per core
    assert cache_capacity_bytes(1 * MiB, None, 1, 2) == 2 * MiB


def test_level_for_and_bandwidth_for():
    p = Peak("cpu", "float32", 100 * G, 10 * G, "calibrated", "n",
             cache_bytes_per_s={"L1": 400 * G, "L2": 150 * G, "L3": 60 * G, "DRAM": 10 * G},
             cache_sizes_bytes={"L1": 64 * KiB, "L2": 2 * MiB, "L3": 32 * MiB}, calibration_file="x")
    assert p.level_for(1000) == "L1" and p.level_for(64 * KiB) == "L1"
    assert p.level_for(64 * KiB + 1) == "L2" and p.level_for(2 * MiB) == "L2"
    assert p.level_for(3 * MiB) == "L3" and p.level_for(33 * MiB) == "DRAM"
    assert p.bandwidth_for(100 * KiB) == (150 * G, "L2") and p.bandwidth_for(1 << 30) == (10 * G, "DRAM")
    # uncalibrated: no made-up cache figures, everything is DRAM
    u = Peak("cpu", "float32", 100 * G, None, "derived", "n", threads=2)
    assert u.cache_bytes_per_s == {} and u.level_for(1000) == "DRAM" and u.bandwidth_for(1000) == (None, "DRAM")
    assert u.calibrate_hint() == "python -m harness calibrate --threads 2" and p.calibrate_hint() is None


# ----------------------------------------------------------------------------- CPU: calibrated only on the fastest path

SPR_FLAGS = ["avx", "fma", "avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"]


def _spr_info():
    return {"model_name": "Test Xeon AMX", "vendor": "GenuineIntel", "family": 6, "model": 143, "stepping": 8,
            "flags": SPR_FLAGS, "physical_cores": 2, "usable_cpus": 2, "clock_hz": 2.0e9,
            "clock_source": "nominal clock in the model name", "llc_bytes": 32 * MiB}


def _write_cal(info, **fields):
    cal = {"schema": SCHEMA, "key": {"cpu": cpu_id(info), "threads": 2}, "created": "2026-01-01T00:00:00+00:00",
           "threads": 2, "clock_hz": 2.0e9, "concurrent_threads": 2, "flop_per_s": {"float32": 254 * G},
           "flop_per_cycle_per_thread": {"float32": 63.5}, "measured_path": {"float32": "fma"},
           "bytes_per_s": 14.5 * G, "warnings": []}
    cal.update(fields)
    atomic_write_json(calibration_path(2, info), cal)


def test_amx_cpu_whose_calibration_missed_amx_keeps_the_derived_bf16_peak(monkeypatch):
    # the issue: calibrate measured avx512_bf16 (122 GFLOP/s) on an AMX Xeon and that replaced 4.10 TFLOP/s
    info = _spr_info()
    monkeypatch.setattr(cpu_peak_mod, "cpu_info", lambda: info)
    _write_cal(info, skipped={"bfloat16": "fastest path amx_bf16 not measured: arch_prctl(...) failed; the derived "
                                          "figure is used (measured, slower: avx512_bf16 122.0 G/s)"})
    p = peak_for("cpu", "bfloat16", threads=2)
    # derived: 2 cores x 1024 FLOP/cycle (AMX) x 2.0 GHz (the calibrated clock) = 4.096 TFLOP/s
    assert (p.source, p.flop_per_s) == ("derived", pytest.approx(4.096 * T))
    assert "amx_bf16 not measured" in p.note and "122.0" in p.note
    assert p.calibrate_hint() is None                     # calibrating again would not help
    assert peak_for("cpu", "float32", threads=2).flop_per_s == 254 * G


def test_a_calibration_of_the_fastest_path_is_used_and_the_derived_figure_kept(monkeypatch):
    info = _spr_info()
    monkeypatch.setattr(cpu_peak_mod, "cpu_info", lambda: info)
    _write_cal(info, flop_per_s={"float32": 254 * G, "bfloat16": 3.5 * T},
               measured_path={"float32": "fma", "bfloat16": "amx_bf16"},
               int_op_per_s={"int8": 7.2 * T}, int_op_per_cycle_per_thread={"int8": 1800.0},
               cache_bytes_per_s={"L1": 400 * G, "L2": 120 * G, "L3": 9 * G},
               cache_sizes_bytes={"L1": 96 * KiB, "L2": 4 * MiB, "L3": 105 * MiB})
    p = peak_for("cpu", "bf16", threads=2)
    assert (p.source, p.flop_per_s, p.derived_flop_per_s) == ("calibrated", 3.5 * T, pytest.approx(4.096 * T))
    assert "amx_bf16" in p.note and "below the derived 4.10 TFLOP/s" in p.note
    f = p.summary_fields()
    assert f["peak_flop_per_s"] == 3.5 * T and f["peak_flop_per_s_derived"] == pytest.approx(4.096 * T)
    # L3 measured below DRAM (a noisy run): a smaller level never gets a lower ceiling than a larger one
    assert f["cache_bytes_per_s"] == {"L1": 400 * G, "L2": 120 * G, "L3": 14.5 * G, "DRAM": 14.5 * G}
    assert f["cache_sizes_bytes"] == {"L1": 96 * KiB, "L2": 4 * MiB, "L3": 105 * MiB}
    assert p.level_for(1 * MiB) == "L2" and p.ceiling_for_op("aten::mm")[0] == 3.5 * T
    i8 = peak_for("cpu", "int8", threads=2)
    assert (i8.source, i8.int_op_per_s, i8.flop_per_s) == ("calibrated", 7.2 * T, None)
    assert "1800.0 op/cycle" in i8.note


def test_pick_peaks_refuses_a_slower_path(monkeypatch):
    info = dict(_spr_info(), fastest_paths={"float32": "fma", "float64": "fma", "bfloat16": "amx_bf16",
                                            "float16": "fp32", "int8": "amx_int8"})
    monkeypatch.setattr(calibration, "_torch_mm_rate", lambda dt, threads: 90 * G)
    result = {"flop_per_s": {}, "int_op_per_s": {}, "skipped": {}, "measured_path": {}, "path_rates": {}}
    rates = {("float32", "fma"): 254 * G, ("float64", "fma"): 127 * G, ("bfloat16", "avx512_bf16"): 122 * G,
             ("int8", "vnni"): 500 * G}
    missing = {"amx_bf16": "permission refused", "amx_int8": "permission refused"}
    calibration._pick_peaks(result, rates, missing, 2, info)
    assert result["flop_per_s"] == {"float32": 254 * G, "float64": 127 * G}
    assert result["int_op_per_s"] == {}
    assert "amx_bf16 not measured: permission refused" in result["skipped"]["bfloat16"]
    assert "avx512_bf16 122.0 G/s" in result["skipped"]["bfloat16"] and "torch.mm 90.0" in result["skipped"]["bfloat16"]
    assert "in fp32" in result["skipped"]["float16"]
    assert result["path_rates"]["bfloat16"] == {"avx512_bf16": 122 * G, "torch.mm": 90 * G}
    # with the AMX kernel measured, the best of kernel and torch.mm is the peak
    rates[("bfloat16", "amx_bf16")] = 3.4 * T
    calibration._pick_peaks(result, rates, missing, 2, info)
    assert result["flop_per_s"]["bfloat16"] == 3.4 * T and result["measured_path"]["bfloat16"] == "amx_bf16"


# ----------------------------------------------------------------------------- the kernels

def test_amx_kernels_compile_for_sapphire_rapids(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "k.c"
    src.write_text(calibration.KERNEL_SOURCE)
    proc = subprocess.run([cc, "-O2", "-march=sapphirerapids", "-S", str(src), "-o", str(tmp_path / "k.s")],
                          capture_output=True, text=True)
    if proc.returncode and "march" in proc.stderr:
        pytest.skip(f"compiler does not know sapphirerapids: {proc.stderr.strip()[:80]}")
    assert proc.returncode == 0, proc.stderr
    asm = (tmp_path / "k.s").read_text()
    assert asm.count("tdpbf16ps") == 4 and asm.count("tdpbusd") == 4 and "ldtilecfg" in asm
    assert "vpdpbusd" in asm and "vdpbf16ps" in asm
    assert "memcpy" not in asm                             # the copy loop stays a loop


def test_no_amx_here_means_a_reason_not_a_figure():
    info = cpu_info()
    if "amx_tile" in info["flags"]:
        pytest.skip("this CPU has AMX")
    lib, meta = calibration.build_kernel(info)
    if lib is None:
        pytest.skip(meta["error"])
    assert lib.harness_amx_request() == -1 and lib.harness_has_amx_bf16() == 0
    kernels, missing = calibration._kernel_paths(lib)
    assert "amx_bf16" in missing and not any(p.startswith("amx") for _, p, _, _ in kernels)


def test_a_short_real_calibration_measures_every_cache_level():
    info = cpu_info()
    if not info["caches"]:
        pytest.skip("no cache sizes in /sys")
    r = calibration.calibrate(2, force=True, target_s=0.004, repeats=1, buffer_bytes=16 << 20)
    if r["kernel"].get("error"):
        pytest.skip(r["kernel"]["error"])
    cores = min(2, info["physical_cores"])
    smt = max(1, info["usable_cpus"] // info["physical_cores"])
    assert set(r["caches"]) == set(info["caches"])
    for level, c in info["caches"].items():
        cap = cache_capacity_bytes(c["size_bytes"], c["shared_cpus"], smt, cores)
        got = r["caches"][level]
        assert got["capacity_bytes"] == cap and r["cache_sizes_bytes"][level] == cap
        assert got["working_set_bytes_per_thread"] == max(4096, int(0.5 * cap / 2))
        assert got["bytes_per_s"] == max(got["read_bytes_per_s"], got["copy_bytes_per_s"]) > 0
    # the fastest path for each dtype was measured, or skipped says why
    for dt in ("float32", "float64", "bfloat16", "float16", "int8"):
        assert dt in r["flop_per_s"] or dt in r["int_op_per_s"] or dt in r["skipped"]
    assert set(r["measured_path"]) == set(r["flop_per_s"]) | set(r["int_op_per_s"])
    p = peak_for("cpu", "float32", threads=2)
    assert p.source == "calibrated" and set(p.cache_bytes_per_s) == set(info["caches"]) | {"DRAM"}
    assert p.cache_bytes_per_s["DRAM"] == r["bytes_per_s"] and p.calibrate_hint() is None
    small = min(p.cache_sizes_bytes.values())
    assert p.level_for(small) == min(p.cache_sizes_bytes, key=p.cache_sizes_bytes.get)
