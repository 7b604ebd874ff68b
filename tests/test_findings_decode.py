"""The ``decode:mbu`` finding (harness.findings.decode): a generate run's MBU and where a decode step's
p50 goes instead, on a hand-built run whose arithmetic is written out here, and on a real tiny_llama run."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.findings import FAMILIES, decode
from harness.findings.analyze import FAMILY_MODULES, find
from harness.findings.context import Context
from harness.hardware.ceilings import Peak

from conftest import run_cli

STEPS = 4


def peak(bw: float) -> Peak:
    return Peak(name="test device", dtype="float32", flop_per_s=1e12, bytes_per_s=bw, source="table", note="test",
                op_ceilings={"matmul": (1e12, "float32"), "other": (1e12, "float32")})


def generate_ctx(*, step_s: float = 2e-3, overhead_s: float = 2e-6, pk: Peak | None = None,
                 workload: str = "generate") -> Context:
    """4 decode steps of 4 MB and 2 MFLOP each, step p50 ``step_s``, generation p50 10 ms.

    Per generation: prefill 100 calls, 6.1 ms profiled; decode 400 calls (100 a step), 4.4 ms profiled
    (1.1 ms a step). The profiler's cost per call p = (10.5 ms profiled - 10 ms p50) / 500 calls = 1 us.
    The decode op row reached 10 GB/s (the bandwidth when no peak is given)."""
    ops = pd.DataFrame([
        {"name": "aten::linear", "phase": "prefill", "kind": "op", "dispatch_calls": 100, "self_time_s": 6.1e-3,
         "bytes": 1e6, "achieved_bytes_per_s": 1e9},
        {"name": "aten::linear", "phase": "decode", "kind": "op", "dispatch_calls": 400, "self_time_s": 4.4e-3,
         "bytes": 4 * 4e6, "achieved_bytes_per_s": 10e9}])
    summary = {"workload": workload, "new_tokens": STEPS, "latency_s": {"p50": 10e-3},
               "profiled": {"time_per_iteration_s": 12e-3}, "decode_step_s": {"p50": step_s}, "dtype": "float32",
               "phases": {"decode": {"bytes_per_step": 4e6, "flops_per_step": 2e6, "weights_bytes": 3.9e6,
                                     "kv_read_bytes_per_step": 1e5, "kv_written_bytes_per_step": 1e3}}}
    return Context(summary=summary, ops=ops, ops_by_shape=ops, modules=pd.DataFrame(), peak=pk, overhead_s=overhead_s)


def test_registered():
    assert "decode" in FAMILIES and decode in FAMILY_MODULES


@pytest.mark.parametrize("pk, source", [(peak(10e9), "DRAM 10.0 GB/s"), (None, "fastest op of this run")])
def test_step_split_into_floor_kernels_dispatch_and_python(pk, source):
    (f,) = decode.find(generate_ctx(pk=pk))
    # MBU = 4 MB / 2 ms / 10 GB/s = 20 %
    assert f.id == "decode:mbu" and f.family == "decode" and f.phase == "decode"
    assert "MBU = 4.00 MB per step" in f.arithmetic and "= 20.0%" in f.arithmetic and source in f.arithmetic
    floor, beyond, dispatch, between = f.evidence
    # floor: max(4 MB / 10 GB/s = 400 us, 2 MFLOP / 1 TFLOP/s = 2 us) = 400 us
    assert floor["step_s"] == pytest.approx(400e-6) and floor["step_bytes"] == 4e6
    assert floor["weights_bytes"] == 3.9e6 and floor["kv_read_bytes"] == 1e5
    # beyond: 1.1 ms profiled - 100 calls x 1 us - 400 us = 600 us; dispatch: 100 calls x 2 us = 200 us
    assert beyond["calls"] == 100 and beyond["step_s"] == pytest.approx(600e-6)
    assert dispatch["step_s"] == pytest.approx(200e-6)
    # between: 2 ms - (400 + 600 + 200) us = 800 us
    assert between["step_s"] == pytest.approx(800e-6)
    assert [r["step_share"] for r in f.evidence] == pytest.approx([0.2, 0.3, 0.1, 0.4])
    assert floor["iteration_s"] == pytest.approx(STEPS * 400e-6)
    # against the fastest op's rate (a lower bound of the bandwidth) the MBU is an upper bound
    at = "at 20.0%" if pk else "at most 20.0%"
    assert f.title == f"decode {at} of bandwidth: 50.0% of a step is Python and dispatch between ops"
    # saved (the kernels at their roofline; dispatch and between are the compiled/fragments findings'):
    # 4 steps x 600 us = 2.4 ms of the generation's 10 ms; the bound 4 x (2 ms - 400 us) = 64 %
    assert f.saved_s == pytest.approx(2.4e-3) and f.saved_share == pytest.approx(0.24)
    assert "4 x 1.6 ms = 6.4 ms = 64.0%" in f.arithmetic
    assert f.time_s == pytest.approx(4.4e-3) and f.time_share == pytest.approx(4.4 / 12)
    assert f.needs_code_change and f.ab_side is None and f.ab is None and not f.verifiable
    assert set(f.evidence_columns) >= {"part", "step_s", "step_share", "step_bytes", "iteration_s"}


def test_parts_beyond_the_p50_are_scaled_to_it():
    # overhead 14 us: dispatch 100 x 14 us = 1.4 ms; 400 + 600 + 1,400 us = 2.4 ms > 2 ms, so beyond and
    # dispatch are scaled by (2 ms - 400 us) / (600 + 1,400) us = 0.8: 480 us and 1.12 ms; between 0
    (f,) = decode.find(generate_ctx(overhead_s=14e-6, pk=peak(10e9)))
    assert [r["step_s"] for r in f.evidence] == pytest.approx([400e-6, 480e-6, 1.12e-3, 0.0])
    assert sum(r["step_s"] for r in f.evidence) == pytest.approx(2e-3)
    assert "scaled by 0.8" in f.arithmetic
    assert f.saved_share == pytest.approx(STEPS * 480e-6 / 10e-3)  # 19.2 %


def test_no_finding_at_high_mbu_or_outside_generate():
    # 4 MB / 0.7 ms / 10 GB/s = 57 %: at or above MAX_MBU (50 %)
    assert decode.find(generate_ctx(step_s=0.7e-3, pk=peak(10e9))) == []
    assert decode.find(generate_ctx(pk=peak(10e9), workload="forward")) == []
    assert not [f for f in find(generate_ctx(pk=peak(10e9), workload="forward")) if f.family == "decode"]


def test_tiny_llama_generation_end_to_end(tmp_path: Path):
    proc = run_cli("run", "tiny_llama", "--workload", "generate", "--prompt-len", "8", "--new-tokens", "4",
                   "--iters", "3", "--warmup", "1", "--active", "1", "--threads", "1", "--top", "0",
                   "--logdir", str(tmp_path), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads(proc.stdout)
    doc = json.loads((Path(s["path"]) / "findings.json").read_text())
    f = next(x for x in doc["findings"] if x["id"] == "decode:mbu")
    p50 = s["decode_step_s"]["p50"]
    # the four parts are one step's p50 (scaled to it when they outlast it)
    assert [r["part"] for r in f["evidence"]][0] == "floor (roofline)" and len(f["evidence"]) == 4
    assert sum(r["step_s"] for r in f["evidence"]) == pytest.approx(p50)
    assert f["evidence"][0]["step_bytes"] == s["phases"]["decode"]["bytes_per_step"]
    assert f["saved_share"] == pytest.approx(4 * f["evidence"][1]["step_s"] / s["latency_s"]["p50"])
    assert f["needs_code_change"] and f["ab_side"] is None
