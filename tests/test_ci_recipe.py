"""examples/ci/perf-check.sh, the CI recipe's script, on two local checkouts of a small repository made here.

The repository holds its model in ``model.py`` and a scenario file ``bench/perf_scenario.py`` that imports it
(``import model``: both checkouts have a module of that name, so the A/B must run each side in its own process,
``--isolate``). main's model has 4 layers, the PR's 8: twice the work, about twice the time.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

SCRIPT = ROOT / "examples" / "ci" / "perf-check.sh"

MODEL = """import torch
from torch import nn

LAYERS = {layers}


class Net(nn.Sequential):
    def __init__(self):
        super().__init__(*[nn.Linear(128, 128) for _ in range(LAYERS)])
"""

SCENARIO = """import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's model.py

import torch
from model import Net

name = "net"
batch_size = 8


def build_model():
    torch.manual_seed(0)
    return Net()


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 128, device=device)
"""

FAST = {"RUN_ARGS": "--iters 20 --warmup 2 --active 1 --top 0", "AB_ARGS": "--budget-s 8 --generation-s 0.5",
        "CHECK_ARGS": "--min-runs 3"}


def git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def example_repo(root: Path) -> Path:
    """main: a 4-layer model; branch pr: 8 layers."""
    repo = root / "repo"
    (repo / "bench").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "model.py").write_text(MODEL.format(layers=4))
    (repo / "bench" / "perf_scenario.py").write_text(SCENARIO)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "model")
    git(repo, "checkout", "-q", "-b", "pr")
    (repo / "model.py").write_text(MODEL.format(layers=8))
    git(repo, "commit", "-q", "-am", "twice the layers")
    return repo


def recipe(tmp_path: Path, summary: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHON": sys.executable, "GITHUB_STEP_SUMMARY": str(summary),
            **FAST, **env}
    return subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=full, capture_output=True, text=True,
                          timeout=240)


def test_the_ci_recipe_on_two_checkouts(tmp_path: Path):
    repo = example_repo(tmp_path)
    base, head = tmp_path / "base", tmp_path / "head"
    git(tmp_path, "clone", "-q", "-b", "main", str(repo), str(base))
    git(tmp_path, "clone", "-q", "-b", "pr", str(repo), str(head))
    stored = tmp_path / "perf-history"

    # pushes to main: each records one run into the stored history and checks it
    for i in range(3):
        summary = tmp_path / f"main{i}.md"
        proc = recipe(tmp_path, summary, HEAD_DIR=str(base), HISTORY_DIR=str(stored))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        md = summary.read_text()
        assert md.startswith("### Performance history check: no regression") and "A/B" not in md
    assert "not enough history" in (tmp_path / "main0.md").read_text()  # one run: nothing to judge against

    # the pull request: A/B against main's checkout, then its run in a copy of main's history
    shutil.copytree(stored, tmp_path / "pr-history")
    summary = tmp_path / "pr.md"
    proc = recipe(tmp_path, summary, BASE_DIR=str(base), HEAD_DIR=str(head), HISTORY_DIR=str(tmp_path / "pr-history"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "perf-check: harness ab exit 1" in proc.stdout
    md = summary.read_text()
    ab, check = md.split("### Performance history check")
    assert ab.startswith("### A/B of the model code: PR against main: slower")
    assert "The counted work differs: the PR changed the model" in ab
    # 8 x 128 x 128 MACs per layer and sample; 4 layers against 8, batch 8 (the sides' own imports: no collision)
    assert "| flops (counted) | 1048576 | 2097152 | +100.0 % | exact | differs |" in ab
    assert "| params (counted) | 66048 | 132096 | +100.0 % | exact | differs |" in ab
    forward = next(ln for ln in ab.splitlines() if ln.startswith("| forward (median)"))
    assert forward.endswith("| **slower** |")
    assert "counted work +100.0 %: the model changed" in check
    assert "| net · bs 8 · float32 · cpu · 1 thr" in check
    assert check.rstrip().endswith(("exit 1**", "exit 0**"))  # exit 0 only when the run was disturbed (said so)
    if check.rstrip().endswith("exit 0**"):
        assert "disturbed" in check
    else:
        assert "**slower (counted work +100%)**" in check

    # bad input: no scenario file in the PR's checkout
    proc = recipe(tmp_path, tmp_path / "bad.md", HEAD_DIR=str(tmp_path), HISTORY_DIR=str(stored))
    assert proc.returncode == 2 and "must be a checkout holding bench/perf_scenario.py" in proc.stderr
    assert (tmp_path / "bad.md").read_text().startswith("### Performance check: no result")
