"""harness.report.html: a self-contained report.html (no network, no scripts) with SI numbers."""
from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from harness.report.html import write_report
from harness.core.units import si
from tbserver import make_modules, make_ops, make_summary, png_bytes


class Page(HTMLParser):
    """Tags with their attributes, and every table as rows of cell texts."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture
def report(tmp_path: Path):
    images = {}
    for name, (w, h) in {"roofline": (40, 30), "time_by_module": (50, 20)}.items():
        images[name] = tmp_path / f"{name}.png"
        images[name].write_bytes(png_bytes(w, h))
    out = write_report(tmp_path / "run" / "report.html", make_summary(), make_ops(), make_modules(), images)
    return out, images


def test_written_atomically_where_asked(report):
    path, _ = report
    assert path.name == "report.html" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temporary left behind


def test_self_contained(report):
    path, images = report
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    names = [t for t, _ in page.tags]
    assert "script" not in names and "<script" not in text.lower()
    assert "link" not in names and "iframe" not in names
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text, re.I)  # nothing fetched from anywhere
    assert "@import" not in text and "url(" not in text
    srcs = [a["src"] for t, a in page.tags if t == "img"]
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    decoded = {base64.b64decode(s.split(",", 1)[1]) for s in srcs}
    assert decoded == {p.read_bytes() for p in images.values()}


def test_tables_say_units_and_use_si(report):
    path, _ = report
    s = make_summary()
    page = Page(path.read_text(encoding="utf-8"))
    summary, ops, modules = page.tables
    kv = {r[0]: r[1] for r in summary[1:]}
    assert kv["FLOPs per forward (FLOP, 2 × MACs)"] == si(s["flops"], "FLOP") == "242 KFLOP"
    assert kv["Latency p50 (s, un-profiled)"] == "250 us"
    assert kv["Achieved (FLOP/s, FLOPs / p50)"] == si(s["achieved_flop_per_s"], "FLOP/s") == "967 MFLOP/s"
    assert kv["Peak (FLOP/s)"] == "100 GFLOP/s (derived)"
    assert kv["Utilization (% of peak FLOP/s)"] == "1.0%"
    assert kv["Peak memory (B)"] == "123 MB"
    assert kv["Throughput (samples/s)"] == "8.00 Ksamples/s"
    head = ops[0]
    # make_ops has no dispatch_calls column: the profiler's count is labelled for what it is
    assert head[:3] == ["Operator", "Calls / forward (profiler count, nested calls included)", "Self time / forward (s)"]
    assert "Kind" not in head  # dispatch-level ops only: the label row is not listed
    rows = {r[0]: dict(zip(head, r)) for r in ops[1:]}
    assert set(rows) == {"aten::convolution", "aten::addmm"}
    conv = rows["aten::convolution"]
    assert conv["Self time / forward (s)"] == "150 us" and conv["FLOPs / forward (FLOP, 2 × MACs)"] == "221 KFLOP"
    assert conv["Achieved (FLOP/s)"] == "1.47 GFLOP/s" and conv["Utilization (% of peak FLOP/s)"] == "1.5%"
    mhead = modules[0]
    assert mhead[0] == "Module" and "Time / forward (s)" in mhead
    mrows = [dict(zip(mhead, r)) for r in modules[1:]]
    assert [r["Type"] for r in mrows] == ["Sequential", "Conv2d", "Linear"]  # model order, root included
    assert mrows[0]["Module"] == "(model)" and mrows[1]["Module"].strip() == "0"
    assert mrows[2]["Achieved (FLOP/s)"] == "n/a"  # NaN in modules.csv
    assert "warn" not in {a.get("class") for _, a in page.tags}  # a quiet, sane run: no warning


def _pool_ops() -> pd.DataFrame:
    """A conv, a max_pool2d (no multiply-add: other FLOPs only), an uncounted op, a label, a nested kernel."""
    return pd.DataFrame([
        {"name": "aten::conv2d", "kind": "op", "calls": 2, "dispatch_calls": 2, "self_time_s": 0.02, "counted": True,
         "flops": 4e8, "other_flops": 0.0, "bytes": 2e7, "achieved_flop_per_s": 2e10, "utilization": 0.2,
         "achieved_bytes_per_s": 1e9, "bandwidth_utilization": 0.05, "cpu_memory_usage_bytes": 3e6},
        # 6.1 MFLOP of comparisons, 4 MB moved in 5 ms: 800 MB/s = 4% of 20 GB/s
        {"name": "aten::max_pool2d", "kind": "op", "calls": 3, "dispatch_calls": 1, "self_time_s": 0.005,
         "counted": True, "flops": 0.0, "other_flops": 6.1e6, "bytes": 4e6, "achieved_flop_per_s": 0.0,
         "utilization": 0.0, "achieved_bytes_per_s": 8e8, "bandwidth_utilization": 0.04,
         "cpu_memory_usage_bytes": -1.2e6},
        {"name": "aten::weird", "kind": "op", "calls": 1, "dispatch_calls": 1, "self_time_s": 0.001, "counted": False,
         "flops": 0.0, "other_flops": 0.0, "bytes": 0.0, "achieved_flop_per_s": 0.0, "utilization": 0.0},
        {"name": "model_inference", "kind": "label", "calls": 1, "dispatch_calls": 0, "self_time_s": 0.03,
         "counted": False, "flops": 0.0, "other_flops": 0.0, "bytes": 0.0},
        {"name": "aten::max_pool2d_with_indices", "kind": "nested", "calls": 1, "dispatch_calls": 0,
         "self_time_s": 0.0, "counted": False, "flops": 0.0, "other_flops": 0.0, "bytes": 0.0},
    ])


def test_counted_ops_without_macs_show_their_other_work(tmp_path):
    out = write_report(tmp_path / "report.html", make_summary(), _pool_ops(), None, {})
    head, *body = Page(out.read_text(encoding="utf-8")).tables[1]
    rows = {r[0]: dict(zip(head, r)) for r in body}
    assert list(rows) == ["aten::conv2d", "aten::max_pool2d", "aten::weird"]  # dispatch level, by time
    assert head[1] == "Calls / forward"  # dispatch_calls: exact
    pool = rows["aten::max_pool2d"]
    assert pool["Calls / forward"] == "1"
    assert pool["FLOPs / forward (FLOP, 2 × MACs)"] == "—" and pool["Other FLOPs / forward (FLOP)"] == "6.10 MFLOP"
    assert pool["Bytes / forward (B)"] == "4.00 MB" and pool["Achieved (B/s)"] == "800 MB/s"
    assert pool["Bandwidth utilization (% of peak B/s)"] == "4.0%"
    assert pool["Achieved (FLOP/s)"] == "—" and pool["Utilization (% of peak FLOP/s)"] == "—"  # not "0 FLOP/s · 0.0%"
    assert pool["Net allocated / forward (B)"] == "-1.20 MB"
    weird = rows["aten::weird"]
    assert weird["FLOPs / forward (FLOP, 2 × MACs)"] == "uncounted" and weird["Achieved (FLOP/s)"] == ""
    assert rows["aten::conv2d"]["Utilization (% of peak FLOP/s)"] == "20.0%"


def test_warnings_and_phases(tmp_path):
    s = make_summary(
        latency_s={"p50": 1.31, "p90": 2.52, "p99": 2.6, "mean": 1.4, "std": 1.0, "min": 0.36, "max": 2.64, "n": 5},
        contention={"disturbed": True, "reason": "3 other processes used 1.2 CPUs"},
        peak_exceeded=[{"what": "op", "name": "aten::conv2d", "achieved_flop_per_s": 2.4e11,
                        "ceiling_flop_per_s": 1e11, "source": "derived"}],
        phases={"prefill": {"flops": 2e9, "other_flops": 1e6, "bytes": 1e8, "macs": 1e9, "utilization": 0.1,
                            "achieved_flop_per_s": 1e10, "time_s": {"p50": 0.2}},
                "decode": {"flops": 1e8, "other_flops": 1e5, "bytes": 4e8, "macs": 5e7, "utilization": 0.002,
                           "achieved_flop_per_s": 2e8, "time_s": {"p50": 0.5}}})
    ops = _pool_ops().assign(phase=["prefill", "decode", "decode", "prefill", "prefill"])
    out = write_report(tmp_path / "report.html", s, ops, None, {})
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert "timing disturbed: 3 other processes used 1.2 CPUs — these figures are not comparable" in text
    assert "p90/p50 = 1.92" in text and "p50/min = 3.64" in text and "--iters 50" in text  # 2.52/1.31, 1.31/0.36
    assert "peak exceeded: op aten::conv2d at 240 GFLOP/s &gt; 100 GFLOP/s (derived)" in text
    phases = page.tables[1]
    assert [r[0] for r in phases[1:]] == ["prefill", "decode"]
    assert dict(zip(phases[0], phases[2]))["Time p50 (s, un-profiled)"] == "500 ms"
    prefill, decode = page.tables[2], page.tables[3]
    assert [r[0] for r in prefill[1:]] == ["aten::conv2d"] and [r[0] for r in decode[1:]] == ["aten::max_pool2d",
                                                                                            "aten::weird"]
    assert dict(zip(prefill[0], prefill[1]))["Utilization (% of peak FLOP/s)"] == "20.0% !"
    assert 'id="operators-prefill"' in text and 'id="operators-decode"' in text


def test_unknown_peak_and_missing_inputs(tmp_path):
    s = make_summary(peak_flop_per_s=None, peak_source="unknown", utilization=None, peak_memory_bytes=None,
                     latency_s={}, coverage=None, profiled=None, tag="nightly")
    out = write_report(tmp_path / "report.html", s, pd.DataFrame(), None, {"roofline": tmp_path / "missing.png"})
    page = Page(out.read_text(encoding="utf-8"))
    kv = {r[0]: r[1] for r in page.tables[0][1:]}
    assert kv["Peak (FLOP/s)"] == "n/a (peak unknown)"
    assert kv["Utilization (% of peak FLOP/s)"] == "n/a" and kv["Peak memory (B)"] == "n/a"
    assert kv["Latency p50 (s, un-profiled)"] == "n/a" and kv["Tag"] == "nightly"
    assert len(page.tables) == 1  # no operator / module rows: a note instead of empty tables
    assert "no pictures for this run" in out.read_text()
