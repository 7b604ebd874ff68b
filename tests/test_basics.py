"""Units, latency statistics, atomic files, scenario loading."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest

from harness.core import fsio
from harness.pipeline import scenario
from harness.errors import HarnessError
from harness.core.samples import sample_stats as latency_stats
from harness.core.units import seconds, si


def test_si_prefixes_are_powers_of_1000():
    assert si(30.94e9, "FLOP") == "30.9 GFLOP"
    assert si(138_357_544) == "138 M"
    assert si(1e21, "FLOP/s") == "1.00 ZFLOP/s"  # Z = 10^21 (the seed note says 10^1: wrong)
    assert si(2.5e24, "FLOP") == "2.50 YFLOP"
    assert si(999) == "999"
    assert si(0, "B") == "0 B"
    assert si(None) == "n/a"
    assert seconds(0.2451) == "245 ms"


def test_latency_stats_by_hand():
    s = latency_stats([0.5, 0.1, 0.4, 0.2, 0.3])
    # sorted 0.1 .. 0.5: median 0.3; p90 at position 0.9*4 = 3.6 -> 0.4 + 0.6*0.1 = 0.46
    assert s["p50"] == pytest.approx(0.3)
    assert s["p90"] == pytest.approx(0.46)
    assert s["mean"] == pytest.approx(0.3)
    # sample std: sqrt(((.2)^2+(.1)^2+0+(.1)^2+(.2)^2)/4) = sqrt(0.1/4) = 0.158114
    assert s["std"] == pytest.approx(math.sqrt(0.025))
    assert (s["min"], s["max"], s["n"]) == (0.1, 0.5, 5)


def test_atomic_write_leaves_no_temporary(tmp_path: Path):
    p = fsio.atomic_write_csv(tmp_path / "a.csv", pd.DataFrame({"x": [1, 2]}))
    assert pd.read_csv(p).x.tolist() == [1, 2]
    assert [f.name for f in tmp_path.iterdir()] == ["a.csv"]


def test_run_dir_is_hidden_until_commit(tmp_path: Path):
    rd = fsio.RunDir(tmp_path / "sc", fsio.new_run_id())
    assert rd.path.name.startswith(".tmp-")
    staged = rd.defer(".trace.staged", "w.1.pt.trace.json")
    staged.write_text("{}")
    fsio.atomic_write_json(rd.path / "summary.json", {"a": 1})
    assert not rd.final.exists()
    final = rd.commit()
    assert sorted(f.name for f in final.iterdir()) == ["summary.json", "w.1.pt.trace.json"]
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "sc").iterdir())


def test_run_ids_sort_by_time_and_are_unique():
    ids = [fsio.new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert sorted(ids) == ids


def test_stale_temporaries_are_cleaned(tmp_path: Path):
    import subprocess, sys, time

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    old = time.time() - 120
    killed = tmp_path / f".tmp-20260101T000000.000000Z-{dead_pid}-abcd"  # writer gone, 2 min old
    killed.mkdir()
    os.utime(killed, (old, old))
    live = tmp_path / f".tmp-20260101T000000.000000Z-{os.getpid()}-abcd"  # writer alive: never touched
    live.mkdir()
    os.utime(live, (old, old))
    just_killed = tmp_path / f".tmp-20260101T000001.000000Z-{dead_pid}-beef"  # inside the grace period
    just_killed.mkdir()
    assert fsio.clean_stale_tmp(tmp_path) == 1
    assert live.exists() and just_killed.exists() and not killed.exists()


def test_builtin_scenarios_are_listed():
    names = set(scenario.builtin_paths())
    assert {"vgg16", "resnet50", "mobilenet_v2", "shufflenet_v2_x1_0", "vit_b_16", "text_lstm",
            "transformer_encoder", "tiny_gpt", "two_input"} <= names


def test_unknown_scenario_names_the_closest():
    with pytest.raises(HarnessError) as e:
        scenario.load("vgg61")
    assert "vgg16" in str(e.value) and e.value.exit_code == 2


def test_scenario_file_defaults_to_its_stem(tiny_scenario: Path):
    sc = scenario.load(tiny_scenario)
    assert sc.name == "tiny" and sc.batch_size == 2 and sc.description == "tiny conv+linear test model"


@pytest.mark.parametrize("body, words", [
    ("def build_model(:\n", "syntax error at line 1"),
    ("x = 1\n", "lacks build_model and make_inputs"),
    ("raise ValueError('boom')\n", "raised while importing (line 1): ValueError: boom"),
])
def test_broken_scenario_files(tmp_path: Path, body: str, words: str):
    p = tmp_path / "broken.py"
    p.write_text(body)
    with pytest.raises(HarnessError) as e:
        scenario.load(p)
    assert words in str(e.value)


def test_missing_scenario_file(tmp_path: Path):
    with pytest.raises(HarnessError, match="does not exist"):
        scenario.load(tmp_path / "nope.py")
