"""Published peak figures of GPUs, matched by the name ``torch.cuda.get_device_name`` reports.

Every figure is **dense**: NVIDIA quotes tensor-core rates "with sparsity" (2:4
structured sparsity doubles them, marked ``*`` in the datasheets); this table holds
the dense half and never the sparse figure. Floating-point rates (FLOP/s) and
integer rates (int8, TOPS = 10^12 integer operations per second) are kept in
separate dictionaries and never mixed: an int8 operation is not a FLOP.

Dtype keys of ``flop_per_s``:

* ``float64`` - FP64; on A100/H100/H200 the FP64 *tensor core* figure (cuBLAS DGEMM
  uses it), twice the vector FP64 rate.
* ``float32`` - FP32 on the CUDA cores (no tensor cores): what a float32 matmul gets
  when TF32 is not allowed.
* ``tfloat32`` - TF32 tensor cores: what a float32 matmul gets when
  ``torch.backends.cuda.matmul.allow_tf32`` (or matmul precision "high") allows it.
* ``bfloat16``, ``float16`` - tensor cores with FP32 accumulate (what PyTorch uses).
  On GeForce parts FP32 accumulate runs at half the FP16-accumulate rate; the table
  holds the FP32-accumulate figure.
* ``float8`` - FP8 (E4M3/E5M2) tensor cores, Hopper and Ada only.

``int_op_per_s["int8"]`` holds INT8 tensor-core integer ops/s.

Name matching (:func:`match_device`): names and patterns are upper-cased and runs of
spaces, hyphens and underscores become one space; a pattern matches only as a whole
token run (``A10`` does not match ``A100`` or ``A10G``; ``L4`` does not match
``L40S``); of all matching patterns the longest wins (``H200 NVL`` over ``H200``). A
row's ``exclude`` patterns veto it (the RTX 4090 *Laptop* GPU is a different chip).
No match is ``None`` - the caller reports "unknown", never a zero.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

T = 1e12
G = 1e9

FLOP_DTYPES = ("float64", "float32", "tfloat32", "bfloat16", "float16", "float8")
INT_DTYPES = ("int8",)


@dataclass(frozen=True)
class GpuSpec:
    name: str
    patterns: tuple[str, ...]
    flop_per_s: dict[str, float]
    int_op_per_s: dict[str, float]
    bytes_per_s: float | None
    source: str
    exclude: tuple[str, ...] = ()
    notes: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "peak_flop_per_s": {k: self.flop_per_s[k] for k in FLOP_DTYPES if k in self.flop_per_s},
            "peak_int_op_per_s": {k: self.int_op_per_s[k] for k in INT_DTYPES if k in self.int_op_per_s},
            "mem_bandwidth_bytes_per_s": self.bytes_per_s,
            "peak_source": "table",
            "source": self.source,
            "match": list(self.patterns),
            "notes": self.notes,
        }


# Official pages and documents the rows cite.
_A100 = ("NVIDIA A100 Tensor Core GPU datasheet / https://www.nvidia.com/en-us/data-center/a100/ "
         "(spec table; dense = figures without the * sparsity mark)")
_HOPPER_WP = ("NVIDIA H100 Tensor Core GPU Architecture whitepaper, GPU comparison table, H100 SXM5 "
              "column, dense figures (TF32 494.7, FP16/BF16 989.4, FP8 1978.9 TFLOPS)")
_H100 = "https://www.nvidia.com/en-us/data-center/h100/ (H100 SXM / PCIe / NVL spec table, * = sparse, halved)"
_H200 = "https://www.nvidia.com/en-us/data-center/h200/ (H200 SXM / NVL spec table, * = sparse, halved)"
_V100 = "NVIDIA Tesla V100 datasheet / https://www.nvidia.com/en-us/data-center/v100/"
_T4 = "NVIDIA T4 datasheet / https://www.nvidia.com/en-us/data-center/tesla-t4/"
_L4 = "NVIDIA L4 datasheet / https://www.nvidia.com/en-us/data-center/l4/ (* = sparse, halved)"
_A10 = "NVIDIA A10 datasheet / https://www.nvidia.com/en-us/data-center/products/a10-gpu/ (* = sparse, not used)"
_L40S = "NVIDIA L40S datasheet / https://www.nvidia.com/en-us/data-center/l40s/ (* = sparse, not used)"
_L40 = "NVIDIA L40 datasheet / https://www.nvidia.com/en-us/data-center/l40/ (* = sparse, not used)"
_ADA_WP = ("NVIDIA Ada GPU Architecture whitepaper v2.01, Appendix A, GeForce RTX 4090 column "
           "(dense; FP16/BF16/FP8 with FP32 accumulate)")


def _fp(f64=None, f32=None, tf32=None, bf16=None, f16=None, f8=None) -> dict[str, float]:
    vals = {"float64": f64, "float32": f32, "tfloat32": tf32, "bfloat16": bf16,
            "float16": f16, "float8": f8}
    return {k: v * T for k, v in vals.items() if v is not None}


def _int8(tops: float | None) -> dict[str, float]:
    return {} if tops is None else {"int8": tops * T}


_HOPPER_SXM = dict(f64=67, f32=67, tf32=494.7, bf16=989.4, f16=989.4, f8=1979)
# H100 NVL and H200 NVL: 60 TF FP32/FP64-TC; TF32 835*, FP16/BF16 1,671*, FP8/INT8 3,341* (sparse), halved.
_HOPPER_NVL = dict(f64=60, f32=60, tf32=417.5, bf16=835.5, f16=835.5, f8=1670.5)

GPU_SPECS: tuple[GpuSpec, ...] = (
    # A100 40GB (SXM4 and PCIe): FP64 TC 19.5, FP32 19.5, TF32 156, BF16/FP16 312, INT8 624 TOPS; HBM2 1,555 GB/s.
    GpuSpec("NVIDIA A100 40GB", ("A100 SXM4 40GB", "A100 PCIE 40GB", "A100 40GB"),
            _fp(19.5, 19.5, 156, 312, 312), _int8(624), 1555 * G, _A100,
            notes="float64 is the FP64 tensor-core rate (vector FP64: 9.7 TFLOP/s)"),
    # A100 80GB SXM: same compute; HBM2e 2,039 GB/s.
    GpuSpec("NVIDIA A100 80GB SXM", ("A100 SXM4 80GB", "A100 SXM 80GB", "A100 80GB SXM"),
            _fp(19.5, 19.5, 156, 312, 312), _int8(624), 2039 * G, _A100,
            notes="float64 is the FP64 tensor-core rate (vector FP64: 9.7 TFLOP/s)"),
    # A100 80GB PCIe: same compute; HBM2e 1,935 GB/s.
    GpuSpec("NVIDIA A100 80GB PCIe", ("A100 80GB PCIE", "A100 PCIE 80GB"),
            _fp(19.5, 19.5, 156, 312, 312), _int8(624), 1935 * G, _A100,
            notes="float64 is the FP64 tensor-core rate (vector FP64: 9.7 TFLOP/s)"),
    # H100 SXM5 (reports as "NVIDIA H100 80GB HBM3"): FP32 67, TF32 494.7, BF16/FP16 989.4, FP8 1,979,
    # INT8 1,979 TOPS (dense, Hopper whitepaper); HBM3 3.35 TB/s.
    GpuSpec("NVIDIA H100 SXM", ("H100 80GB HBM3", "H100 SXM", "H100 SXM5"),
            _fp(**_HOPPER_SXM), _int8(1979), 3350 * G, f"{_HOPPER_WP}; {_H100}",
            notes="float64 is the FP64 tensor-core rate (vector FP64: 34 TFLOP/s)"),
    # H100 PCIe: FP32 51, TF32 756*, BF16/FP16 1,513*, FP8 3,026*, INT8 3,026* TOPS (sparse, halved); HBM2e 2 TB/s.
    GpuSpec("NVIDIA H100 PCIe", ("H100 PCIE",),
            _fp(51, 51, 378, 756, 756, 1513), _int8(1513), 2000 * G, _H100,
            notes="float64 is the FP64 tensor-core rate (vector FP64: 26 TFLOP/s)"),
    # H100 NVL (94 GB): HBM3 3.9 TB/s.
    GpuSpec("NVIDIA H100 NVL", ("H100 NVL",),
            _fp(**_HOPPER_NVL), _int8(1670.5), 3900 * G, _H100,
            notes="float64 is the FP64 tensor-core rate (vector FP64: 30 TFLOP/s)"),
    # H200 SXM (reports as "NVIDIA H200"): H100 SXM compute; HBM3e 4.8 TB/s.
    GpuSpec("NVIDIA H200", ("H200", "H200 SXM"),
            _fp(**_HOPPER_SXM), _int8(1979), 4800 * G, f"{_H200}; dense figures from {_HOPPER_WP}",
            notes="float64 is the FP64 tensor-core rate (vector FP64: 34 TFLOP/s)"),
    # H200 NVL: H100 NVL compute; HBM3e 4.8 TB/s.
    GpuSpec("NVIDIA H200 NVL", ("H200 NVL",),
            _fp(**_HOPPER_NVL), _int8(1670.5), 4800 * G, _H200,
            notes="float64 is the FP64 tensor-core rate (vector FP64: 30 TFLOP/s)"),
    # V100 SXM2: FP64 7.8, FP32 15.7, tensor (FP16 in, FP32 accumulate) 125; HBM2 900 GB/s. No TF32/BF16.
    GpuSpec("NVIDIA V100 SXM2", ("V100 SXM2",),
            _fp(7.8, 15.7, None, None, 125), {}, 900 * G, _V100,
            notes="no TF32/BF16 tensor cores: bfloat16 runs on CUDA cores, no peak tabulated"),
    # V100 PCIe: FP64 7, FP32 14, tensor 112; 900 GB/s.
    GpuSpec("NVIDIA V100 PCIe", ("V100 PCIE",),
            _fp(7, 14, None, None, 112), {}, 900 * G, _V100,
            notes="no TF32/BF16 tensor cores"),
    # V100S PCIe: FP64 8.2, FP32 16.4, tensor 130; 1,134 GB/s.
    GpuSpec("NVIDIA V100S PCIe", ("V100S PCIE", "V100S"),
            _fp(8.2, 16.4, None, None, 130), {}, 1134 * G, _V100,
            notes="no TF32/BF16 tensor cores"),
    # T4: FP32 8.1, mixed FP16/FP32 65, INT8 130 TOPS; GDDR6 320 GB/s. No TF32/BF16.
    GpuSpec("NVIDIA T4", ("TESLA T4", "T4"),
            _fp(None, 8.1, None, None, 65), _int8(130), 320 * G, _T4,
            notes="no TF32/BF16 tensor cores"),
    # L4: FP32 30.3, TF32 120*, FP16/BF16 242*, FP8 485*, INT8 485* TOPS (sparse, halved); 300 GB/s.
    GpuSpec("NVIDIA L4", ("L4",),
            _fp(None, 30.3, 60, 121, 121, 242.5), _int8(242.5), 300 * G, _L4),
    # A10: FP32 31.2, TF32 62.5, BF16/FP16 125, INT8 250 TOPS; GDDR6 600 GB/s. (A10G is a different SKU.)
    GpuSpec("NVIDIA A10", ("A10",),
            _fp(None, 31.2, 62.5, 125, 125), _int8(250), 600 * G, _A10),
    # L40S: FP32 91.6, TF32 183, BF16/FP16 362.05, FP8 733, INT8 733 TOPS; GDDR6 864 GB/s.
    GpuSpec("NVIDIA L40S", ("L40S",),
            _fp(None, 91.6, 183, 362.05, 362.05, 733), _int8(733), 864 * G, _L40S),
    # L40: FP32 90.5, TF32 90.5, BF16/FP16 181.05, FP8 362, INT8 362 TOPS; GDDR6 864 GB/s.
    GpuSpec("NVIDIA L40", ("L40",),
            _fp(None, 90.5, 90.5, 181.05, 181.05, 362), _int8(362), 864 * G, _L40),
    # GeForce RTX 4090 (AD102, 128 SMs): FP32 82.6, TF32 82.6, FP16/BF16 (FP32 acc) 165.2,
    # FP8 (FP32 acc) 330.3, INT8 660.6 TOPS; GDDR6X 1,008 GB/s.
    GpuSpec("NVIDIA GeForce RTX 4090", ("GEFORCE RTX 4090", "RTX 4090"),
            _fp(None, 82.6, 82.6, 165.2, 165.2, 330.3), _int8(660.6), 1008 * G, _ADA_WP,
            exclude=("LAPTOP", "RTX 4090 D"),
            notes="float16/bfloat16/float8 with FP32 accumulate (FP16 accumulate is 2x: 330.3 TFLOP/s)"),
)


def _normalize(s: str) -> str:
    return re.sub(r"[\s\-_]+", " ", s.strip().upper())


def _token_regex(pattern: str) -> re.Pattern:
    return re.compile(r"(?<![A-Z0-9])" + re.escape(_normalize(pattern)) + r"(?![A-Z0-9])")


_COMPILED = [
    (spec, [(len(_normalize(p)), _token_regex(p)) for p in spec.patterns],
     [_token_regex(p) for p in spec.exclude])
    for spec in GPU_SPECS
]


def match_device(device_name: str | None) -> GpuSpec | None:
    """The table row for a ``torch.cuda.get_device_name`` string, or ``None`` if unknown.

    The most specific (longest) matching pattern wins; ties cannot happen (a test checks
    that no pattern appears in two rows).
    """
    if not device_name:
        return None
    name = _normalize(device_name)
    best: tuple[int, GpuSpec] | None = None
    for spec, pats, excl in _COMPILED:
        if any(rx.search(name) for rx in excl):
            continue
        for length, rx in pats:
            if rx.search(name) and (best is None or length > best[0]):
                best = (length, spec)
    return None if best is None else best[1]


def known_gpus() -> list[GpuSpec]:
    return list(GPU_SPECS)
