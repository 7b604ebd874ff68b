"""What a run says about itself: ceilings exceeded (peak_exceeded), summary.warnings, --tag.

The ceiling is set the way a user sets it: a calibration file in the cache directory that
`harness calibrate` would write (here with a figure far too low), read by a real CLI run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from conftest import TINY_SCENARIO, run_cli, write_scenario
from harness.core.units import si
from harness.hardware.peak import Peak
from harness.pipeline.assemble import peak_exceeded

QUICK = ("--iters", "2", "--warmup", "1", "--active", "1", "--top", "0")
# the tiny scenario, batch 2 (tests/test_run_e2e.py): conv 2*8*16*16*27 + linear 2*10*512 MACs
TINY_FLOPS = 2 * (2 * 8 * 16 * 16 * 3 * 3 * 3 + 2 * 10 * 512)  # 2 x 120,832 = 241,664


def test_peak_exceeded_by_hand():
    peak = Peak("Test CPU", "float32", 2e9, None, "calibrated", "n")
    summary = {"scenario": "m", "achieved_flop_per_s": 2.2e9}
    nan = math.nan
    ops = pd.DataFrame({
        "name": ["aten::addmm", "aten::conv2d", "aten::mm", "aten::relu", "aten::bmm", "model_inference"],
        "kind": ["op", "op", "op", "op", "op", "range"],
        "achieved_flop_per_s": [3e9, 1e9, 2e9, nan, 5e9, 9e9],
        # mm at its ceiling exactly is not above it; bmm has no ceiling; a range row is not an op
        "peak_flop_per_s": [2e9, 2e9, 2e9, nan, nan, 2e9],
    })
    modules = pd.DataFrame({"path": ["[model]", "encoder", "head"], "achieved_flop_per_s": [2.2e9, 2.5e9, 1e9],
                            "peak_flop_per_s": [2e9, 2e9, 2e9]})
    assert peak_exceeded(summary, ops, modules, peak) == [
        {"what": "run", "name": "m", "achieved_flop_per_s": 2.2e9, "ceiling_flop_per_s": 2e9, "source": "calibrated"},
        {"what": "op", "name": "aten::addmm", "achieved_flop_per_s": 3e9, "ceiling_flop_per_s": 2e9,
         "source": "calibrated"},
        {"what": "module", "name": "[model]", "achieved_flop_per_s": 2.2e9, "ceiling_flop_per_s": 2e9,
         "source": "calibrated"},
        {"what": "module", "name": "encoder", "achieved_flop_per_s": 2.5e9, "ceiling_flop_per_s": 2e9,
         "source": "calibrated"},
    ]
    # at the ceiling is not above it; an unknown ceiling judges nothing
    assert peak_exceeded({**summary, "achieved_flop_per_s": 2e9}, ops.iloc[1:2], modules.iloc[2:], peak) == []
    unknown = Peak("Test CPU", "float32", None, None, "unknown", "n")
    assert peak_exceeded(summary, ops, modules, unknown) == []


def _calibrate_to(threads: int, flop_per_s: float) -> None:
    """The calibration file `harness calibrate --threads N` would leave in $HARNESS_CACHE_DIR, with this
    fp32 figure."""
    from harness.core.fsio import atomic_write_json
    from harness.hardware.calibration import SCHEMA, calibration_path
    from harness.hardware.cpu import cpu_id, cpu_info

    info = cpu_info()
    atomic_write_json(calibration_path(threads, info), {
        "schema": SCHEMA, "key": {"cpu": cpu_id(info), "threads": threads}, "created": "2026-01-01T00:00:00+00:00",
        "threads": threads, "flop_per_s": {"float32": flop_per_s}, "measured_path": {"float32": "fma"}})


def test_a_ceiling_set_too_low_is_reported_as_the_ceilings_fault(tmp_path, monkeypatch):
    """1 kFLOP/s as this CPU's calibrated fp32 ceiling: the run, its matmul/conv ops and the modules
    that hold them all achieve more (the tiny model's 241,664 FLOPs in far less than 4 minutes)."""
    scen = write_scenario(tmp_path, "tiny", TINY_SCENARIO)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))  # this test's own, for the CLI too
    _calibrate_to(threads=1, flop_per_s=1e3)
    proc = run_cli("run", str(scen), "--threads", "1", "--logdir", str(tmp_path / "logs"), *QUICK)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = [d for d in (tmp_path / "logs" / "tiny").iterdir() if (d / "summary.json").is_file()]
    s = json.loads((run_dir / "summary.json").read_text())
    assert (s["peak_flop_per_s"], s["peak_source"], s["flops"]) == (1e3, "calibrated", TINY_FLOPS)
    exceeded = s["peak_exceeded"]
    assert exceeded[0] == {"what": "run", "name": "tiny", "achieved_flop_per_s": s["achieved_flop_per_s"],
                           "ceiling_flop_per_s": 1e3, "source": "calibrated"}
    # every op and module that did multiply-add work in measurable time is listed, nothing else
    ops = pd.read_csv(run_dir / "ops.csv")
    mods = pd.read_csv(run_dir / "modules.csv")
    working_ops = set(ops[(ops.kind == "op") & (ops.achieved_flop_per_s > 1e3)].name)
    assert {x["name"] for x in exceeded if x["what"] == "op"} == working_ops
    assert {"aten::conv2d", "aten::linear"} & working_ops  # the conv and the linear did the MACs
    assert {x["name"] for x in exceeded if x["what"] == "module"} == set(mods[mods.achieved_flop_per_s > 1e3].path)
    assert all(x["ceiling_flop_per_s"] == 1e3 and x["source"] == "calibrated" for x in exceeded)
    # the warnings, one line each: a disturbed profiled pass first when this busy machine disturbed it
    # (other tests share the CPUs), then the first three places above the ceiling
    pp = s["contention"]["profiled_pass"]
    disturbed = [f"the profiled pass was disturbed ({pp['reason']}): per-op times are not comparable"]
    assert s["warnings"] == (disturbed if pp["disturbed"] else []) + [
        f"{x['what']} {x['name']}: achieved {si(x['achieved_flop_per_s'], 'FLOP/s')} is above the calibrated "
        "ceiling 1.00 KFLOP/s: the ceiling is wrong, not the result" for x in exceeded[:3]]
    assert len(exceeded) > 3  # the run, 2 ops, 3 modules at least: only three are worded
    # the terminal words it once for every place (report/caveats.py): three named, then a count
    named = "; ".join(f"{x['what']} {x['name']} at {si(x['achieved_flop_per_s'], 'FLOP/s')} > 1.00 KFLOP/s "
                      "(calibrated)" for x in exceeded[:3])
    assert (f"warning: peak exceeded: {named} and {len(exceeded) - 3} more — the ceiling is wrong, not the result"
            in proc.stdout.splitlines())


def test_tag_reaches_the_summary_the_config_key_and_history(tmp_path):
    scen = write_scenario(tmp_path, "tiny", TINY_SCENARIO)
    logdir = tmp_path / "logs"
    tagged = run_cli("run", str(scen), "--threads", "1", "--logdir", str(logdir), "--tag", "nightly-7", "--json",
                     *QUICK)
    assert tagged.returncode == 0, tagged.stderr
    plain = run_cli("run", str(scen), "--threads", "1", "--logdir", str(logdir), "--json", *QUICK)
    assert plain.returncode == 0, plain.stderr
    s, p = json.loads(tagged.stdout), json.loads(plain.stdout)
    assert s["tag"] == "nightly-7" and p["tag"] is None
    assert s["config_key"] == "tiny|bs=2|float32|cpu|threads=1|tag=nightly-7"
    assert p["config_key"] == "tiny|bs=2|float32|cpu|threads=1|tag="  # a tag makes its own config
    assert json.loads((Path(s["path"]) / "summary.json").read_text())["tag"] == "nightly-7"
    hist = pd.read_csv(logdir / "history.csv", dtype={"tag": str}).set_index("run_id")
    assert hist.loc[s["run_id"], "tag"] == "nightly-7" and pd.isna(hist.loc[p["run_id"], "tag"])
    assert hist.loc[s["run_id"], "config_key"] == s["config_key"]
    assert hist.loc[p["run_id"], "config_key"] == p["config_key"]
