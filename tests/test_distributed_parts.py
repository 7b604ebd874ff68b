"""The pieces of multi-rank runs and cluster sweeps: merge, collective time, root cause,
executors (local and submitit's LocalExecutor), merged histories."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.distributed import commtime, merge
from harness.distributed.executors import LocalExecutor, make_executor
from harness.distributed.histories import merge_histories
from harness.distributed.launch import root_cause
from harness.errors import HarnessError
from harness.tracking import history


def _rank_summary(p50: float, flops: int, peak: float, host: str = "h") -> dict:
    return {"scenario": "m", "run_id": "r", "batch_size": 4, "dtype": "float32", "device": "cpu", "threads": 2,
            "tag": None, "config_key": "m|bs=4|float32|cpu|threads=2|tag=", "macs": flops // 2, "flops": flops,
            "other_flops": 10, "bytes": 1000, "latency_s": {"p50": p50, "p90": 2 * p50}, "peak_flop_per_s": peak,
            "achieved_flop_per_s": flops / p50, "utilization": flops / p50 / peak, "mem_bandwidth_bytes_per_s": 5e9,
            "peak_memory_bytes": int(p50 * 1e6), "trace_files": [f"rank.{p50}.pt.trace.json"], "trace_bytes": 100}


def test_job_summary_sums_work_and_takes_the_slowest_rank():
    ranks = [_rank_summary(0.010, 2000, 1e9), _rank_summary(0.025, 2000, 1e9), _rank_summary(0.020, 2000, 1e9)]
    comms = [{"comm_time_s": 0.001, "iteration_time_s": 0.010}, {"comm_time_s": 0.002, "iteration_time_s": 0.030},
             {"comm_time_s": 0.0, "iteration_time_s": 0.020}]
    s = merge.job_summary(ranks, comms, ["a", "a", "b"], [0, 1, 0], backend="gloo")
    assert (s["world_size"], s["slowest_rank"], s["fastest_rank"]) == (3, 1, 0)
    assert (s["flops"], s["macs"], s["other_flops"], s["bytes"]) == (6000, 3000, 30, 3000)
    assert s["latency_s"] == {"p50": 0.025, "p90": 0.05}
    assert s["imbalance"] == pytest.approx(2.5)
    assert s["achieved_flop_per_s"] == pytest.approx(6000 / 0.025)
    assert s["throughput_samples_per_s"] == pytest.approx(12 / 0.025)
    assert s["peak_flop_per_s"] == pytest.approx(3e9)
    assert s["utilization"] == pytest.approx(6000 / 0.025 / 3e9)
    assert s["comm_share"] == pytest.approx(0.003 / 0.060)
    assert s["comm_time_s"] == pytest.approx(0.001)
    assert s["mem_bandwidth_bytes_per_s"] == pytest.approx(10e9)  # CPU ranks share their host's memory: 2 hosts
    assert s["peak_memory_bytes"] == 25000
    assert s["config_key"] == "m|bs=4|float32|cpu|threads=2|tag=|world_size=3|backend=gloo"
    assert [r["rank"] for r in s["ranks"]] == [0, 1, 2] and s["ranks"][2]["host"] == "b"


def test_comm_time_is_the_union_of_collectives_inside_iterations():
    ev = lambda name, ts, dur, cat="cpu_op": {"ph": "X", "name": name, "ts": ts, "dur": dur, "cat": cat}  # noqa: E731
    trace = {"traceEvents": [
        ev("model_inference", 0, 100, "user_annotation"), ev("model_inference", 200, 100, "user_annotation"),
        ev("c10d::allreduce_", 50, 40), ev("gloo:all_reduce", 60, 40, "user_annotation"),  # 50..100 once
        ev("c10d::allreduce_", 280, 40),  # 280..300 inside the iteration, 300..320 outside
        ev("aten::addmm", 0, 50),
    ]}
    f = commtime.comm_figures(trace)
    assert f["iterations"] == 2
    assert f["iteration_time_s"] == pytest.approx(100e-6)
    assert f["comm_time_s"] == pytest.approx((50 + 20) / 2 * 1e-6)
    assert f["comm_share"] == pytest.approx(0.35)
    assert commtime.comm_figures({"traceEvents": []})["comm_share"] is None


def test_root_cause_is_the_earliest_own_error(tmp_path: Path):
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    def failure(rank: int, t: float, peer: bool, msg: str) -> ProcessFailure:
        f = tmp_path / f"err{rank}.json"
        f.write_text(json.dumps({"message": msg, "timestamp": int(t), "harness": {"time": t, "peer": peer}}))
        return ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=2, error_file=str(f))

    failures = {0: failure(0, 10.0, True, "rank 0 of 3 (h) failed: barrier failed"),
                1: failure(1, 10.5, False, "rank 1 of 3 (h) failed: boom"),
                2: failure(2, 10.7, False, "rank 2 of 3 (h) failed: later")}
    assert root_cause(failures, 3) == "rank 1 of 3 (h) failed: boom"
    killed = {3: ProcessFailure(local_rank=3, pid=1, exitcode=-9, error_file=str(tmp_path / "none"))}
    assert root_cause(killed, 4).startswith("rank 3 of 4 failed: exit code -9 (Signal 9 (SIGKILL)")


def test_local_executor_yields_results_and_exceptions_in_order():
    def fn(x):
        if x == 2:
            raise HarnessError("two is bad")
        return x * 10

    seen = []
    out = list(LocalExecutor().map(fn, [1, 2, 3], progress=lambda i, p, st: seen.append((i, p, st))))
    assert [p for p, _ in out] == [1, 2, 3]
    assert out[0][1] == 10 and out[2][1] == 30
    assert isinstance(out[1][1], HarnessError) and out[1][1].message == "two is bad"
    assert seen == [(0, 1, "started"), (0, 1, "finished"), (1, 2, "started"), (1, 2, "failed"),
                    (2, 3, "started"), (2, 3, "finished")]
    with pytest.raises(HarnessError, match="use one of local, submitit"):
        make_executor("dask")


def test_submitit_local_sweep_two_points(tmp_path: Path, tiny_scenario: Path):
    """`sweep --executor submitit --submitit-local`: the CLI, through submitit's local executor."""
    pytest.importorskip("submitit", reason="submitit is not installed (pip install 'harness[cluster]')")
    import json

    from conftest import run_cli

    logdir = tmp_path / "logs"
    proc = run_cli("sweep", str(tiny_scenario), "--batch-sizes", "1,2", "--threads", "1", "--warmup", "1",
                   "--iters", "3", "--executor", "submitit", "--submitit-local", "--logdir", str(logdir),
                   "--no-plot", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [r["batch_size"] for r in out["points"]] == [1, 2] and {r["status"] for r in out["points"]} == {"ok"}
    # tiny: conv 3->8 3x3 on 16x16 (8*16*16*27 MACs) + linear 512->10, per sample; FLOPs = 2 x MACs
    per_sample = 8 * 16 * 16 * 27 + 512 * 10
    assert [r["flops"] for r in out["points"]] == [2 * per_sample, 4 * per_sample]
    assert len(history.read(logdir)) == 2
    sweep_dir = Path(out["path"])
    assert json.loads((sweep_dir / "sweep.json").read_text())["executor"] == "submitit"
    assert len(list((sweep_dir / "submitit").glob("*_result.pkl"))) == 2  # they really went through submitit


def _summary(run_id: str, started: str, logdir: Path) -> dict:
    return {"run_id": run_id, "started_at": started, "scenario": "m", "batch_size": 1, "dtype": "float32",
            "device": "cpu", "threads": 1, "latency_s": {"p50": 0.01}, "path": str(logdir / "m" / run_id)}


def test_history_merge_cli(tmp_path: Path):
    from conftest import run_cli

    a, out = tmp_path / "a", tmp_path / "out"
    history.append(a, _summary("r1", "2026-01-01T00:00:00Z", a))
    history.append(a, _summary("r2", "2026-01-02T00:00:00Z", a))
    proc = run_cli("history", "--logdir", str(out), "--merge", str(a), cwd=tmp_path)
    assert proc.returncode == 0 and "2 rows added" in proc.stdout, proc.stderr
    assert list(history.read(out).run_id) == ["r1", "r2"]


def test_merge_histories_adds_each_run_once(tmp_path: Path):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    history.append(a, _summary("r2", "2026-01-02T00:00:00Z", a))
    history.append(b, _summary("r1", "2026-01-01T00:00:00Z", b))
    history.append(out, _summary("r2", "2026-01-02T00:00:00Z", a))  # already merged once
    assert merge_histories([a, b / "history.csv"], out) == 1
    merged = history.read(out)
    assert list(merged.run_id) == ["r1", "r2"]
    assert Path(merged.run_dir[0]) == (b / "m" / "r1").resolve()  # outside out: absolute
    assert merge_histories([a, b], out) == 0
    assert len(pd.read_csv(out / "history.csv")) == 2
