"""Multi-rank runs: real 2-process gloo jobs launched through torch's elastic agent."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli, write_scenario

# Linear(64,128) + Linear(128,10) per sample: 64*128 + 128*10 = 9472 MACs = 18944 FLOPs.
RANK_FLOPS = 2 * (64 * 128 + 128 * 10)

# The scenario's wrap() sums the outputs of all ranks (a collective in every forward).
SUMMED = '''
import torch
import torch.distributed as dist
from torch import nn


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 64, device=device)


class SumOutputs(nn.Module):
    def __init__(self, inner, group):
        super().__init__()
        self.inner, self.group = inner, group

    def forward(self, x):
        y = self.inner(x)
        dist.all_reduce(y, group=self.group)
        return y


def wrap(model, process_group):
    return SumOutputs(model, process_group)
'''

# Rank 1 raises in forward; every rank writes its pid so the test can check none is left.
RAISES = '''
import os
import torch
from torch import nn


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(8, 8)

    def forward(self, x):
        if os.environ["RANK"] == "1":
            raise RuntimeError("boom on rank one")
        return self.l(x)


def build_model():
    with open(os.path.join(os.environ["PID_DIR"], "rank" + os.environ["RANK"]), "w") as f:
        f.write(str(os.getpid()))
    return M()


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 8, device=device)
'''

# Rank 1 hangs while building its model (never reaches the ranks' first barrier); pids as RAISES.
HANGS = '''
import os
import time
import torch
from torch import nn


def build_model():
    with open(os.path.join(os.environ["PID_DIR"], "rank" + os.environ["RANK"]), "w") as f:
        f.write(str(os.getpid()))
    if os.environ["RANK"] == "1":
        time.sleep(3600)
    return nn.Linear(8, 8)


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 8, device=device)
'''

QUICK = ("--warmup", "1", "--iters", "3", "--active", "2", "--top", "0")


def test_two_ranks_one_job(tmp_path: Path):
    sc = write_scenario(tmp_path, "summed", SUMMED)
    logdir = tmp_path / "logs"
    r = run_cli("run", str(sc), "--nproc-per-node", "2", "--logdir", str(logdir), *QUICK)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "straggler: rank" in r.stdout
    (job,) = [p for p in (logdir / "summed").iterdir() if p.name != "trends"]
    assert not job.name.startswith(".")
    s = json.loads((job / "summary.json").read_text())
    assert (s["world_size"], s["backend"]) == (2, "gloo")
    assert [row["rank"] for row in s["ranks"]] == [0, 1]
    # every rank's figures, and the job's: sums over ranks against the slowest rank's median
    for k, row in enumerate(s["ranks"]):
        rs = json.loads((job / f"rank{k}" / "summary.json").read_text())
        assert rs["flops"] == row["flops"] == RANK_FLOPS
        assert row["latency_s"]["p50"] == rs["latency_s"]["p50"]
        assert row["achieved_flop_per_s"] == pytest.approx(RANK_FLOPS / rs["latency_s"]["p50"])
        assert (job / f"rank{k}" / "ops.csv").is_file() and (job / f"rank{k}" / "samples.csv").is_file()
        assert 0 < row["comm_time_s"] and 0 < row["comm_share"] < 1  # the all_reduce of every forward
    p50 = [row["latency_s"]["p50"] for row in s["ranks"]]
    assert s["flops"] == 2 * RANK_FLOPS
    assert s["slowest_rank"] == p50.index(max(p50))
    assert s["latency_s"]["p50"] == max(p50)
    assert s["imbalance"] == pytest.approx(max(p50) / min(p50))
    assert s["achieved_flop_per_s"] == pytest.approx(2 * RANK_FLOPS / max(p50))
    # one trace per rank, worker rank<k>, with torch.profiler's distributedInfo
    traces = sorted(job.glob("*.pt.trace.json"))
    assert [t.name.split(".")[0] for t in traces] == ["rank0", "rank1"]
    assert len({t.name.split(".")[1] for t in traces}) == 1  # one span: the plugin shows one run, two workers
    for k, t in enumerate(traces):
        info = json.loads(t.read_text())["distributedInfo"]
        assert (info["rank"], info["world_size"], info["backend"]) == (k, 2, "gloo")
    hist = pd.read_csv(logdir / "history.csv")
    assert len(hist) == 1 and hist.run_id[0] == s["run_id"]
    assert hist.config_key[0].endswith("|world_size=2|backend=gloo")
    # the torch-tb-profiler plugin, over real HTTP: one run, one worker per rank
    from tbserver import PROFILER, TensorBoardServer

    with TensorBoardServer(logdir) as tb:
        run = tb.wait_for(lambda: [r for r in tb.profiler_runs() if job.name in r], what="the job's run")[0]
        workers = tb.wait_for(lambda: tb.json(PROFILER + "/workers", {"run": run, "view": "Overview"}),
                              what="the job's workers")
        assert sorted(workers) == ["rank0", "rank1"]


PLAIN_MLP = '''
import torch
from torch import nn

batch_size = 4


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 8))


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 64, device=device)
'''


def test_two_ranks_train_with_ddp(tmp_path: Path):
    """train on 2 ranks: each replica is wrapped in DistributedDataParallel, so backward all-reduces the
    gradients (the model itself has no collective: comm_share > 0 comes from DDP alone)."""
    sc = write_scenario(tmp_path, "mlp", PLAIN_MLP)
    logdir = tmp_path / "logs"
    r = run_cli("run", str(sc), "--workload", "train", "--optimizer", "sgd", "--nproc-per-node", "2",
                "--logdir", str(logdir), *QUICK)
    assert r.returncode == 0, r.stderr[-3000:]
    (job,) = [p for p in (logdir / "mlp").iterdir() if p.name != "trends"]
    s = json.loads((job / "summary.json").read_text())
    assert s["world_size"] == 2 and s["workload"] == "train"
    for row in s["ranks"]:
        assert 0 < row["comm_time_s"] and 0 < row["comm_share"] < 1
    rank0 = json.loads((job / "rank0" / "summary.json").read_text())
    assert set(rank0["phases"]) == {"forward", "backward", "optimizer"}
    # batch 4 per rank: forward 4*(64*128 + 128*8) = 36,864 MACs; each rank counts its own replica
    assert rank0["phases"]["forward"]["macs"] == 4 * (64 * 128 + 128 * 8)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_failed_rank_exits_2_naming_it(tmp_path: Path):
    sc = write_scenario(tmp_path, "raises", RAISES)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    logdir = tmp_path / "logs"
    t0 = time.monotonic()
    r = run_cli("run", str(sc), "--nproc-per-node", "2", "--logdir", str(logdir), "--rank-timeout-s", "60", *QUICK,
                env={"PID_DIR": str(pid_dir)})
    assert time.monotonic() - t0 < 60 + 30
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr[-3000:]
    assert "rank 1 of 2" in lines[0] and "RuntimeError: boom on rank one" in lines[0]
    assert not (logdir / "raises").exists() or not any((logdir / "raises").iterdir())
    assert not (logdir / "history.csv").exists()
    pids = [int(p.read_text()) for p in pid_dir.iterdir()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def test_hanging_rank_is_bounded_by_rank_timeout(tmp_path: Path):
    """Rank 1 sleeps in build_model; rank 0 waits for it at the barrier before timing. --rank-timeout-s 15
    bounds that wait: the job exits 2 within the timeout plus start-up and shutdown (SIGTERM to the hung
    rank), with one line saying a rank timed out at the barrier, not that the model raised."""
    sc = write_scenario(tmp_path, "hangs", HANGS)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    logdir = tmp_path / "logs"
    t0 = time.monotonic()
    r = run_cli("run", str(sc), "--nproc-per-node", "2", "--logdir", str(logdir), "--rank-timeout-s", "15", *QUICK,
                env={"PID_DIR": str(pid_dir)}, timeout=120)
    took = time.monotonic() - t0
    assert r.returncode == 2, r.stderr[-3000:]
    assert 15 <= took < 15 + 40, took  # waited for the timeout, and not much longer
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr[-3000:]
    assert "rank 0 of 2" in lines[0] and "barrier before latency failed (another rank stopped or timed out)" in lines[0]
    assert "the model raised" not in lines[0]  # the model did not raise: a peer never came
    assert not (logdir / "hangs").exists() or not any((logdir / "hangs").iterdir())
    assert not (logdir / "history.csv").exists()
    pids = [int(p.read_text()) for p in pid_dir.iterdir()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)  # the hung rank was stopped too


def test_rank_flag_refused_under_torchrun(tmp_path: Path, tiny_scenario: Path):
    r = run_cli("run", str(tiny_scenario), "--nproc-per-node", "2", "--logdir", str(tmp_path),
                env={"RANK": "0", "WORLD_SIZE": "1"})
    assert r.returncode == 2 and "drop --nproc-per-node" in r.stderr


def test_two_ranks_keep_model_options(tmp_path: Path):
    """A model by name with --input-size on 2 ranks counts what one process counts at that size: the
    job's run spec (model options included) reaches every rank; before, --input-size was dropped."""
    logdir = tmp_path / "logs"
    target = "torchvision:squeezenet1_1"
    r = run_cli("run", target, "--input-size", "64", "--batch-size", "1", "--nproc-per-node", "2",
                "--logdir", str(logdir), *QUICK)
    assert r.returncode == 0, r.stderr[-3000:]
    (job,) = [p for p in (logdir / "torchvision-squeezenet1_1").iterdir() if p.name != "trends"]
    s = json.loads((job / "summary.json").read_text())
    one = run_cli("count", target, "--input-size", "64", "--batch-size", "1", "--json")
    assert one.returncode == 0, one.stderr[-2000:]
    counted = json.loads(one.stdout)
    default = json.loads(run_cli("count", target, "--batch-size", "1", "--json").stdout)
    assert default["macs"] > 4 * counted["macs"]  # 224 px against 64 px: the option changes the count
    for row in s["ranks"]:
        rank = json.loads((job / f"rank{row['rank']}" / "summary.json").read_text())
        assert rank["macs"] == counted["macs"]
        assert rank["model_options"]["input_size"] == 64
