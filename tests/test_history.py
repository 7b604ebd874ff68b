"""history.csv: layout, locking, atomic appends, corrupt and older files, the `history` verb."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, run_cli
from harness.tracking import history
from harness.errors import HarnessError

DATA = Path(__file__).parent / "data"


def fake_summary(i: int = 0, *, scenario: str = "vgg16", p50: float = 0.5, tag=None, commit="0a1b2c3",
                 logdir: Path | None = None, batch_size: int = 1) -> dict:
    run_id = f"20261124T1000{i:02d}.000000Z-{1000 + i}-{i:04x}"
    return {
        "schema_version": 1, "scenario": scenario, "run_id": run_id,
        "started_at": f"2026-11-24T10:00:{i % 60:02d}.000000Z", "tag": tag, "device": "cpu",
        "device_name": "Intel(R) Xeon(R) CPU @ 2.20GHz", "dtype": "float32", "batch_size": batch_size, "threads": 2,
        "params": 138357544, "macs": 15470264320, "flops": 30940528640,
        "latency_s": {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2, "mean": p50 * 1.02, "std": p50 * 0.03,
                      "min": p50 * 0.95, "max": p50 * 1.3, "n": 20},
        "throughput_samples_per_s": batch_size / p50, "achieved_flop_per_s": 30940528640 / p50,
        "peak_flop_per_s": 1.41e11, "utilization": 30940528640 / p50 / 1.41e11, "peak_memory_bytes": 600_000_000,
        "torch_version": "2.14.1", "git_commit": commit,
        "config_key": f"{scenario}|bs={batch_size}|float32|cpu|threads=2|tag={tag or ''}",
        "env_key": f"torch=2.14.1|Intel(R) Xeon(R) CPU @ 2.20GHz|{commit}",
        "path": str((logdir or Path("logs")) / scenario / run_id),
    }


def test_append_then_read_roundtrip(tmp_path: Path):
    for i in range(3):
        history.append(tmp_path, fake_summary(i, p50=0.5 + i / 100, logdir=tmp_path, tag="a,b" if i == 2 else None))
    text = (tmp_path / "history.csv").read_text()
    assert text.splitlines()[0].split(",")[0] == "schema_version"
    assert text.splitlines()[0] == ",".join(history.COLUMNS)
    df = history.read(tmp_path)
    assert list(df.columns) == history.COLUMNS
    assert len(df) == 3
    assert df["latency_p50_s"].tolist() == [0.5, 0.51, 0.52]
    assert df["git_commit"].tolist() == ["0a1b2c3"] * 3  # stays text
    assert df["tag"].tolist() == [None, None, "a,b"]
    assert df["batch_size"].tolist() == [1, 1, 1]
    assert df["run_dir"].iloc[0] == f"vgg16/{fake_summary(0)['run_id']}"  # relative to LOGDIR
    assert (df["schema_version"] == history.SCHEMA_VERSION).all()
    # plain pandas reads it too
    raw = pd.read_csv(tmp_path / "history.csv")
    assert raw.shape == (3, len(history.COLUMNS))
    assert raw["flops"].iloc[0] == 30940528640


def test_read_absent_or_empty_is_empty_frame(tmp_path: Path):
    assert history.read(tmp_path).empty
    (tmp_path / "history.csv").write_text("")
    df = history.read(tmp_path)
    assert df.empty and list(df.columns) == history.COLUMNS


APPENDER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from harness.tracking import history
    sys.path.insert(0, {tests!r})
    from test_history import fake_summary
    logdir, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for k in range(n):
        s = fake_summary(worker * 100 + k % 60)
        s["run_id"] = f"w{{worker}}-{{k}}"
        history.append(logdir, s)
""")


def test_concurrent_appends_keep_every_row(tmp_path: Path):
    script = tmp_path / "appender.py"
    script.write_text(APPENDER.format(root=str(ROOT), tests=str(Path(__file__).parent)))
    workers, per = 4, 25
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), str(w), str(per)]) for w in range(workers)]
    assert [p.wait(timeout=120) for p in procs] == [0] * workers
    df = history.read(tmp_path)
    assert len(df) == workers * per
    assert set(df["run_id"]) == {f"w{w}-{k}" for w in range(workers) for k in range(per)}
    assert pd.read_csv(tmp_path / "history.csv").shape == (workers * per, len(history.COLUMNS))
    # no temporaries left behind; the lock file stays (deleting it would break mutual exclusion)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "appender.py") == [".history.csv.lock", "history.csv"]


LOOPER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from harness.tracking import history
    sys.path.insert(0, {tests!r})
    from test_history import fake_summary
    k = 0
    while True:
        s = fake_summary(k % 60)
        s["run_id"] = f"{{sys.argv[2]}}-{{k}}"
        history.append(sys.argv[1], s)
        k += 1
""")


def test_killed_writer_never_leaves_a_broken_file(tmp_path: Path):
    """SIGKILL a process appending in a tight loop at arbitrary moments: the file always loads."""
    script = tmp_path / "looper.py"
    script.write_text(LOOPER.format(root=str(ROOT), tests=str(Path(__file__).parent)))
    logdir = tmp_path / "logs"
    total = 0
    for attempt in range(4):
        p = subprocess.Popen([sys.executable, str(script), str(logdir), f"k{attempt}"])
        deadline = time.time() + 30
        while time.time() < deadline:  # let it write a few rows first
            if (logdir / "history.csv").exists() and len(history.read(logdir)) >= total + 3:
                break
            time.sleep(0.05)
        time.sleep(0.05 * attempt)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        df = history.read(logdir)  # must not raise
        assert len(df) > total
        ids = [r for r in df["run_id"] if r.startswith(f"k{attempt}-")]
        assert ids == [f"k{attempt}-{k}" for k in range(len(ids))]  # contiguous: nothing lost or doubled
        total = len(df)
        pd.read_csv(logdir / "history.csv")


@pytest.mark.parametrize("kind", ["truncated", "foreign", "binary", "bad_row_mid_file", "non_numeric", "not_utf8"])
def test_corrupt_history_is_named_and_never_overwritten(tmp_path: Path, kind: str):
    for i in range(3):
        history.append(tmp_path, fake_summary(i))
    path = tmp_path / "history.csv"
    good = path.read_bytes()
    lines = good.decode().splitlines(keepends=True)
    if kind == "truncated":
        data, line = good[:-40], 4
    elif kind == "foreign":
        data, line = (DATA / "foreign.csv").read_bytes(), 1
    elif kind == "binary":
        data, line = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), 1
    elif kind == "bad_row_mid_file":
        data, line = "".join(lines[:2] + ["2,oops,1,2\n"] + lines[2:]).encode(), 3
    elif kind == "non_numeric":
        data, line = "".join(lines[:3] + [lines[3].replace(",0.5,", ",fast,", 1)]).encode(), 4
    else:
        data, line = good + b"2,\xff\xfe,broken\n", 5
    path.write_bytes(data)
    with pytest.raises(HarnessError) as exc:
        history.read(tmp_path)
    msg = exc.value.message
    assert str(path) in msg and f"line {line}" in msg and "\n" not in msg, msg
    assert exc.value.exit_code == 2
    with pytest.raises(HarnessError) as exc2:
        history.append(tmp_path, fake_summary(9))
    assert f"line {line}" in exc2.value.message and "not added" in exc2.value.message
    assert path.read_bytes() == data  # untouched
    if kind not in ("truncated", "binary"):
        return  # the CLI path is the same for every kind
    # through the CLI: one line, exit 2, no traceback
    proc = run_cli("history", "--logdir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and f"line {line}" in proc.stderr and "Traceback" not in proc.stderr


def test_older_schema_is_migrated_in_memory_and_never_rewritten(tmp_path: Path, capsys):
    shutil.copy(DATA / "history_v1.csv", tmp_path / "history.csv")
    before = (tmp_path / "history.csv").read_bytes()
    df = history.read(tmp_path)
    assert list(df.columns) == history.COLUMNS and len(df) == 3
    assert (df["schema_version"] == history.SCHEMA_VERSION).all()
    # the parts of the keys are recovered
    assert df["batch_size"].tolist() == [1, 1, 4]
    assert df["dtype"].tolist() == ["float32", "float32", "bfloat16"]
    assert df["threads"].tolist() == [2, 2, 1]
    assert df["tag"].tolist() == [None, None, "nightly"]
    assert df["git_commit"].tolist() == ["0a1b2c3"] * 3
    assert df["device_name"].iloc[0] == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert df["throughput_samples_per_s"].iloc[2] == pytest.approx(4 / 0.0002)
    assert df["peak_memory_bytes"].isna().all()
    assert (tmp_path / "history.csv").read_bytes() == before  # reading never rewrites

    # appending keeps the file's own layout: old bytes untouched, one v1 row added
    history.append(tmp_path, fake_summary(7, logdir=tmp_path))
    after = (tmp_path / "history.csv").read_bytes()
    assert after.startswith(before)
    assert after[len(before):].decode().startswith("1,")
    assert "schema 1" in capsys.readouterr().err
    assert history.file_version(tmp_path) == 1
    df = history.read(tmp_path)
    assert len(df) == 4 and df["latency_p50_s"].iloc[3] == 0.5 and df["batch_size"].iloc[3] == 1

    # explicit migration keeps a copy
    proc = run_cli("history", "--migrate", "--logdir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "history.v1.csv").read_bytes() == after
    assert history.file_version(tmp_path) == history.SCHEMA_VERSION
    migrated = history.read(tmp_path)
    assert migrated["run_id"].tolist() == df["run_id"].tolist()
    assert migrated["latency_p50_s"].tolist() == df["latency_p50_s"].tolist()


def write_v2_file(logdir: Path, n: int = 3) -> bytes:
    """A schema-2 history.csv as the previous harness wrote it (its own header and rows)."""
    rows = []
    for i in range(n):
        row = history.row_from_summary(fake_summary(i, p50=0.5 + i / 100, logdir=logdir), logdir)
        rows.append(history.format_row({**row, "schema_version": 2}, history.COLUMNS_V2))
    data = history.format_header(history.COLUMNS_V2) + b"".join(rows)
    (logdir / "history.csv").write_bytes(data)
    return data


def test_schema_2_is_read_as_current_and_migrated(tmp_path: Path):
    before = write_v2_file(tmp_path)
    assert before.splitlines()[0].decode() == (  # the header schema 2 wrote, verbatim
        "schema_version,run_id,started_at,scenario,config_key,batch_size,dtype,device,threads,tag,env_key,"
        "torch_version,device_name,git_commit,params,macs,flops,latency_p50_s,latency_p90_s,latency_p99_s,"
        "latency_mean_s,latency_std_s,latency_n,throughput_samples_per_s,achieved_flop_per_s,utilization,"
        "peak_flop_per_s,peak_memory_bytes,run_dir")
    df = history.read(tmp_path)
    assert list(df.columns) == history.COLUMNS and len(df) == 3 and history.SCHEMA_VERSION == 4
    assert (df["schema_version"] == 4).all() and df["workload"].tolist() == ["forward"] * 3
    assert df["latency_p50_s"].tolist() == [0.5, 0.51, 0.52] and df["peak_flop_per_s"].tolist() == [1.41e11] * 3
    for col in ("ttft_p50_s", "decode_step_p50_s", "forward_p50_s", "backward_p50_s", "optimizer_p50_s",
                "cpu_share", "disturbed", "peak_source"):
        assert df[col].isna().all(), col
    assert (tmp_path / "history.csv").read_bytes() == before  # reading never rewrites
    history.append(tmp_path, fake_summary(9, logdir=tmp_path))  # kept in its own layout
    assert history.file_version(tmp_path) == 2
    proc = run_cli("history", "--migrate", "--logdir", str(tmp_path))
    assert proc.returncode == 0 and "schema 4" in proc.stdout, proc.stderr
    assert history.file_version(tmp_path) == 4 and (tmp_path / "history.v2.csv").exists()
    after = history.read(tmp_path)
    assert len(after) == 4 and after["workload"].tolist() == ["forward"] * 4
    assert pd.read_csv(tmp_path / "history.csv").shape == (4, len(history.COLUMNS))


def generate_summary(i: int, logdir: Path, **contention) -> dict:
    s = fake_summary(i, scenario="gpt2", p50=0.9, logdir=logdir)
    del s["config_key"]
    phase = lambda p50: {"time_s": {"p50": p50, "p90": p50 * 1.1, "n": 10}}  # noqa: E731
    s.update(workload="generate", prompt_len=128, new_tokens=64, peak_source="calibrated",
             phases={"prefill": phase(0.12), "decode": phase(0.012)})
    if contention:
        s["contention"] = contention
    return s


def test_generate_row_has_phases_contention_and_a_longer_key(tmp_path: Path):
    s = generate_summary(1, tmp_path, cpu_share=0.41, disturbed=True)
    row = history.row_from_summary(s, tmp_path)
    assert row["config_key"] == "gpt2|bs=1|float32|cpu|threads=2|tag=|workload=generate|prompt_len=128|new_tokens=64"
    assert (row["workload"], row["ttft_p50_s"], row["decode_step_p50_s"]) == ("generate", 0.12, 0.012)
    assert row["forward_p50_s"] is None and row["optimizer_p50_s"] is None
    assert (row["cpu_share"], row["disturbed"], row["peak_source"]) == (0.41, True, "calibrated")
    # a forward run keeps today's key exactly, and no contention object leaves the columns empty
    f = fake_summary(2)
    del f["config_key"]
    row = history.row_from_summary(f)
    assert row["config_key"] == "vgg16|bs=1|float32|cpu|threads=2|tag=" and row["workload"] == "forward"
    assert row["cpu_share"] is None and row["disturbed"] is None and row["ttft_p50_s"] is None
    history.append(tmp_path, s)
    history.append(tmp_path, generate_summary(2, tmp_path, cpu_share=0.97, disturbed=False))
    df = history.read(tmp_path)
    assert df["disturbed"].tolist() == [1, 0] and df["cpu_share"].tolist() == [0.41, 0.97]
    proc = run_cli("history", "--logdir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "41% DISTURBED" in lines[2] and "97%" in lines[3] and "DISTURBED" not in lines[3]
    assert "gpt2 · bs 1 · float32 · cpu · 2 thr · generate" in lines[2]
    assert "1 DISTURBED" in lines[-1]


def test_plot_of_many_configs_keeps_the_most_recent(tmp_path: Path):
    from harness.commands.history import config_label
    from harness.report.trends import recent_configs

    for i in range(30):  # 30 configs, 8 ms to 2.5 s: config i ran at times i and i + 30
        for k in (i, i + 30):
            s = fake_summary(k, p50=0.008 * (1.22 ** i), logdir=tmp_path, batch_size=i + 1)
            s["started_at"] = f"2026-11-24T10:{k // 60:02d}:{k % 60:02d}.000000Z"
            history.append(tmp_path, s)
    df = history.read(tmp_path)
    df = df.assign(x=range(1, len(df) + 1))
    groups, total = recent_configs(df)
    assert total == 30 and [config_label(g.iloc[0]).split(" · ")[1] for _, g in groups] == \
        [f"bs {b}" for b in range(21, 31)]
    png = tmp_path / "many.png"
    proc = run_cli("history", "--logdir", str(tmp_path), "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_newer_schema_is_refused(tmp_path: Path):
    history.append(tmp_path, fake_summary(0))
    path = tmp_path / "history.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "5" + lines[1][1:])
    with pytest.raises(HarnessError, match="line 2: schema_version 5 is newer"):
        history.read(tmp_path)


def test_history_cli_table_and_plot(tmp_path: Path):
    for i in range(6):
        history.append(tmp_path, fake_summary(i, p50=0.5 + 0.01 * (i % 3), logdir=tmp_path))
        history.append(tmp_path, fake_summary(i + 20, p50=0.9 + 0.01 * (i % 2), logdir=tmp_path, batch_size=2))
    history.append(tmp_path, fake_summary(40, scenario="resnet50", p50=0.2, logdir=tmp_path))
    png = tmp_path / "h.png"
    proc = run_cli("history", "vgg16", "--logdir", str(tmp_path), "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    assert "vgg16 · bs 1 · float32 · cpu · 2 thr" in proc.stdout
    assert "vgg16 · bs 2" in proc.stdout and "resnet50" not in proc.stdout
    assert "12 run(s), 2 config(s)" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    proc = run_cli("history", "nosuch", "--logdir", str(tmp_path))
    assert proc.returncode == 2 and "no runs of 'nosuch'" in proc.stderr and "resnet50" in proc.stderr
    proc = run_cli("history", "--logdir", str(tmp_path / "empty"))
    assert proc.returncode == 2 and "no history at" in proc.stderr
    proc = run_cli("history", "--logdir", str(tmp_path), "--json", "--last", "2")
    assert proc.returncode == 0
    import json

    recs = json.loads(proc.stdout)
    assert [r["scenario"] for r in recs] == ["vgg16", "resnet50"]


def test_two_real_runs_at_once_give_two_rows(tmp_path: Path, tiny_scenario: Path):
    """Two `python -m harness run` on the same logdir at the same time: two history rows, an intact CSV."""
    logdir = tmp_path / "logs"
    import os as _os

    env = {**_os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "harness", "run", str(tiny_scenario), "--logdir", str(logdir), "--iters", "3",
           "--warmup", "1", "--top", "0", "--threads", "1"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    df = history.read(logdir)
    assert len(df) == 2 and df["run_id"].nunique() == 2
    assert pd.read_csv(logdir / "history.csv").shape == (2, len(history.COLUMNS))
    for rd in df["run_dir"]:
        assert (logdir / rd / "summary.json").exists()
    assert set(df["config_key"]) == {"tiny|bs=2|float32|cpu|threads=1|tag="}


# --------------------------------------------------------------------------- phase columns from the workloads

def test_train_run_row_has_its_phase_p50s(tmp_path: Path):
    """A real train run: forward/backward/optimizer p50 columns are the summary's phases; its config key is
    the one history derives from the summary's own workload keys."""
    import torch

    import harness

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    run = harness.profile(model, torch.randn(2, 8), workload="train", optimizer="sgd", iters=2, warmup=1,
                          logdir=tmp_path, threads=1)
    s = run.summary
    row = history.read(tmp_path).iloc[0]
    assert row["workload"] == "train"
    for col, phase in (("forward_p50_s", "forward"), ("backward_p50_s", "backward"),
                       ("optimizer_p50_s", "optimizer")):
        assert row[col] == pytest.approx(s["phases"][phase]["time_s"]["p50"]) and row[col] > 0, col
    assert pd.isna(row["ttft_p50_s"]) and pd.isna(row["decode_step_p50_s"])
    assert history.summary_config_key({k: v for k, v in s.items() if k != "config_key"}) == s["config_key"]
    assert s["config_key"].endswith("|workload=train|optimizer=sgd")


def test_schema_3_is_read_with_its_phases_and_appended_in_its_layout(tmp_path: Path, capsys):
    row = history.row_from_summary(generate_summary(1, tmp_path), tmp_path)
    data = history.format_header(history.COLUMNS_V3) + history.format_row({**row, "schema_version": 3},
                                                                          history.COLUMNS_V3)
    (tmp_path / "history.csv").write_bytes(data)
    df = history.read(tmp_path)
    assert list(df.columns) == history.COLUMNS and df["schema_version"].tolist() == [4]
    assert (df["ttft_p50_s"].iloc[0], df["decode_step_p50_s"].iloc[0]) == (0.12, 0.012)
    history.append(tmp_path, generate_summary(2, tmp_path))
    assert history.file_version(tmp_path) == 3 and (tmp_path / "history.csv").read_bytes().startswith(data)
    assert "schema 3" in capsys.readouterr().err
    assert history.read(tmp_path)["decode_step_p50_s"].tolist() == [0.012, 0.012]


class ThreePhase:
    """A workload made at run time (as a user's plugin): forward, backward and an 'extra' phase."""

    @staticmethod
    def make():
        import contextlib

        import torch

        from harness.pipeline.workloads import Workload

        class _ThreePhase(Workload):
            name, phases, word, plural = "threephase", ("forward", "backward", "extra"), "3-phase step", "3-phase steps"
            computes_gradients = True

            def setup(self, prep):
                prep.model.train()

            def grad_mode(self):
                return contextlib.nullcontext()

            def iteration(self, prep, scope):
                with scope("forward"):
                    out = prep.call(prep.model)
                with scope("backward"):
                    out.float().sum().backward()
                with scope("extra"), torch.no_grad():
                    for p in prep.model.parameters():
                        p.grad = None

        return _ThreePhase


@pytest.fixture
def register_three_phase():
    """Registers the workload when called; unregistered after the test whatever happens."""
    from harness.pipeline import workloads

    cls = ThreePhase.make()
    try:
        yield lambda: workloads.register(cls)
    finally:
        workloads.unregister(cls.name)


def test_a_workload_registered_at_run_time_extends_the_file(tmp_path: Path, register_three_phase, monkeypatch):
    import torch

    import harness
    from harness.pipeline import workloads

    for i in range(2):  # a file written before the workload existed
        history.append(tmp_path, fake_summary(i, logdir=tmp_path))
    path = tmp_path / "history.csv"
    before = path.read_bytes()
    register_three_phase()
    assert b"extra_p50_s" not in before and history.COLUMNS[-1] == "extra_p50_s"
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))

    def crash(*a, **k):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:  # the rewrite fails at its last step: the old file stays whole
        m.setattr(os, "replace", crash)
        with pytest.raises(OSError):
            history.append(tmp_path, {**fake_summary(5, logdir=tmp_path), "workload": "threephase",
                                      "phases": {"extra": {"time_s": {"p50": 1.0}}}})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".history.csv.lock", "history.csv"]

    run = harness.profile(model, torch.randn(2, 8), workload="threephase", iters=2, warmup=1, logdir=tmp_path,
                          threads=1)
    lines, old = path.read_text().splitlines(), before.decode().splitlines()
    assert lines[0] == old[0] + ",extra_p50_s"
    assert lines[1:3] == [ln + "," for ln in old[1:]]  # old rows intact, an empty cell added
    df = history.read(tmp_path)
    assert len(df) == 3 and df["extra_p50_s"].iloc[:2].isna().all()
    for col, phase in (("forward_p50_s", "forward"), ("backward_p50_s", "backward"), ("extra_p50_s", "extra")):
        assert df[col].iloc[2] == pytest.approx(run.summary["phases"][phase]["time_s"]["p50"]), col
    workloads.unregister("threephase")  # a process without the workload keeps the column and its value
    history.append(tmp_path, fake_summary(7, logdir=tmp_path))
    df = history.read(tmp_path)
    assert list(df.columns)[-1] == "extra_p50_s" and df["extra_p50_s"].iloc[2] > 0 and len(df) == 4
