"""The run's trace loads in Holistic Trace Analysis (HTA), which then lists the aten ops.

HTA (``pip install HolisticTraceAnalysis==0.5.0``, the ``hta`` extra) pulls in Jupyter, so it is
not a runtime dependency; these checks skip when it is not installed. Only HTA's loader is
checked: on CPU-only traces with pandas 3 several of its analyzers fail (HTA's business).

HTA takes every ``*.json`` / ``*.gz`` in ``trace_dir`` as a trace and, without a rank in the
file, calls each rank 0 (the last one listed wins). A run directory also holds summary.json
and env.json, so point HTA at the trace explicitly (``trace_files={0: name}``) or at a
directory that holds only the trace.
"""
from __future__ import annotations

import logging

import pytest

from tbserver import harness_runs

pytest.importorskip("hta", reason="HolisticTraceAnalysis is not installed (pip install -e '.[hta]')")

# HTA 0.5.0's parser uses pandas' deprecated inplace= (a Pandas4Warning per call): its business, not ours
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning", "ignore:The inplace keyword")

OPS = {"aten::conv2d", "aten::linear", "aten::addmm", "aten::relu", "aten::max_pool2d"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return harness_runs(tmp_path_factory)


def names_in(analysis) -> set[str]:
    t = analysis.t
    (rank,) = t.get_ranks()
    df = t.get_trace(rank)
    sym = t.symbol_table.get_sym_table()
    return {sym[i] for i in df["name"].unique()}


@pytest.mark.parametrize("index", [0, 2], ids=["json", "gzip"])
def test_trace_dir_with_the_trace(runs, tmp_path, index):
    from hta.trace_analysis import TraceAnalysis

    run = runs.runs[index]
    trace = runs.trace(run)
    d = run.path / "hta"  # each run links its trace alone here, for trace_dir=
    assert [p.name for p in d.iterdir()] == ["rank0.trace.json" + (".gz" if trace.name.endswith(".gz") else "")]
    assert (d / next(iter(p.name for p in d.iterdir()))).stat().st_ino == trace.stat().st_ino  # a link, no copy
    logging.getLogger("hta").setLevel(logging.ERROR)
    names = names_in(TraceAnalysis(trace_dir=str(d)))
    assert OPS <= names and "model_inference" in names


def test_run_dir_with_explicit_trace_file(runs):
    from hta.trace_analysis import TraceAnalysis

    r = runs.runs[0]
    ta = TraceAnalysis(trace_files={0: runs.trace(r).name}, trace_dir=str(r.path),
                       include_last_profiler_step=True)  # HTA drops the last step by default
    names = names_in(ta)
    assert OPS <= names
    steps = r.summary["profiled"]["steps"]
    (rank,) = ta.t.get_ranks()
    df = ta.t.get_trace(rank)
    label = ta.t.symbol_table.get_sym_id_map()["model_inference"]
    assert int((df["name"] == label).sum()) == steps
