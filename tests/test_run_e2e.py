"""End to end through the CLI and the Python API, with the real torch.profiler and real files."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli

SUMMARY_KEYS = {"schema_version", "scenario", "run_id", "started_at", "device", "device_name", "dtype", "batch_size",
                "threads", "params", "macs", "flops", "latency_s", "achieved_flop_per_s", "peak_flop_per_s",
                "peak_source", "utilization", "peak_memory_bytes", "coverage", "torch_version",
                "mem_bandwidth_bytes_per_s", "arithmetic_intensity", "trace_bytes", "config_key", "env_key"}
OPS_COLUMNS = {"name", "calls", "cpu_time_total_s", "self_cpu_time_total_s", "cpu_memory_usage_bytes",
               "self_cpu_memory_usage_bytes", "macs", "flops", "other_flops", "bytes", "self_time_s",
               "achieved_flop_per_s", "achieved_bytes_per_s", "arithmetic_intensity", "peak_flop_per_s",
               "peak_bytes_per_s", "utilization", "bound", "time_share"}

# The tiny scenario (conftest.TINY_SCENARIO), batch 2:
#   conv 3->8, 3x3, pad 1 on 16x16: 2 * 8*16*16 outputs * 3*3*3 MACs each = 2 * 2048 * 27 = 110,592 MACs
#   linear 512 -> 10:                2 * 10 outputs * 512 MACs each        =              10,240 MACs
TINY_CONV_MACS = 2 * 8 * 16 * 16 * 3 * 3 * 3
TINY_LINEAR_MACS = 2 * 10 * 512
TINY_PARAMS = (8 * 3 * 9 + 8) + (512 * 10 + 10)  # 224 + 5,130 = 5,354


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One real `python -m harness run` of the tiny scenario, shared by the checks below."""
    from conftest import TINY_SCENARIO
    import textwrap

    d = tmp_path_factory.mktemp("e2e")
    scen = d / "tiny.py"
    scen.write_text(textwrap.dedent(TINY_SCENARIO))
    logdir = d / "logs"
    proc = run_cli("run", str(scen), "--logdir", str(logdir), "--iters", "7", "--warmup", "2", "--top", "5")
    assert proc.returncode == 0, proc.stderr
    runs = [p for p in (logdir / "tiny").iterdir() if (p / "summary.json").exists()]
    assert len(runs) == 1
    return proc, runs[0], logdir


def test_terminal_summary_is_readable(cli_run):
    proc, run_dir, logdir = cli_run
    out = proc.stdout
    for words in ["params", "5.35 K", "latency", "p50", "achieved", "utilization", "peak memory",
                  "Top 5 operators", "aten::conv2d", f"tensorboard --logdir {logdir}"]:
        assert words in out, words
    assert "Traceback" not in proc.stderr


def test_run_directory_files(cli_run):
    _, run_dir, _ = cli_run
    names = {p.name for p in run_dir.iterdir()}
    assert {"summary.json", "ops.csv", "ops_by_shape.csv", "modules.csv", "samples.csv", "env.json"} <= names
    traces = [n for n in names if n.endswith(".pt.trace.json")]
    assert len(traces) == 1 and not any(n.startswith(".") for n in names)
    trace = json.loads((run_dir / traces[0]).read_text())
    labels = {e.get("name") for e in trace["traceEvents"]}
    assert "model_inference" in labels and "aten::addmm" in labels


def test_summary_contract(cli_run):
    _, run_dir, _ = cli_run
    s = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(s)
    assert s["schema_version"] == 3 and s["scenario"] == "tiny" and s["batch_size"] == 2
    assert set(s["latency_s"]) >= {"p50", "p90", "p99", "mean", "std", "min", "n"} and s["latency_s"]["n"] == 7
    assert s["params"] == TINY_PARAMS
    assert s["flops"] == 2 * s["macs"]
    assert s["achieved_flop_per_s"] * s["latency_s"]["p50"] == pytest.approx(s["flops"], rel=1e-12)
    assert s["peak_flop_per_s"] and s["peak_source"] in {"table", "derived", "calibrated"}
    assert s["utilization"] == pytest.approx(s["achieved_flop_per_s"] / s["peak_flop_per_s"])
    assert s["trace_bytes"] > 0 and s["coverage"]["share_of_ops"] == 1.0


def test_csvs_load_with_documented_columns(cli_run):
    _, run_dir, _ = cli_run
    ops = pd.read_csv(run_dir / "ops.csv")
    assert OPS_COLUMNS <= set(ops.columns)
    by_shape = pd.read_csv(run_dir / "ops_by_shape.csv")
    assert {"name", "input_shapes"} | OPS_COLUMNS <= set(by_shape.columns)
    mods = pd.read_csv(run_dir / "modules.csv", keep_default_na=False)
    assert {"path", "type", "depth", "params", "macs", "flops", "time_s", "achieved_flop_per_s", "utilization"} <= set(mods.columns)
    samples = pd.read_csv(run_dir / "samples.csv")
    assert list(samples.columns) == ["iteration", "latency_s", "attempt", "kept"] and len(samples) == 7
    assert samples.kept.all() and (samples.attempt == 0).all()  # one attempt, kept
    phases = pd.read_csv(run_dir / "phase_samples.csv")
    assert list(phases.columns) == ["iteration", "phase", "index", "latency_s"] and len(phases) == 7


def test_join_by_hand_on_known_shapes(cli_run):
    """Work sits on the op that does it; sums add up to the counter's totals and the profiled time."""
    _, run_dir, _ = cli_run
    s = json.loads((run_dir / "summary.json").read_text())
    by_shape = pd.read_csv(run_dir / "ops_by_shape.csv")
    # under inference_mode the dispatcher hands conv2d and linear to the counter whole
    conv = by_shape[by_shape.name == "aten::conv2d"]
    assert conv.macs.sum() == TINY_CONV_MACS == 110_592
    assert conv.input_shapes.iloc[0] == "[[2, 3, 16, 16], [8, 3, 3, 3], [8], [], [], [], []]"
    linear = by_shape[by_shape.name == "aten::linear"]
    assert linear.macs.sum() == TINY_LINEAR_MACS == 10_240
    assert linear.input_shapes.iloc[0] == "[[2, 512], [10, 512], [10]]"
    # the kernels beneath carry no work and no time of their own: it is in their op's row, counted once
    for kernel in ("aten::addmm", "aten::mkldnn_convolution"):
        nested = by_shape[by_shape.name == kernel]
        assert (nested.self_time_s == 0).all() and (nested.flops == 0).all()
        assert nested.self_cpu_time_total_s.sum() > 0
    assert conv.self_time_s.sum() == pytest.approx(conv.cpu_time_total_s.sum(), rel=1e-9)
    for df in (by_shape, pd.read_csv(run_dir / "ops.csv")):
        assert df.flops.sum() == s["flops"]
        assert df.macs.sum() == s["macs"]
        assert df.other_flops.sum() == s["other_flops"]
        assert df.self_time_s.sum() == pytest.approx(s["profiled"]["time_per_forward_s"], rel=1e-9)
        # every profiled microsecond once: attributed times add up to the profiler's own self-time total
        assert df.self_time_s.sum() == pytest.approx(df.self_cpu_time_total_s.sum(), rel=1e-9)
    # read with pandas' defaults: the whole-model row is "(model)", not an empty path that becomes NaN
    mods = pd.read_csv(run_dir / "modules.csv").set_index("path")
    assert mods.loc["0", "macs"] == TINY_CONV_MACS and mods.loc["4", "macs"] == TINY_LINEAR_MACS
    assert mods.loc["(model)", "macs"] == s["macs"]
    assert mods.loc["(model)", "time_s"] == pytest.approx(mods.drop(index="(model)").time_s.sum(), rel=1e-9)
    assert mods.loc["(model)", "time_s"] == pytest.approx(s["profiled"]["op_time_per_forward_s"], rel=1e-9)
    assert (mods.phase == "forward").all()


def test_python_api_matches_contract(tiny_scenario, tmp_path):
    import harness

    run = harness.run_scenario(str(tiny_scenario), logdir=tmp_path, warmup=1, iters=3)
    assert run.path is not None and run.path.parent == tmp_path / "tiny"
    assert run.summary["macs"] == TINY_CONV_MACS + TINY_LINEAR_MACS
    for df in (run.ops, run.ops_by_shape, run.modules, run.samples):
        assert isinstance(df, pd.DataFrame) and len(df)
    # no logdir: nothing written, same numbers
    import torch

    model = torch.nn.Linear(64, 32)
    r = harness.profile(model, torch.randn(4, 64), warmup=1, iters=3)
    assert r.path is None and r.summary["macs"] == 4 * 64 * 32 and r.summary["params"] == 64 * 32 + 32


def test_json_output_and_gzip(tiny_scenario, tmp_path):
    proc = run_cli("run", str(tiny_scenario), "--logdir", str(tmp_path), "--iters", "2", "--warmup", "1", "--json", "--gzip")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["scenario"] == "tiny" and s["trace_files"][0].endswith(".pt.trace.json.gz")
    trace = json.loads(gzip.decompress((Path(s["path"]) / s["trace_files"][0]).read_bytes()))
    assert any(e.get("name") == "model_inference" for e in trace["traceEvents"])


def test_unknown_scenario_exit_2_one_line():
    proc = run_cli("run", "vgg61")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "vgg16" in proc.stderr and "Traceback" not in proc.stderr


def test_cuda_without_gpu_exit_2_and_auto_falls_back_to_cpu(tiny_scenario, tmp_path):
    # No GPU visible on any host: CUDA_VISIBLE_DEVICES="" hides a GPU machine's devices from the run
    hidden = {"CUDA_VISIBLE_DEVICES": ""}
    logdir = tmp_path / "logs"
    proc = run_cli("run", str(tiny_scenario), "--device", "cuda", "--logdir", str(logdir), env=hidden)
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(p.is_file() for p in logdir.rglob("*"))  # checked before any work: nothing written
    auto = run_cli("run", str(tiny_scenario), "--device", "auto", "--logdir", str(logdir), "--iters", "2",
                   "--warmup", "1", "--active", "1", "--json", "--top", "0", env=hidden)
    assert auto.returncode == 0, auto.stderr
    s = json.loads(auto.stdout)
    assert s["device"] == "cpu" and s["macs"] == TINY_CONV_MACS + TINY_LINEAR_MACS
    # an index beyond this machine's GPUs (none, or fewer than 100) is refused the same way everywhere
    far = run_cli("run", str(tiny_scenario), "--device", "cuda:99", "--logdir", str(tmp_path / "far"))
    assert far.returncode == 2 and "Traceback" not in far.stderr and len(far.stderr.strip().splitlines()) == 1
    assert "--device cuda" in far.stderr
    assert not any(p.is_file() for p in (tmp_path / "far").rglob("*"))
