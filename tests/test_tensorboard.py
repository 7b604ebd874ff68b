"""Real runs, a real TensorBoard server on loopback: the profiler plugin's API loads each run's
trace, and TensorBoard's own API shows the run's SCALARS trend, TEXT, IMAGES and HPARAMS.

One server for the whole module (started on a free port, stopped by its pid)."""
from __future__ import annotations

import base64
import gzip
import json

import pytest

from harness.report import tensorboard as tbw
from harness.core.units import si
from tbserver import PROFILER, TensorBoardServer, harness_runs

OPS_IN_TRACE = {"aten::conv2d", "aten::convolution", "aten::relu", "aten::max_pool2d", "aten::linear", "aten::addmm"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return harness_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def tb(runs):
    server = TensorBoardServer(runs.logdir, log_path=runs.base / "tensorboard-api.log").start()
    try:
        names = {runs.name(r) for r in runs.runs}
        server.wait_for(lambda: names <= set(server.json("/data/runs")), timeout=60, what="TensorBoard runs")
        server.wait_for(lambda: (lambda d: names <= set(d["runs"]) and not d["loading"])(server.json(PROFILER + "/runs")),
                        timeout=90, what="profiler plugin runs")
        yield server
    finally:
        server.stop()
    assert server.proc is None


def test_run_layout(runs):
    for r in runs.runs:
        names = sorted(p.name for p in r.path.iterdir())
        events = [n for n in names if n.startswith("events.out.tfevents.")]
        assert len(events) == 1, names
        assert not [n for n in names if n.startswith(".")], names  # nothing staged or temporary left
        assert runs.trace(r).name in r.summary["trace_files"]
        assert {"report.html", "roofline.png", "time_by_module.png"} <= set(names)
    assert runs.trace(runs.runs[2]).name.endswith(".pt.trace.json.gz")
    trends = runs.trend_dirs()
    assert [len(list(d.glob("events.out.tfevents.*"))) for d in trends] == [2, 1]  # bs=2 twice, bs=4 once
    assert [d.name.split("_")[0] for d in trends] == ["bs=2", "bs=4"]


def test_trace_is_valid_chrome_trace_json(runs):
    for r in runs.runs:
        raw = runs.trace(r).read_bytes()
        doc = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
        events = doc["traceEvents"]
        assert isinstance(events, list) and events
        for e in events:
            assert e["ph"] in {"X", "i", "I", "M", "f", "s", "t", "C", "B", "E", "b", "e", "n"}, e
            if e["ph"] == "X":
                assert isinstance(e["name"], str) and float(e["ts"]) >= 0 and float(e["dur"]) >= 0
                assert "pid" in e and "tid" in e
        labels = [e for e in events if e.get("name") == "model_inference" and e["ph"] == "X"]
        assert len(labels) == r.summary["profiled"]["steps"]


def test_profiler_plugin_lists_every_run_and_no_other(runs, tb):
    listed = tb.profiler_runs()
    assert sorted(listed) == sorted(runs.name(r) for r in runs.runs)  # the trend runs hold no trace


@pytest.mark.parametrize("index", [0, 2], ids=["json", "gzip"])
def test_profiler_plugin_loads_ops_and_trace(runs, tb, index):
    r = runs.runs[index]
    run = runs.name(r)
    views = tb.json(PROFILER + "/views", {"run": run})
    assert {"Overview", "Operator", "Trace"} <= set(views)
    workers = tb.json(PROFILER + "/workers", {"run": run, "view": "Operator"})
    assert len(workers) == 1
    spans = tb.json(PROFILER + "/spans", {"run": run, "worker": workers[0]})
    q = {"run": run, "worker": workers[0], "span": spans[0] if spans else ""}
    table = tb.json(PROFILER + "/operation/table", {**q, "group_by": "Operation"})
    by_name = {row["name"]: row for row in table["data"]}
    assert OPS_IN_TRACE <= set(by_name), sorted(by_name)
    steps = r.summary["profiled"]["steps"]
    assert by_name["aten::conv2d"]["calls"] == steps and by_name["aten::addmm"]["calls"] == steps
    assert by_name["aten::conv2d"]["host_total_duration"] > 0

    body, headers = tb.get(PROFILER + "/trace", q)  # served gzip-encoded; tb.get decompresses
    assert headers.get("content-encoding") == "gzip"
    trace = json.loads(body)
    names = {e.get("name") for e in trace["traceEvents"]}
    assert "model_inference" in names and OPS_IN_TRACE <= names


def test_scalars_trend_per_config(runs, tb):
    tags = tb.json("/data/plugin/scalars/tags")
    trends = {f"tiny/trends/{d.name}": d for d in runs.trend_dirs()}
    for name in trends:
        assert {t for t, _ in tbw.TREND_SCALARS} <= set(tags[name]), tags.get(name)
    bs2 = next(n for n in trends if "/bs=2_" in n)
    pts = tb.json("/data/plugin/scalars/scalars", {"run": bs2, "tag": "latency/p50_ms"})
    assert [p[1] for p in pts] == [0, 1]  # step = run index of this config
    want = [r.summary["latency_s"]["p50"] * 1e3 for r in runs.runs[:2]]
    assert [p[2] for p in pts] == pytest.approx(want, rel=1e-6)  # float32 in the event file
    gf = tb.json("/data/plugin/scalars/scalars", {"run": bs2, "tag": "compute/achieved_GFLOP_per_s"})
    assert gf[-1][2] == pytest.approx(runs.runs[1].summary["achieved_flop_per_s"] / 1e9, rel=1e-6)
    mem = tb.json("/data/plugin/scalars/scalars", {"run": bs2, "tag": "memory/peak_MB"})
    assert mem[-1][2] == pytest.approx(runs.runs[1].summary["peak_memory_bytes"] / 1e6, rel=1e-6)


def test_text_tables_per_run(runs, tb):
    tags = tb.json("/data/plugin/text/tags")
    r = runs.runs[0]
    run = runs.name(r)
    assert {tbw.TEXT_SUMMARY, tbw.TEXT_OPS, tbw.TEXT_MODULES} <= set(tags[run])
    html = tb.json("/data/plugin/text/text", {"run": run, "tag": tbw.TEXT_OPS})[-1]["text"]
    assert "<table>" in html and "<th>Achieved (FLOP/s)</th>" in html and "<th>Utilization (% of peak FLOP/s)</th>" in html
    conv = r.ops[r.ops["name"] == "aten::conv2d"].iloc[0]
    assert "<code>aten::conv2d</code>" in html
    assert f"<td>{si(conv['flops'], 'FLOP')}</td>" in html  # the join the plugin never shows: work next to time
    assert f"<td>{si(conv['achieved_flop_per_s'], 'FLOP/s')}</td>" in html
    summary = tb.json("/data/plugin/text/text", {"run": run, "tag": tbw.TEXT_SUMMARY})[-1]["text"]
    assert f"<td>{si(r.summary['flops'], 'FLOP')}</td>" in summary
    assert f"<td>{si(r.summary['achieved_flop_per_s'], 'FLOP/s')}</td>" in summary
    modules = tb.json("/data/plugin/text/text", {"run": run, "tag": tbw.TEXT_MODULES})[-1]["text"]
    assert "Conv2d" in modules and "Linear" in modules and "<th>Time / forward (s)</th>" in modules


def test_images_per_run(runs, tb):
    tags = tb.json("/data/plugin/images/tags")
    for r in runs.runs:
        run = runs.name(r)
        assert {"roofline", "time_by_module"} <= set(tags[run])
        (entry,) = tb.json("/data/plugin/images/images", {"run": run, "tag": "roofline"})
        png, headers = tb.get("/data/plugin/images/individualImage?" + entry["query"])
        assert headers["content-type"] == "image/png"
        assert png == (r.path / "roofline.png").read_bytes()
        key = json.loads(base64.urlsafe_b64decode(entry["query"].split("blob_key=")[1].split("&")[0] + "=="))
        assert run in key and "roofline" in key


def test_hparams_table_compares_runs_across_configs(runs, tb):
    req = {"request": json.dumps({"experimentName": ""})}
    exp = tb.json("/data/plugin/hparams/experiment", req)
    infos = {h["name"]: h for h in exp["hparamInfos"]}
    assert {"batch_size", "dtype", "threads", "device", "scenario", "tag"} <= set(infos)
    assert infos["batch_size"]["domainInterval"] == {"minValue": 2.0, "maxValue": 4.0}
    assert infos["dtype"]["domainDiscrete"] == ["float32"]
    metrics = {m["name"]["tag"] for m in exp["metricInfos"]}
    assert {tbw.hparams_metric_tag(t) for t, _ in tbw.TREND_SCALARS} <= metrics
    assert not any(m.startswith(("latency/", "compute/")) for m in metrics)  # trends are not sessions

    groups = tb.json("/data/plugin/hparams/session_groups", {"request": json.dumps({
        "experimentName": "", "allowedStatuses": ["STATUS_SUCCESS", "STATUS_UNKNOWN", "STATUS_FAILURE",
                                                  "STATUS_RUNNING"],
        "colParams": [], "startIndex": 0, "sliceSize": 100})})["sessionGroups"]
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {runs.name(r) for r in runs.runs}  # one row per run, every config
    for r in runs.runs:
        g = by_name[runs.name(r)]
        assert g["hparams"]["batch_size"] == r.summary["batch_size"]
        assert g["sessions"][0]["status"] == "STATUS_SUCCESS"
        mv = {m["name"]["tag"]: m["value"] for m in g["metricValues"]}
        assert mv["hparams/latency_p50_ms"] == pytest.approx(r.summary["latency_s"]["p50"] * 1e3, rel=1e-6)
        assert mv["hparams/throughput_samples_per_s"] == pytest.approx(r.summary["throughput_samples_per_s"], rel=1e-6)
