"""harness.report.tensorboard without a server: what the event files hold, read back with
TensorBoard's own loaders; file naming, atomicity, steps, missing values."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from harness.report import tensorboard as tbw
from harness.core.units import si
from tbserver import RUN_ID, make_modules, make_ops, make_summary, png_bytes

@pytest.fixture
def pictures(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, (w, h) in {"roofline": (64, 48), "time_by_module": (80, 40)}.items():
        p = tmp_path / f"{name}.png"
        p.write_bytes(png_bytes(w, h))
        out[name] = p
    return out


def load(path: Path):
    """TensorBoard's own (Python) accumulator over one directory."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(path), size_guidance={ea.TENSORS: 0, ea.IMAGES: 0, ea.SCALARS: 0})
    acc.Reload()
    return acc


def text_of(acc, tag: str) -> str:
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(acc.Tensors(tag)[-1].tensor_proto).item().decode()


def write(tmp_path: Path, pictures, summary=None, step=0, ops=None, modules=None, **kw):
    run_dir = tmp_path / "logs" / "tiny" / RUN_ID
    run_dir.mkdir(parents=True, exist_ok=True)
    trend = tmp_path / "logs" / "tiny" / "trends" / "bs=2_float32_cpu_threads=2_tag="
    paths = tbw.write_run_summaries(run_dir, summary or make_summary(), make_ops() if ops is None else ops,
                                    make_modules() if modules is None else modules, pictures, trend_dir=trend,
                                    step=step, **kw)
    return run_dir, trend, paths


def test_event_files_and_names(tmp_path, pictures):
    run_dir, trend, paths = write(tmp_path, pictures, step=3)
    assert paths == [run_dir / tbw.event_file_name(3, RUN_ID), trend / tbw.event_file_name(3, RUN_ID)]
    for p in paths:
        assert p.is_file() and p.name.startswith("events.out.tfevents.0000000003.")
        # nothing half-written or temporary left beside it
        assert sorted(x.name for x in p.parent.iterdir() if "tfevents" not in x.name and x.suffix != ".png") == []


def test_run_event_file_holds_text_images_hparams(tmp_path, pictures):
    s = make_summary()
    run_dir, _, _ = write(tmp_path, pictures, summary=s, step=2)
    acc = load(run_dir)
    tags = acc.Tags()
    assert set(tags["images"]) == {"roofline", "time_by_module"}
    img = acc.Images("roofline")[0]
    assert (img.width, img.height, img.step) == (64, 48, 2)
    assert img.encoded_image_string == pictures["roofline"].read_bytes()
    assert {tbw.TEXT_SUMMARY, tbw.TEXT_OPS, tbw.TEXT_MODULES} <= set(tags["tensors"])

    summary_md = text_of(acc, tbw.TEXT_SUMMARY)
    assert "| Quantity (unit) | Value |" in summary_md
    assert si(s["achieved_flop_per_s"], "FLOP/s") in summary_md          # 967 MFLOP/s
    assert "123 MB" in summary_md and "1.0%" in summary_md                # peak memory, utilization
    ops_md = text_of(acc, tbw.TEXT_OPS)
    lines = ops_md.splitlines()
    header = next(l for l in lines if l.startswith("| Operator"))
    assert "Self time / forward (s)" in header and "Achieved (FLOP/s)" in header and "FLOPs / forward (FLOP)" in header
    rows = [l for l in lines if l.startswith("| `")]
    assert rows[0].startswith("| `aten::convolution` |") and rows[1].startswith("| `aten::addmm` |")  # by self time
    assert "150 us" in rows[0] and "221 KFLOP" in rows[0] and si(221184 / 1.5e-4, "FLOP/s") in rows[0]
    assert len(rows) == 2 and "model_inference" not in ops_md  # dispatch-level ops only: the label is left out
    mod_md = text_of(acc, tbw.TEXT_MODULES)
    assert "`0`" in mod_md and "Conv2d" in mod_md and "Sequential" not in mod_md  # root excluded from top modules

    # HPARAMS: a session start/end, no experiment summary (TensorBoard builds it from all sessions)
    from tensorboard.plugins.hparams import metadata as hpm

    assert {hpm.SESSION_START_INFO_TAG, hpm.SESSION_END_INFO_TAG} <= set(tags["tensors"])
    assert hpm.EXPERIMENT_TAG not in tags["tensors"]
    start = hpm.parse_session_start_info_plugin_data(
        acc.SummaryMetadata(hpm.SESSION_START_INFO_TAG).plugin_data.content)
    hp = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    assert hp["batch_size"] == 2 and hp["dtype"] == "float32" and hp["threads"] == 2 and hp["tag"] == ""
    assert hp["scenario"] == "tiny" and hp["device"] == "cpu"
    assert "workload" not in hp  # a forward run's config key has no extra fields
    # metric scalars the HPARAMS table reads, in the session's own run
    assert acc.Scalars("hparams/latency_p50_ms")[0].value == pytest.approx(0.25, rel=1e-6)
    assert acc.Scalars("hparams/memory_peak_MB")[0].value == pytest.approx(123.456789, rel=1e-6)


def test_warnings_phases_and_config_fields(tmp_path, pictures):
    s = make_summary(latency_s={"p50": 1.31, "p90": 2.52, "min": 0.36, "n": 5},
                     contention={"disturbed": True, "reason": "calibrate ran alongside"},
                     config_key="tiny|bs=2|float32|cpu|threads=2|tag=|workload=generate|prompt_len=32",
                     phases={"prefill": {"flops": 2e9, "time_s": {"p50": 0.2}},
                             "decode": {"flops": 1e8, "time_s": {"p50": 0.5}}})
    ops = make_ops().assign(phase=["prefill", "decode", "prefill"])
    run_dir, trend, _ = write(tmp_path, pictures, summary=s, ops=ops)
    acc = load(run_dir)
    md = text_of(acc, tbw.TEXT_SUMMARY)
    assert md.startswith("**⚠ timing disturbed: calibrate ran alongside — these figures are not comparable**")
    assert "p90/p50 = 1.92" in md and "| prefill | 200 ms |" in md and "| decode | 500 ms |" in md
    ops_md = text_of(acc, tbw.TEXT_OPS)
    assert "operators in phase prefill" in ops_md and "operators in phase decode" in ops_md
    prefill, decode = ops_md.split("in phase decode")
    assert "`aten::convolution`" in prefill and "`aten::addmm`" in decode and "`aten::addmm`" not in prefill
    from tensorboard.plugins.hparams import metadata as hpm

    start = hpm.parse_session_start_info_plugin_data(
        acc.SummaryMetadata(hpm.SESSION_START_INFO_TAG).plugin_data.content)
    assert start.hparams["workload"].string_value == "generate"
    assert start.hparams["prompt_len"].number_value == 32
    assert "`bs=2|float32|cpu|threads=2|tag=|workload=generate|prompt_len=32`" in text_of(load(trend), tbw.TEXT_TREND_RUN)


def test_trend_steps_accumulate_and_never_go_back(tmp_path, pictures):
    _, trend, _ = write(tmp_path, pictures, step=0)
    # second run of the config: the caller's step is 1
    write(tmp_path, pictures, summary=make_summary(run_id=RUN_ID.replace("ab12", "cd34"),
                                                   latency_s={"p50": 5e-4, "p90": 6e-4}), step=1)
    # a caller that lost count (history removed) passes 0 again: the writer takes the next free step
    _, _, paths = write(tmp_path, pictures, summary=make_summary(run_id=RUN_ID.replace("ab12", "ef56")), step=0)
    assert paths[1].name.startswith("events.out.tfevents.0000000002.")
    assert len(list(trend.glob("events.out.tfevents.*"))) == 3
    acc = load(trend)  # TensorBoard merges the event files of one directory, in name order
    pts = acc.Scalars("latency/p50_ms")
    assert [p.step for p in pts] == [0, 1, 2]
    assert [round(p.value, 6) for p in pts] == [0.25, 0.5, 0.25]
    assert set(acc.Tags()["scalars"]) == {t for t, _ in tbw.TREND_SCALARS}
    assert RUN_ID.replace("ab12", "ef56") in text_of(acc, tbw.TEXT_TREND_RUN)


def test_unknown_values_are_left_out_not_nan(tmp_path, pictures):
    s = make_summary(peak_flop_per_s=None, peak_source="unknown", utilization=None, peak_memory_bytes=float("nan"),
                     achieved_flop_per_s=None)
    run_dir, trend, _ = write(tmp_path, pictures, summary=s)
    acc = load(trend)
    tags = set(acc.Tags()["scalars"])
    assert "compute/utilization_pct" not in tags and "memory/peak_MB" not in tags
    assert "compute/achieved_GFLOP_per_s" not in tags and "latency/p50_ms" in tags
    for t in tags:
        assert all(math.isfinite(p.value) for p in acc.Scalars(t))
    md = text_of(load(run_dir), tbw.TEXT_SUMMARY)
    assert "| Utilization (% of peak FLOP/s) | n/a |" in md
    assert "| Peak memory (B) | n/a |" in md
    assert "| Peak (FLOP/s) | n/a (peak unknown) |" in md


def test_missing_pictures_and_empty_tables(tmp_path):
    run_dir, _, paths = write(tmp_path, {"roofline": tmp_path / "absent.png"}, ops=pd.DataFrame(),
                              modules=pd.DataFrame())
    acc = load(run_dir)
    assert acc.Tags()["images"] == []
    assert "n/a (no rows)" in text_of(acc, tbw.TEXT_OPS)


def test_deferred_until_the_run_dir_is_committed(tmp_path, pictures):
    """With the caller's ``defer`` (RunDir.defer), nothing TensorBoard reads exists before the
    run directory is committed: not in the hidden run dir, not in the trend."""
    from harness.core import fsio

    rd = fsio.RunDir(tmp_path / "logs" / "tiny", RUN_ID)
    trend = tmp_path / "logs" / "tiny" / "trends" / "cfg"
    paths = tbw.write_run_summaries(rd.path, make_summary(), make_ops(), make_modules(), pictures, trend_dir=trend,
                                    step=0, defer=rd.defer)
    assert not [p for p in (tmp_path / "logs").rglob("*") if "tfevents" in p.name]
    final = rd.commit()
    assert (final / paths[0].name).is_file() and paths[1].is_file() and paths[1].parent == trend.absolute()
    assert not [p.name for p in final.iterdir() if p.name.startswith(".")]
    assert set(load(final).Tags()["images"]) == {"roofline", "time_by_module"}
    assert [p.step for p in load(trend).Scalars("latency/p50_ms")] == [0]


def test_aborted_run_leaves_no_trend_point(tmp_path, pictures):
    from harness.core import fsio

    rd = fsio.RunDir(tmp_path / "logs" / "tiny", RUN_ID)
    trend = tmp_path / "logs" / "tiny" / "trends" / "cfg"
    tbw.write_run_summaries(rd.path, make_summary(), make_ops(), make_modules(), pictures, trend_dir=trend, step=0,
                            defer=rd.defer)
    rd.abort()
    assert [p for p in (tmp_path / "logs").rglob("*") if p.is_file()] == []


def test_png_size_rejects_non_png():
    assert tbw.png_size(png_bytes(7, 5)) == (7, 5)
    with pytest.raises(ValueError):
        tbw.png_size(b"GIF89a" + b"\0" * 30)


def test_phase_trend_scalars():
    from harness.report.tensorboard import phase_scalars

    s = {"phases": {"prefill": {"time_s": {"p50": 0.002}, "achieved_flop_per_s": 3.0e10},
                    "decode": {"time_s": {"p50": 0.0005}, "achieved_bytes_per_s": 4.0e9}}}
    got = dict(phase_scalars(s))
    # 2 ms, 30 GFLOP/s; 0.5 ms, 4 GB/s
    assert got == pytest.approx({"phase/prefill/p50_ms": 2.0, "phase/prefill/achieved_GFLOP_per_s": 30.0,
                                 "phase/decode/p50_ms": 0.5, "phase/decode/achieved_GB_per_s": 4.0})
    assert phase_scalars({"phases": {"forward": {"time_s": {"p50": 0.01}}}}) == []  # one phase: the run's own trend
