"""Bad input and faults never cost a result: one-line errors, exit codes, nothing half-written.

Each case runs the real CLI in a subprocess and checks the exit code, the message, the
absence of a traceback, and that an earlier run's files are byte-for-byte unchanged.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_SCENARIO, run_cli, write_scenario


def snapshot(d: Path) -> dict[str, str]:
    """Every file under ``d`` with its hash, hidden entries included."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """A logdir holding one good run of the tiny scenario; the cases below must never change it."""
    d = tmp_path_factory.mktemp("err")
    scen = write_scenario(d, "tiny", TINY_SCENARIO)
    logdir = d / "logs"
    proc = run_cli("run", str(scen), "--logdir", str(logdir), "--iters", "2", "--warmup", "1", "--top", "0")
    assert proc.returncode == 0, proc.stderr
    return scen, logdir


def assert_clean_failure(proc, logdir: Path, before: dict, *words: str, code: int = 2):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    assert snapshot(logdir) == before


@pytest.mark.parametrize("body, words", [
    ("def build_model(:\n    pass\n", ["syntax error at line 1"]),
    ("import torch\ndef make_inputs(b, d):\n    return torch.zeros(b)\n", ["lacks build_model"]),
    ("def build_model():\n    raise RuntimeError('no weights here')\ndef make_inputs(b, d):\n    return None\n",
     ["raised while building", "no weights here"]),
    ("import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        raise ValueError('shape mismatch in block 3')\n"
     "def build_model():\n    return M()\ndef make_inputs(b, d):\n    return torch.zeros(b, 4)\n",
     ["'bad'", "raised in forward", "ValueError: shape mismatch in block 3"]),
    ("import torch\ndef build_model():\n    return torch.nn.Linear(4, 2)\n"
     "def make_inputs(b, d):\n    return {'tokens': torch.zeros(b, 4)}\n",
     ["does not accept these inputs", "tokens"]),
])
def test_broken_scenarios(earlier, tmp_path, body, words):
    _, logdir = earlier
    before = snapshot(logdir)
    scen = tmp_path / "bad.py"
    scen.write_text(body)
    proc = run_cli("run", str(scen), "--logdir", str(logdir), "--iters", "2", "--warmup", "1")
    assert_clean_failure(proc, logdir, before, *words)


# A CUDA index no machine has: exit 2 on every host, for its own reason on each (no GPU at all here,
# or fewer GPUs than 100: harness.pipeline.prepare.resolve_device).
NO_SUCH_GPU = ([f"--device cuda:99: only {torch.cuda.device_count()} CUDA device(s) here"] if torch.cuda.is_available()
               else ["--device cuda was asked for but no CUDA GPU is available here"])


@pytest.mark.parametrize("args, words", [
    (["--device", "cuda:99"], NO_SUCH_GPU),
    (["--device", "tpu9"], ["unknown device 'tpu9'"]),
    (["--dtype", "float8"], ["unknown dtype 'float8'"]),
    (["--batch-size", "0"], ["--batch-size must be at least 1"]),
    (["--batch-size", "-3"], ["--batch-size must be at least 1"]),
    (["--batch-size", "two"], ["--batch-size", "invalid int value"]),
    (["--iters", "0"], ["--iters must be at least 1"]),
])
def test_bad_options(earlier, args, words):
    scen, logdir = earlier
    before = snapshot(logdir)
    proc = run_cli("run", str(scen), "--logdir", str(logdir), *args)
    assert_clean_failure(proc, logdir, before, *words)


def test_device_cuda_where_no_gpu_is_visible(earlier):
    """`--device cuda` with no GPU visible: exit 2, one line. On a GPU machine the GPUs are hidden
    from the harness process (CUDA_VISIBLE_DEVICES=""), a real machine without a visible GPU."""
    scen, logdir = earlier
    before = snapshot(logdir)
    proc = run_cli("run", str(scen), "--logdir", str(logdir), "--device", "cuda", env={"CUDA_VISIBLE_DEVICES": ""})
    assert_clean_failure(proc, logdir, before, "--device cuda was asked for but no CUDA GPU is available here")


def test_missing_scenario_file(earlier, tmp_path):
    _, logdir = earlier
    before = snapshot(logdir)
    proc = run_cli("run", str(tmp_path / "nowhere.py"), "--logdir", str(logdir))
    assert_clean_failure(proc, logdir, before, "does not exist")


def test_logdir_is_a_file(earlier, tmp_path):
    scen, _ = earlier
    f = tmp_path / "afile"
    f.write_text("keep me")
    proc = run_cli("run", str(scen), "--logdir", str(f))
    assert proc.returncode == 2 and "is a file" in proc.stderr and f.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions (as root the unwritable "
                    "logdir is checked full and through a file: test_*full_disk*, test_logdir_through_a_regular_file)")
def test_logdir_read_only(earlier, tmp_path):
    scen, _ = earlier
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    proc = run_cli("run", str(scen), "--logdir", str(ro))
    assert proc.returncode == 2 and "not writable" in proc.stderr


def run_on_a_full_disk(*args: str) -> subprocess.CompletedProcess:
    """The CLI with a file-size limit of 0 bytes: every write of a byte fails with EFBIG, as ENOSPC
    would on a full disk (SIGXFSZ ignored, so the write fails instead of killing the process).
    Directories are not files: mkdir still works, as on a full disk with inodes left."""
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)); from harness.cli import main; "
            f"sys.exit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_logdir_on_a_full_disk(earlier, tmp_path):
    """A new logdir on a full disk: checked before the model is even built, nothing left behind."""
    scen, _ = earlier
    logdir = tmp_path / "full"
    proc = run_on_a_full_disk("run", str(scen), "--logdir", str(logdir))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"error: --logdir {logdir} cannot be written (File too large); "
                                   "free space or pick another directory")
    assert proc.stdout == ""  # no stage ran
    assert [p for p in logdir.rglob("*")] == []  # the probe file is gone too


def test_existing_logdir_on_a_full_disk_keeps_its_runs(earlier):
    """Root writes through read-only permissions (CI runs as root), so the unwritable logdir holding
    earlier runs is a full one: exit 2, one line, every earlier file byte for byte as it was."""
    scen, logdir = earlier
    before = snapshot(logdir)
    proc = run_on_a_full_disk("run", str(scen), "--logdir", str(logdir), "--iters", "2", "--warmup", "1")
    assert_clean_failure(proc, logdir, before, f"--logdir {logdir} cannot be written (File too large)")


def test_logdir_through_a_regular_file(earlier, tmp_path):
    """A --logdir whose parent is a regular file (``file/sub``) cannot be created, by root either."""
    scen, _ = earlier
    f = tmp_path / "afile"
    f.write_text("keep me")
    proc = run_cli("run", str(scen), "--logdir", str(f / "sub"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"error: --logdir {f / 'sub'} cannot be written (Not a directory); "
                                   "free space or pick another directory")
    assert f.read_text() == "keep me" and list(tmp_path.iterdir()) == [f]


@pytest.mark.parametrize("stage", ["latency", "count", "profile", "join", "write", "write-mid", "commit"])
def test_ctrl_c_at_every_stage(earlier, stage):
    scen, logdir = earlier
    before = snapshot(logdir)
    proc = run_cli("run", str(scen), "--logdir", str(logdir), "--iters", "2", "--warmup", "1",
                   env={"HARNESS_FAULT_AT": stage})
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "interrupted" in proc.stderr
    assert snapshot(logdir) == before  # no run dir, no hidden leftovers, history unchanged


def test_real_sigint_during_timing(earlier, tmp_path):
    """A real Ctrl-C (SIGINT) while the model runs: exit 130, nothing new on disk, the next run works."""
    scen, logdir = earlier
    before = snapshot(logdir)
    marker = tmp_path / "started"
    slow = write_scenario(tmp_path, "slow", f'''
        import time, torch
        from pathlib import Path
        class Slow(torch.nn.Module):
            def forward(self, x):
                Path({str(marker)!r}).touch()
                time.sleep(0.05)
                return x * 2
        def build_model():
            return Slow()
        def make_inputs(b, d):
            return torch.zeros(b, 4)
    ''')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # SIGINT's default disposition in the child: a test session started in the background by a non-interactive
    # shell (`cmd &`) ignores SIGINT, children inherit SIG_IGN, and Python then installs no KeyboardInterrupt
    def default_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    p = subprocess.Popen([sys.executable, "-m", "harness", "run", str(slow), "--logdir", str(logdir), "--iters", "500"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                         preexec_fn=default_sigint)
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (p.returncode, err[-2000:], out[-3000:])  # what ran to the end, if it did
    assert "Traceback" not in err
    assert snapshot(logdir) == before
    ok = run_cli("run", str(scen), "--logdir", str(logdir), "--iters", "2", "--warmup", "1", "--top", "0")
    assert ok.returncode == 0, ok.stderr


def test_sigkill_while_writing_leaves_only_a_hidden_dir_that_later_runs_clean(tmp_path):
    scen = write_scenario(tmp_path, "tiny", TINY_SCENARIO)
    logdir = tmp_path / "logs"
    proc = run_cli("run", str(scen), "--logdir", str(logdir), "--iters", "2", "--warmup", "1",
                   env={"HARNESS_FAULT_AT": "write-mid:kill"})
    assert proc.returncode == -signal.SIGKILL
    entries = [p for p in (logdir / "tiny").iterdir() if p.name.startswith(".tmp-") or (p / "summary.json").exists()]
    assert len(entries) == 1 and entries[0].name.startswith(".tmp-")  # invisible to TensorBoard and to readers
    assert not (logdir / "history.csv").exists() or len((logdir / "history.csv").read_text().splitlines()) <= 1
    old = time.time() - 300
    os.utime(entries[0], (old, old))  # the killed writer's grace period has passed
    ok = run_cli("run", str(scen), "--logdir", str(logdir), "--iters", "2", "--warmup", "1", "--top", "0")
    assert ok.returncode == 0, ok.stderr
    left = list((logdir / "tiny").iterdir())
    assert not any(p.name.startswith(".tmp-") for p in left)
    assert len([p for p in left if (p / "summary.json").exists()]) == 1


def test_two_runs_at_once(tmp_path):
    scen = write_scenario(tmp_path, "tiny", TINY_SCENARIO)
    logdir = tmp_path / "logs"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "harness", "run", str(scen), "--logdir", str(logdir), "--iters", "2", "--warmup", "1", "--top", "0"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    runs = [p for p in (logdir / "tiny").iterdir() if (p / "summary.json").exists()]
    assert len(runs) == 2
    import pandas as pd

    hist = pd.read_csv(logdir / "history.csv")
    assert len(hist) == 2 and set(hist.run_id) == {r.name for r in runs}


@pytest.mark.parametrize("junk", [b"schema_version,run_id\n2,abc", b"\x00\xff\xfe binary junk\n", b"a,b,c\n1,2,3\n"])
def test_corrupt_history_fails_before_the_work_and_is_never_rewritten(tmp_path, junk):
    scen = write_scenario(tmp_path, "tiny", TINY_SCENARIO)
    logdir = tmp_path / "logs"
    logdir.mkdir()
    (logdir / "history.csv").write_bytes(junk)
    before = snapshot(logdir)
    proc = run_cli("run", str(scen), "--logdir", str(logdir), "--iters", "2", "--warmup", "1")
    assert_clean_failure(proc, logdir, before, "history.csv")
    assert "line" in proc.stderr
