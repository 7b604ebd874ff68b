"""A self-contained ``report.html`` per run, and the tables it shares with TensorBoard's TEXT.

The report opens in any browser with no network: CSS is inline, pictures are
``data:`` URIs, there is no ``<script>`` at all and no external link is needed.
Numbers carry SI prefixes (``harness.core.units``) and every column header says its unit;
unknown values (no peak for this device, NaN) print as ``n/a``.

The table builders (:func:`summary_rows`, :func:`figures_table`, :func:`ops_table`,
:func:`modules_table`) return plain strings so the same content renders as HTML here and as
markdown in TensorBoard's TEXT dashboard (:mod:`harness.report.tensorboard`). Every "per
iteration" wording uses the workload's word (forward, generation, training step:
:func:`harness.report.cells.iteration_word`); with several phases the operator and module
tables come one per phase, each named after it.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..core.fsio import atomic_write_text
from ..core.units import percent, seconds, si
from .caveats import exceeded_names, timing_noise, warnings
from .cells import CACHE_LEGEND, cache_marked, calls_column, dispatch_level, iteration_word, num, op_cells
from .phases import PHASE_HEADERS, per_phase, phase_rows

# ---------------------------------------------------------------- values ----


def is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def fmt_si(v: Any, unit: str = "") -> str:
    return si(num(v), unit)


def fmt_s(v: Any) -> str:
    return seconds(num(v))


def fmt_pct(v: Any, digits: int = 1) -> str:
    return percent(num(v), digits)


def fmt_count(v: Any) -> str:
    """Calls per iteration: an integer when whole, else 3 significant digits."""
    f = num(v)
    if f is None:
        return "n/a"
    return f"{int(round(f))}" if abs(f - round(f)) < 1e-9 else f"{f:.3g}"


def fmt_text(v: Any) -> str:
    return "n/a" if is_missing(v) or v == "" else str(v)


def _get(mapping: Any, *keys: str) -> Any:
    cur = mapping
    for k in keys:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(k)
    return cur


# ---------------------------------------------------------------- tables ----

Table = tuple[list[str], list[list[str]]]  # headers, rows of formatted cells


def summary_rows(summary: dict) -> list[tuple[str, str]]:
    """(quantity with unit, formatted value) pairs: what a run measured, in reading order.

    The headline (latency, achieved, utilization) uses the un-profiled p50; the profiled op
    time is the basis of the operator and module tables and of time_by_module.png.
    """
    s = summary or {}
    lat = s.get("latency_s") or {}
    peak = num(s.get("peak_flop_per_s"))
    peak_src = s.get("peak_source") or "unknown"
    peak_txt = fmt_si(peak, "FLOP/s") + (f" ({peak_src})" if peak is not None else f" (peak {peak_src})")
    cov = s.get("coverage") or {}
    prof = s.get("profiled") or {}
    device = fmt_text(s.get("device"))
    if s.get("device_name"):
        device = f"{device} — {s['device_name']}"
    noisy = " (noisy: see the warning)" if timing_noise(s) else ""
    w, ws = iteration_word(s), iteration_word(s, plural=True)
    above = " (above the ceiling: see the warning)" if exceeded_names(s, "run") else ""
    return [
        ("Scenario", fmt_text(s.get("scenario"))),
        ("Run", fmt_text(s.get("run_id"))),
        ("Started (UTC)", fmt_text(s.get("started_at"))),
        ("Tag", fmt_text(s.get("tag")) if s.get("tag") else "—"),
        ("Device", device),
        ("Dtype", fmt_text(s.get("dtype"))),
        ("Batch size (samples)", fmt_text(s.get("batch_size"))),
        ("Threads", fmt_text(s.get("threads"))),
        ("Warmup / timed iterations", f"{fmt_text(s.get('warmup'))} / {fmt_text(s.get('iters'))}"),
        ("Parameters", fmt_si(s.get("params"))),
        (f"MACs per {w} (MAC)", fmt_si(s.get("macs"), "MAC")),
        (f"FLOPs per {w} (FLOP, 2 × MACs)", fmt_si(s.get("flops"), "FLOP")),
        (f"Other FLOPs per {w} (FLOP)", fmt_si(s.get("other_flops"), "FLOP")),
        (f"Bytes moved per {w} (B)", fmt_si(s.get("bytes"), "B")),
        ("Latency p50 (s, un-profiled)", fmt_s(lat.get("p50")) + noisy),
        ("Latency p90 (s)", fmt_s(lat.get("p90"))),
        ("Latency p99 (s)", fmt_s(lat.get("p99"))),
        ("Latency mean ± std (s)", f"{fmt_s(lat.get('mean'))} ± {fmt_s(lat.get('std'))}"),
        ("Latency min / max (s)", f"{fmt_s(lat.get('min'))} / {fmt_s(lat.get('max'))}"),
        ("Throughput (samples/s)", fmt_si(s.get("throughput_samples_per_s"), "samples/s")),
        ("Achieved (FLOP/s, FLOPs / p50)", fmt_si(s.get("achieved_flop_per_s"), "FLOP/s")),
        ("Peak (FLOP/s)", peak_txt),
        ("Utilization (% of peak FLOP/s)", fmt_pct(s.get("utilization")) + above),
        ("Memory bandwidth peak (B/s)", fmt_si(s.get("mem_bandwidth_bytes_per_s"), "B/s")),
        ("Achieved bandwidth (B/s, bytes / p50)", fmt_si(s.get("achieved_bytes_per_s"), "B/s")),
        ("Arithmetic intensity (FLOP/B)", fmt_si(s.get("arithmetic_intensity"), "FLOP/B")),
        ("Peak memory (B)", fmt_si(s.get("peak_memory_bytes"), "B")),
        ("Measured memory peak by category (B; memory.csv)", _measured_memory(s)),
        ("Forecast memory peak on the meta device (B; error vs measured)", _forecast_memory(s)),
        (f"Profiled {ws}", fmt_text(prof.get("steps"))),
        (f"Profiled op time per {w} (s; the tables' basis)", fmt_s(prof.get("op_time_per_forward_s"))),
        (f"Profiled time per {w} (s; ops and profiler labels)", fmt_s(prof.get("time_per_forward_s"))),
        ("Coverage: ops with counted work (% of ops)", fmt_pct(cov.get("share_of_ops"))),
        ("Coverage: time in counted ops (% of time)", fmt_pct(cov.get("share_of_time"))),
        *_kernel_rows(s, w),
        ("Trace size (B)", fmt_si(s.get("trace_bytes"), "B")),
        ("Torch", fmt_text(s.get("torch_version"))),
        ("Harness commit", fmt_text(s.get("git_commit"))),
    ]


def _kernel_rows(s: dict, w: str) -> list[tuple[str, str]]:
    """A compiled run's time is in its kernels (kernels.csv): their time and how much of it is attributed."""
    cov = s.get("coverage") or {}
    if not (s.get("compile") or {}).get("fusion") or cov.get("kernel_time_per_iteration_s") is None:
        return []
    return [(f"Kernel time per {w} (s; kernels.csv, a compiled run's basis)", fmt_s(cov["kernel_time_per_iteration_s"])),
            ("Coverage: kernel time in modules (% of kernel time)", fmt_pct(cov.get("share_of_kernel_time_in_modules"))),
            ("Coverage: kernel time counted (% of kernel time)", fmt_pct(cov.get("share_of_kernel_time_counted")))]


def _measured_memory(s: dict) -> str:
    from ..memory.measured import render

    return render(s.get("memory")) or "—"


def _forecast_memory(s: dict) -> str:
    from ..memory.measured import forecast_text

    return forecast_text(s.get("memory")).removeprefix("forecast ") or "—"


FIGURE_HEADERS = ["Figure", "Value"]


def figures_table(summary: dict) -> Table:
    """The workload's own rows (:func:`harness.pipeline.workloads.figures`: a generate run's TTFT,
    decode step and MBU; a train run's step, MFU/HFU and memory split), as a two-column table."""
    from ..pipeline.workloads import figures

    return list(FIGURE_HEADERS), [[f.label, f.text] for f in figures(summary or {})]


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    if name in df.columns:
        return df[name]
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def _has_values(df: pd.DataFrame, name: str) -> bool:
    return name in df.columns and any(not is_missing(v) and str(v) != "" for v in df[name])


# "{w}": the workload's word (forward, generation, training step)
OPS_HEADERS = ["Operator", "Kind", "Calls / {w}", "Self time / {w} (s)", "Time share (%)",
               "FLOPs / {w} (FLOP, 2 × MACs)", "Other FLOPs / {w} (FLOP)", "Bytes / {w} (B)",
               "Achieved (FLOP/s)", "Utilization (% of peak FLOP/s)", "Achieved (B/s)",
               "Bandwidth utilization (% of peak B/s)", "Net allocated / {w} (B)", "Bound"]
CALLS_WITH_NESTED = "Calls / {w} (profiler count, nested calls included)"


def _headers(template: list[str], summary: dict | None) -> list[str]:
    """``template`` with ``{w}`` replaced by the run's word for one iteration."""
    w = iteration_word(summary)
    return [h.format(w=w) for h in template]


def ops_table(ops: pd.DataFrame | None, top: int | None = 15, *, all_rows: bool = False,
              summary: dict | None = None) -> Table:
    """Operators by profiled self time per iteration (largest first), with their work and rates.

    Cells follow :mod:`harness.report.cells`: dispatch-level ops only unless ``all_rows``;
    an op without multiply-add FLOPs shows its other FLOPs, bytes and B/s; ``uncounted``
    marks an op without a formula. The Kind column appears with ``all_rows``, Bound when
    the data has it. Ops in ``summary["peak_exceeded"]`` get ``!`` after their utilization, cache-resident
    ops ``(cache)`` after their bandwidth utilization. Headers say the workload's word.
    """
    headers = list(OPS_HEADERS)
    calls_col, exact = calls_column(ops) if ops is not None else ("calls", True)
    if not exact:
        headers[2] = CALLS_WITH_NESTED
    if ops is None or len(ops) == 0:
        return _headers(headers, summary), []
    df = dispatch_level(ops, all_rows)
    df = df.assign(_t=pd.to_numeric(_col(df, "self_time_s"), errors="coerce").fillna(0.0))
    df = df.sort_values("_t", ascending=False, kind="stable")
    if top:
        df = df.head(top)
    total = pd.to_numeric(_col(ops, "self_time_s"), errors="coerce").sum()
    hot = exceeded_names(summary or {}, "op")
    rows = []
    for _, r in df.iterrows():
        share = r.get("time_share")
        if is_missing(share) and total:
            share = r["_t"] / total
        c = op_cells(r, exceeded=str(r.get("name")) in hot)
        rows.append([fmt_text(r.get("name")), fmt_text(r.get("kind")), fmt_count(r.get(calls_col)),
                     fmt_s(r.get("self_time_s")), fmt_pct(share), c.flops, c.other_flops, c.bytes, c.flop_per_s,
                     c.utilization, c.bytes_per_s, c.bandwidth_utilization, c.net_alloc,
                     "" if is_missing(r.get("bound")) else str(r.get("bound"))])
    drop = {"Bound"} if not _has_values(ops, "bound") else set()
    if not all_rows:
        drop.add("Kind")
    if "cpu_memory_usage_bytes" not in ops.columns:
        drop.add("Net allocated / {w} (B)")
    keep = [i for i, h in enumerate(headers) if h not in drop]
    return _headers([headers[i] for i in keep], summary), [[row[i] for i in keep] for row in rows]


MODULE_HEADERS = ["Module", "Type", "Params", "FLOPs / {w} (FLOP, 2 × MACs)", "Other FLOPs / {w} (FLOP)",
                  "Bytes / {w} (B)", "Time / {w} (s)", "Achieved (FLOP/s)", "Utilization (% of peak FLOP/s)",
                  "Achieved (B/s)"]


def modules_table(modules: pd.DataFrame | None, top: int | None = 15, *, tree: bool = False,
                  summary: dict | None = None) -> Table:
    """Modules with their work and profiled time per iteration (inclusive of their children).

    ``tree=False``: the ``top`` modules by time (the root module excluded: it is the
    whole model, see the summary). ``tree=True``: every module in model order, the
    path indented by depth. Rates follow :mod:`harness.report.cells` (a module without
    multiply-add work is rated in B/s, not shown as 0 FLOP/s). Pass one phase's rows
    (:func:`harness.report.phases.rows_of_phase`) for a phase's table.
    """
    headers = _headers(MODULE_HEADERS, summary)
    if modules is None or len(modules) == 0:
        return headers, []
    df = modules.copy()
    depth = pd.to_numeric(_col(df, "depth"), errors="coerce")
    if not tree:
        if depth.notna().any() and (depth > 0).any():
            df = df[depth > 0]
        df = df.assign(_t=pd.to_numeric(_col(df, "time_s"), errors="coerce").fillna(-1.0))
        df = df.sort_values("_t", ascending=False, kind="stable")
    if top:
        df = df.head(top)
    hot = exceeded_names(summary or {}, "module")
    rows = []
    for _, r in df.iterrows():
        path = fmt_text(r.get("path"))
        if path in ("", "n/a"):
            path = "(model)"
        if tree:
            path = "\u00a0\u00a0" * int(num(r.get("depth")) or 0) + path
        c = op_cells({**r.to_dict(), "kind": "op", "counted": True, "self_time_s": r.get("time_s")},
                     exceeded=fmt_text(r.get("path")) in hot)
        rows.append([path, fmt_text(r.get("type")), fmt_si(r.get("params")), c.flops, c.other_flops, c.bytes,
                     fmt_s(r.get("time_s")), c.flop_per_s, c.utilization, c.bytes_per_s])
    return headers, rows


def phases_table(summary: dict) -> Table:
    """One row per phase when the run has more than one (else no rows)."""
    return list(PHASE_HEADERS), phase_rows(summary)


# ------------------------------------------------------------------ html ----

_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif;margin:24px auto;max-width:1200px;
color:#1f2328;padding:0 16px;line-height:1.4}
h1{font-size:1.5em;margin-bottom:0.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d0d7de;
padding-bottom:4px}
.sub{color:#57606a;margin-top:0}
table{border-collapse:collapse;font-size:0.9em;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}
th{background:#f6f8fa;text-align:left;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.t{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;white-space:pre}
tr:nth-child(even) td{background:#fbfcfd}
.kv td:first-child{color:#57606a}
.pics{display:flex;flex-wrap:wrap;gap:16px}figure{margin:12px 0}figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{color:#57606a;font-size:0.9em}
.note{color:#57606a;font-size:0.85em}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;margin:6px 0;border-radius:4px}
"""

_TEXT_COLUMNS = {"Operator", "Module", "Type", "Kind", "Bound", "Phase", "Figure", "Value", "Quantity (unit)"}


def _html_table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    if not rows:
        return '<p class="note">n/a (no rows)</p>'
    out = [f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
           + "</tr></thead><tbody>"]
    for row in rows:
        cells = []
        for h, v in zip(headers, row):
            c = "t" if h in ("Operator", "Module") else ("" if h in _TEXT_COLUMNS else "n")
            cells.append(f'<td class="{c}">{html.escape(v)}</td>' if c else f"<td>{html.escape(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _image_tags(images: dict[str, Path] | None) -> str:
    parts = []
    for name, p in (images or {}).items():
        if p is None:
            continue
        p = Path(p)
        try:
            data = p.read_bytes()
        except OSError:
            continue
        mime = "image/svg+xml" if p.suffix.lower() == ".svg" else "image/png"
        b64 = base64.b64encode(data).decode("ascii")
        title = name.replace("_", " ")
        parts.append(f'<figure><img alt="{html.escape(title)}" src="data:{mime};base64,{b64}">'
                     f"<figcaption>{html.escape(title)}</figcaption></figure>")
    return '<div class="pics">' + "\n".join(parts) + "</div>" if parts else '<p class="note">no pictures for this run</p>'


def _warnings_html(s: dict) -> str:
    return "\n".join(f'<p class="warn">⚠ {html.escape(w)}</p>' for w in warnings(s))


def _ops_section(s: dict, ops: pd.DataFrame | None, top_ops: int | None) -> str:
    """The operator table, or one per phase (top operators of each) when the run has phases."""
    return "\n".join(_ops_block(s, rows, top_ops, f"Operators in phase {p}" if p else "Operators",
                                 f"operators-{p}" if p else "operators") for p, rows in per_phase(s, ops))


def _ops_block(s: dict, ops: pd.DataFrame | None, top_ops: int | None, heading: str, anchor: str) -> str:
    oh, orows = ops_table(ops, top=top_ops, summary=s)
    n_ops = len(dispatch_level(ops)) if ops is not None else 0
    note = (f"top {len(orows)} of {n_ops}" if n_ops > len(orows) else f"all {n_ops}") + " dispatch-level operators"
    n_other = 0 if ops is None else len(ops) - n_ops
    cache = f" {CACHE_LEGEND}." if cache_marked(orows) else ""
    other = (f'<p class="note">{n_other} other rows (profiler labels such as ProfilerStep*, and nested kernels '
             "whose time and work are in the row of the op that calls them) are not listed; ops.csv has them. "
             f"Time is the profiled self time per {html.escape(iteration_word(s))} incl. the kernels an op "
             "dispatched; rates use it. An op without multiply-add FLOPs shows its other FLOPs and bytes and is "
             "rated in B/s; — = none of that work; uncounted = no formula. Net allocated = allocated − freed inside "
             f"the op (negative: it freed more than it allocated).{html.escape(cache)}</p>")
    return (f'<h2 id="{html.escape(anchor)}">{html.escape(heading)} ({html.escape(note)})</h2>\n'
            f'{_html_table(oh, orows, "ops")}\n{other if n_other or n_ops else ""}')


def _modules_section(s: dict, modules: pd.DataFrame | None, max_modules: int | None) -> str:
    """The module tree, or one per phase (each headed with its phase) when the run has phases."""
    return "\n".join(_modules_block(s, rows, max_modules, f"Modules in phase {p}" if p else "Modules",
                                    f"modules-{p}" if p else "modules") for p, rows in per_phase(s, modules))


def _modules_block(s: dict, modules: pd.DataFrame | None, max_modules: int | None, heading: str,
                   anchor: str) -> str:
    mh, mrows = modules_table(modules, top=max_modules, tree=True, summary=s)
    n_mod = 0 if modules is None else len(modules)
    note = f"first {len(mrows)} of {n_mod} modules" if n_mod > len(mrows) else f"all {n_mod} modules, in model order"
    return (f'<h2 id="{html.escape(anchor)}">{html.escape(heading)} ({html.escape(note)})</h2>\n'
            f'{_html_table(mh, mrows, "modules")}')


def _phases_section(s: dict) -> str:
    ph, prows = phases_table(s)
    if not prows:
        return ""
    return ('<h2 id="phases">Phases</h2>\n' + _html_table(ph, prows, "phases")
            + '<p class="note">Each phase: its un-profiled p50 and the work counted in it.</p>')


def _figures_section(s: dict) -> str:
    """The workload's own rows (TTFT, decode step, MBU; training step, MFU/HFU, memory split), if any."""
    fh, frows = figures_table(s)
    if not frows:
        return ""
    name = fmt_text(s.get("workload"))
    return (f'<h2 id="workload">Workload <code>{html.escape(name)}</code>: per {html.escape(iteration_word(s))}</h2>\n'
            + _html_table(fh, frows, "kv"))


def _subtitle(s: dict) -> str:
    threads = s.get("threads")
    return " · ".join(str(x) for x in (s.get("device_name") or s.get("device"), s.get("dtype"),
                                        f"batch {s.get('batch_size')}" if s.get("batch_size") is not None else None,
                                        f"{threads} thread{'' if threads == 1 else 's'}" if threads is not None
                                        else None, s.get("workload") and f"workload {s['workload']}") if x)


def _kernels_section(s: dict, kernels: pd.DataFrame | None, top: int | None = 30) -> str:
    """A compiled run's kernels (kernels.csv): where its time is, with the ops and modules each fused."""
    if kernels is None or not len(kernels) or not s.get("compile"):
        return ""
    from .kernels_table import HEADERS, kernel_rows

    rows = kernel_rows(kernels, top)
    return (f'<h2 id="kernels">Kernels ({len(rows)} of {len(kernels)} by time, per {html.escape(iteration_word(s))})</h2>\n'
            + _html_table([h[:1].upper() + h[1:] for h in HEADERS], rows, "ops")
            + '<p class="note">A compiled run\'s time is in its kernels: generated ones (fused) and extern ones that stay '
              "aten ops. Fused ops / modules: what the kernel computes (first module, +N others); FLOP: its fused ops' "
              "counted work; moved: its own inputs and outputs (intermediates kept in registers are what fusion saves); "
              "kernels.csv has every kernel and its full lists.</p>")


def render_report(summary: dict, ops: pd.DataFrame | None, modules: pd.DataFrame | None,
                  images: dict[str, Path] | None, *, top_ops: int | None = 30, max_modules: int | None = 400,
                  kernels: pd.DataFrame | None = None, findings: dict | None = None) -> str:
    """The report as one HTML string (see :func:`write_report`)."""
    s = summary or {}
    title = f"{fmt_text(s.get('scenario'))} — harness run {fmt_text(s.get('run_id'))}"
    kv = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in summary_rows(s))
    w = html.escape(iteration_word(s))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="sub">{html.escape(_subtitle(s))}</p>
{_warnings_html(s)}
<h2 id="summary">Summary</h2>
<table class="kv"><thead><tr><th>Quantity (unit)</th><th>Value</th></tr></thead><tbody>{kv}</tbody></table>
<p class="note">All figures are per {w}, one iteration of the workload (one forward pass for <code>forward</code>,
one generation for <code>generate</code>, one training step for <code>train</code>). SI prefixes: K = 10³, M = 10⁶,
G = 10⁹, T = 10¹² (B = bytes, 1 MB = 10⁶ B). The headline (latency, achieved, utilization) uses the un-profiled p50;
the tables and pictures below use the profiled op time. Utilization = achieved FLOP/s ÷ peak FLOP/s; n/a where the
peak of this device is unknown.</p>
{_figures_section(s)}
{_phases_section(s)}
{_findings_section(findings)}
<h2 id="pictures">Pictures</h2>
{_image_tags(images)}
{_kernels_section(s, kernels, top_ops)}
{_ops_section(s, ops, top_ops)}
{_modules_section(s, modules, max_modules)}
<p class="note">Module time is the profiled op time per {w} inside the module, its children included.</p>
<p class="note">Written by harness; self-contained (no scripts, no network).</p>
</body></html>
"""


def _findings_section(findings: dict | None) -> str:
    """Every finding with its evidence table (findings.json's document; nothing when not computed)."""
    if findings is None:
        return ""
    from ..findings.render import document_html

    return document_html(findings)


def write_report(path: Path, summary: dict, ops: pd.DataFrame, modules: pd.DataFrame,
                 images: dict[str, Path], kernels: pd.DataFrame | None = None,
                 findings: dict | None = None) -> Path:
    """Write the self-contained HTML report of a run to ``path`` atomically; returns ``path``."""
    return atomic_write_text(Path(path), render_report(summary, ops, modules, images, kernels=kernels,
                                                       findings=findings))


# -------------------------------------------------------------- markdown ----


def _md_cell(v: str) -> str:
    return v.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: Iterable[list[str]], code_columns: Iterable[str] = ()) -> str:
    """A GitHub-style pipe table (TensorBoard's TEXT plugin renders the ``tables`` extension)."""
    code = set(code_columns)
    rows = list(rows)
    if not rows:
        return "_n/a (no rows)_"
    align = ["---" if h in _TEXT_COLUMNS else "---:" for h in headers]
    out = ["| " + " | ".join(_md_cell(h) for h in headers) + " |", "| " + " | ".join(align) + " |"]
    for row in rows:
        cells = []
        for h, v in zip(headers, row):
            v = v.replace("\u00a0", "")
            cells.append(f"`{_md_cell(v)}`" if h in code and v not in ("", "n/a") else _md_cell(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)
