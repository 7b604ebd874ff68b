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
    assert kv["Latency p50 (s)"] == "250 us"
    assert kv["Achieved (FLOP/s, FLOPs / p50)"] == si(s["achieved_flop_per_s"], "FLOP/s") == "967 MFLOP/s"
    assert kv["Peak (FLOP/s)"] == "100 GFLOP/s (derived)"
    assert kv["Utilization (% of peak FLOP/s)"] == "1.0%"
    assert kv["Peak memory (B)"] == "123 MB"
    assert kv["Throughput (samples/s)"] == "8.00 Ksamples/s"
    head = ops[0]
    assert head[:4] == ["Operator", "Kind", "Calls / forward", "Self time / forward (s)"]
    assert "Achieved (FLOP/s)" in head and "Utilization (% of peak)" in head and "FLOPs / forward (FLOP)" in head
    rows = {r[0]: dict(zip(head, r)) for r in ops[1:]}
    conv = rows["aten::convolution"]
    assert conv["Self time / forward (s)"] == "150 us" and conv["FLOPs / forward (FLOP)"] == "221 KFLOP"
    assert conv["Achieved (FLOP/s)"] == "1.47 GFLOP/s" and conv["Utilization (% of peak)"] == "1.5%"
    assert rows["model_inference"]["Achieved (FLOP/s)"] == "n/a"  # NaN
    assert rows["model_inference"]["Utilization (% of peak)"] == "n/a"  # None
    mhead = modules[0]
    assert mhead[0] == "Module" and "Time / forward (s)" in mhead
    mrows = [dict(zip(mhead, r)) for r in modules[1:]]
    assert [r["Type"] for r in mrows] == ["Sequential", "Conv2d", "Linear"]  # model order, root included
    assert mrows[0]["Module"] == "(model)" and mrows[1]["Module"].strip() == "0"
    assert mrows[2]["Achieved (FLOP/s)"] == "n/a"


def test_unknown_peak_and_missing_inputs(tmp_path):
    s = make_summary(peak_flop_per_s=None, peak_source="unknown", utilization=None, peak_memory_bytes=None,
                     latency_s={}, coverage=None, profiled=None, tag="nightly")
    out = write_report(tmp_path / "report.html", s, pd.DataFrame(), None, {"roofline": tmp_path / "missing.png"})
    page = Page(out.read_text(encoding="utf-8"))
    kv = {r[0]: r[1] for r in page.tables[0][1:]}
    assert kv["Peak (FLOP/s)"] == "n/a (peak unknown)"
    assert kv["Utilization (% of peak FLOP/s)"] == "n/a" and kv["Peak memory (B)"] == "n/a"
    assert kv["Latency p50 (s)"] == "n/a" and kv["Tag"] == "nightly"
    assert len(page.tables) == 1  # no operator / module rows: a note instead of empty tables
    assert "no pictures for this run" in out.read_text()
