"""The run spec and the run record's codec: round trips, refusals, migrations of old summaries."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core import record
from harness.core.schema import SUMMARY_SCHEMA_VERSION
from harness.errors import HarnessError
from harness.pipeline.spec import ProfileConfig, RunSpec


def test_spec_round_trip_and_replace():
    spec = RunSpec(target="timm:resnet18", workload="train", workload_options={"optimizer": "sgd"},
                   model={"input_size": 128}, batch_size=4, threads=2, channels_last=True,
                   profile=ProfileConfig(active=2, gzip=True), logdir="/tmp/x", tag="t")
    data = json.loads(json.dumps(spec.to_dict()))  # what travels to ranks, sweep jobs and ab workers
    back = RunSpec.from_dict(data)
    assert back == spec and back.profile.active == 2 and back.model == {"input_size": 128}
    point = spec.replace(batch_size=8)
    assert point.batch_size == 8 and spec.batch_size == 4 and point.workload_options == {"optimizer": "sgd"}
    with pytest.raises(HarnessError, match="no field bs"):
        spec.replace(bs=8)
    with pytest.raises(HarnessError, match="no field nope"):
        RunSpec.from_dict({**data, "nope": 1})
    with pytest.raises(AttributeError):
        spec.batch_size = 3  # frozen


@pytest.mark.parametrize("field,value,message", [
    ("batch_size", 0, "--batch-size must be at least 1, got 0"),
    ("iters", 0, "--iters must be at least 1, got 0"),
    ("warmup", -1, "--warmup must be at least 0, got -1"),
    ("threads", 1.5, "--threads must be a whole number, got 1.5"),
    ("retry_disturbed", -2, "--retry-disturbed must be at least 0, got -2"),
])
def test_spec_refuses_bad_values(field, value, message):
    with pytest.raises(HarnessError) as e:
        RunSpec(target="vgg16", **{field: value})
    assert e.value.message == message


SCHEMA2_TRAIN = {
    "schema_version": 2, "scenario": "tiny_gpt_train", "run_id": "r", "workload": "train",
    "weights_bytes": 1000, "latency_s": {"p50": 0.1},
    "profiled": {"time_per_forward_s": 0.2, "op_time_per_forward_s": 0.15},
    "memory": {"weights_bytes": 800, "gradients_bytes": 800, "optimizer_state_bytes": 1600},
}


def test_schema2_train_summary_migrates():
    s = record.migrate(SCHEMA2_TRAIN)
    assert s["schema_version"] == SUMMARY_SCHEMA_VERSION == 3
    # schema 2's memory.weights_bytes was parameters only; now weights_bytes means parameters + buffers everywhere
    assert s["memory"]["parameters_bytes"] == 800 and s["memory"]["weights_bytes"] == 1000 == s["weights_bytes"]
    assert s["profiled"]["time_per_iteration_s"] == 0.2 and s["profiled"]["op_time_per_iteration_s"] == 0.15
    assert s["profiled"]["time_per_forward_s"] == 0.2  # the old name stays readable
    assert s["model_options"] == {}
    assert SCHEMA2_TRAIN["schema_version"] == 2 and "parameters_bytes" not in SCHEMA2_TRAIN["memory"]  # untouched


def test_schema1_gets_every_later_key():
    s = record.migrate({"scenario": "vgg16", "latency_s": {"p50": 1.0}, "profiled": {}})
    assert s["schema_version"] == 3 and s["workload"] == "forward" and s["phase_names"] == ["forward"]
    assert s["warnings"] == [] and s["peak_exceeded"] == [] and s["model_options"] == {}


@pytest.mark.parametrize("version,match", [(4, "newer than this harness reads"), ("2", "which no harness wrote"),
                                           (0, "which no harness wrote")])
def test_unknown_versions_refused(version, match):
    with pytest.raises(HarnessError, match=match):
        record.migrate({"schema_version": version})


def test_load_dump_and_finalize(tmp_path: Path):
    p = tmp_path / "summary.json"
    p.write_text(json.dumps(SCHEMA2_TRAIN))
    assert record.load(tmp_path)["memory"]["parameters_bytes"] == 800  # a run directory or the file
    with pytest.raises(ValueError, match="refusing to write a summary of schema 2"):
        record.dump(p, SCHEMA2_TRAIN)
    done = record.finalize(record.migrate(SCHEMA2_TRAIN), path="/x", stage_times_s={"count": 0.1})
    assert done["path"] == "/x" and done["stage_times_s"] == {"count": 0.1}
    with pytest.raises(ValueError, match="built once"):
        record.finalize(done, macs=1)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(HarnessError, match="not readable JSON"):
        record.load(tmp_path / "bad.json")


def test_compare_loads_an_old_run_directory(tmp_path: Path):
    from harness.tracking.compare import load_run_dir

    run = tmp_path / "20261101T000000.000000Z-1-abcd"
    run.mkdir()
    old = {**SCHEMA2_TRAIN, "config_key": "k", "env_key": "e", "params": 1, "macs": 1, "flops": 2,
           "batch_size": 1, "dtype": "float32", "device": "cpu", "threads": 1}
    (run / "summary.json").write_text(json.dumps(old))
    loaded = load_run_dir(run)
    assert loaded.summary["schema_version"] == 3 and loaded.summary["memory"]["parameters_bytes"] == 800
