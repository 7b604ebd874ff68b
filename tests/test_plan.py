"""`harness plan`: the largest batch under a budget set from the formula; budgets parsed; exit codes;
`count --memory` prints and returns the forecast."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.memory import categories as C
from harness.memory.budget import device_budget, parse_budget
from harness.memory.plan import plan_spec, search
from harness.pipeline.spec import RunSpec

ROOT = Path(__file__).resolve().parents[1]
F_, H_ = 48, 80

LINEAR = f'''
import torch
from torch import nn

def build_model():
    return nn.Linear({F_}, {H_})

def make_inputs(batch_size, device):
    return torch.randn(batch_size, {F_}, device=device)
'''


def peak(batch: int) -> int:
    """One forward of Linear(F, H) in inference: weight and bias, the input (b, F) and the output (b, H)
    alive at once, float32: linear in the batch."""
    return (F_ * H_ + H_) * 4 + batch * F_ * 4 + batch * H_ * 4


@pytest.fixture()
def linear(tmp_path):
    path = tmp_path / "one_linear.py"
    path.write_text(LINEAR)
    return str(path)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)


@pytest.mark.parametrize("largest", [1, 37, 1000])
def test_plan_finds_the_exact_largest_batch(linear, largest):
    budget = peak(largest + 1) - 1  # one byte short of the next batch
    plan = plan_spec(RunSpec(target=linear, logdir=None), budget)
    assert plan.batch_size == largest
    assert plan.fits.peak_bytes == peak(largest) <= budget
    assert plan.over.batch_size == largest + 1 and plan.over.peak_bytes == peak(largest + 1) > budget
    assert plan.fits.by_category_at_peak[C.PARAMETERS] == (F_ * H_ + H_) * 4
    assert plan.fits.by_category_at_peak[C.INPUTS] == largest * F_ * 4
    assert len(plan.probes) <= 4  # affine in the batch: 1, 2, the crossing + 1, the crossing


def test_plan_when_nothing_fits_and_at_the_cap(linear):
    nothing = plan_spec(RunSpec(target=linear, logdir=None), peak(1) - 1)
    assert nothing.batch_size is None and nothing.over.batch_size == 1 and nothing.probes == [(1, peak(1))]
    capped = plan_spec(RunSpec(target=linear, logdir=None), 10**12, max_batch=50)
    assert capped.batch_size == 50 and capped.capped and capped.over is None


def test_search_on_a_convex_peak_finds_the_boundary():
    """A peak that is flat, then steep (the optimizer's phase, then the activations'): the search still
    returns every probe it needs, the boundary among them."""
    class F:
        def __init__(self, b):
            self.batch_size, self.peak_bytes = b, max(1000, 100 * b * b)

    for budget in (999, 1000, 5000, 99_999, 10**6):
        seen = search(F, budget, max_batch=10**4)
        fitting = [b for b in seen if seen[b].peak_bytes <= budget]
        best = max(fitting) if fitting else None
        truth = max((b for b in range(1, 10**4 + 1) if max(1000, 100 * b * b) <= budget), default=None)
        assert best == truth, budget
        assert best is None or best + 1 in seen
        assert len(seen) <= 20


@pytest.mark.parametrize("text,value", [("16GiB", 16 * 2**30), ("500MB", 500 * 10**6), ("123456", 123456),
                                        ("1.5 GB", 1_500_000_000), ("2kib", 2048), ("7B", 7), ("1TiB", 2**40)])
def test_parse_budget(text, value):
    assert parse_budget(text) == value


@pytest.mark.parametrize("text", ["", "GiB", "16 GiBs", "-5GB", "0", "1e9", "twelve"])
def test_parse_budget_rejects(text):
    with pytest.raises(HarnessError) as err:
        parse_budget(text)
    assert err.value.exit_code == 2


def test_cpu_budget_is_available_ram():
    value, source = device_budget("cpu")
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    available = int(meminfo["MemAvailable"].split()[0]) * 1024
    assert abs(value - available) < 0.1 * available and "MemAvailable" in source


def test_plan_cli_exit_codes_and_json(linear):
    budget = peak(12) - 1
    r = _cli("plan", linear, "--memory-budget", str(budget), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["batch_size"] == 11 and out["fits"]["peak_bytes"] == peak(11)
    assert out["overflow_bytes"] == peak(12) - budget and out["budget_bytes"] == budget
    text = _cli("plan", linear, "--memory-budget", str(budget))
    assert text.returncode == 0 and "largest batch that fits: 11" in text.stdout
    assert "batch 12 would need" in text.stdout and "parameters" in text.stdout
    nothing = _cli("plan", linear, "--memory-budget", "100B")
    assert nothing.returncode == 1 and "nothing fits" in nothing.stdout
    bad = _cli("plan", linear, "--memory-budget", "16 parsecs")
    assert bad.returncode == 2 and "--memory-budget" in bad.stderr and bad.stdout == ""


def test_count_memory_prints_and_returns_the_forecast(linear):
    r = _cli("count", linear, "--batch-size", "5", "--memory", "--json")
    assert r.returncode == 0, r.stderr
    mem = json.loads(r.stdout)["memory"]
    assert mem["peak_bytes"] == peak(5) and mem["at_phase"] == "forward"
    assert mem["by_category_at_peak"][C.PARAMETERS] == (F_ * H_ + H_) * 4
    text = _cli("count", linear, "--batch-size", "5", "--memory")
    assert text.returncode == 0 and f"({peak(5):,} B) in forward" in text.stdout


GREEDY = f'''
import torch
from torch import nn

class Greedy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear({F_}, {H_})

    def forward(self, x):
        if x.device.type != "meta" and x.shape[0] >= 4:
            torch.empty(1 << 60, dtype=torch.uint8)  # an allocation the CPU allocator really refuses (2^60 B)
        return self.lin(x)

def build_model():
    return Greedy()

def make_inputs(batch_size, device):
    return torch.randn(batch_size, {F_}, device=device)
'''


def test_run_over_its_memory_budget_exits_2_with_the_split_and_writes_nothing(tmp_path):
    path = tmp_path / "greedy.py"
    path.write_text(GREEDY)
    logdir = tmp_path / "logs"
    weights = (F_ * H_ + H_) * 4  # 15,680 B: a budget below the weights
    r = _cli("run", str(path), "--batch-size", "2", "--memory-budget", str(weights - 1), "--logdir", str(logdir))
    assert r.returncode == 2 and r.stdout == ""
    line = r.stderr.strip()
    assert "\n" not in line and "would run out of --memory-budget" in line and "nothing was run" in line
    assert "parameters 15.7 KB" in line and "not even batch 1 fits" in line
    assert not logdir.exists() or not any(logdir.rglob("*.json")) and not (logdir / "history.csv").exists()
    # a budget between batches: the largest that fits, from the formula
    r = _cli("run", str(path), "--batch-size", "50", "--memory-budget", str(peak(27) + 1), "--logdir", str(logdir))
    assert r.returncode == 2 and "largest batch that fits" in r.stderr and "is 27" in r.stderr
    assert not (logdir / "history.csv").exists()


def test_a_run_that_runs_out_of_cpu_memory_exits_2_with_the_forecast(tmp_path):
    path = tmp_path / "greedy.py"
    path.write_text(GREEDY)
    logdir = tmp_path / "logs"
    r = _cli("run", str(path), "--batch-size", "4", "--iters", "1", "--warmup", "0", "--logdir", str(logdir))
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and "ran out of memory at batch 4" in line and "can't allocate memory" in line
    assert f"forecast peak {peak(4) / 1000:.1f} KB in forward" in line  # 17,664 B
    assert "the forecast peak fits" in line  # the 2^60 B the model asked for is no tensor the forecast sees
    assert not any(logdir.rglob("summary.json")) and not (logdir / "history.csv").exists()


def test_plan_grid_of_prompt_lengths_and_new_tokens():
    """``--prompt-lens A,B --new-tokens-list C``: one plan per combination, each the same answer as planning that
    combination alone; a longer prompt never fits a larger batch; the table names each combination."""
    from harness.commands.plan import render_grid

    budget = 20_000_000
    r = _cli("plan", "tiny_llama", "--memory-budget", str(budget), "--prompt-lens", "32,256", "--new-tokens-list", "8",
             "--json")
    assert r.returncode == 0, r.stderr
    grid = json.loads(r.stdout)["grid"]
    assert [g["workload_options"] for g in grid] == [{"prompt_len": 32, "new_tokens": 8},
                                                     {"prompt_len": 256, "new_tokens": 8}]
    plans = [(g["workload_options"], plan_spec(RunSpec(target="tiny_llama", workload_options=g["workload_options"],
                                                       logdir=None), budget)) for g in grid]
    for g, (_, alone) in zip(grid, plans):
        assert g["batch_size"] == alone.batch_size and g["fits"]["peak_bytes"] == alone.fits.peak_bytes
    assert grid[0]["batch_size"] >= grid[1]["batch_size"] >= 1
    row = next(x for x in render_grid("tiny_llama", plans, budget, "given").splitlines() if x.split()[:2] == ["256", "8"])
    assert row.split()[2] == str(grid[1]["batch_size"])
