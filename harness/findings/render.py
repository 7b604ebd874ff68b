"""Findings as a person reads them: the terminal block (top 3), report.html's section (all, with their
evidence tables) and TensorBoard's markdown text. Pure text from :class:`Finding` records."""
from __future__ import annotations

import html
import math
from typing import Any

from ..core.units import percent, seconds, si
from .model import Finding

TERMINAL_TOP = 3


def gain(f: Finding) -> str:
    """``-12.3% (1.20 ms of the p50)`` — the predicted change of an iteration's latency."""
    return f"-{percent(f.saved_share)} ({seconds(f.saved_s)} of the p50)"


def how(f: Finding) -> str:
    if f.needs_code_change:
        return "needs a code change (not verified)"
    return f"verify: {f.ab}" if f.ab else "verifiable with ab (run by name to get the command)"


def terminal_block(findings: list[Finding], top: int = TERMINAL_TOP) -> str:
    """``Findings (top 3 of N, by time they could save)`` and, per finding: title, predicted gain,
    change, how to verify it. Empty when there are none."""
    if not findings:
        return ""
    lines = [f"Findings (top {min(top, len(findings))} of {len(findings)}, by the time they could save; "
             f"all in findings.json and report.html)"]
    for i, f in enumerate(findings[:top], 1):
        lines.append(f"{i}. {f.title}: predicted {gain(f)}")
        lines.append(f"   change: {f.change}")
        lines.append(f"   {how(f)}")
    return "\n".join(lines)


def _cell(col: str, v: Any) -> str:
    """An evidence value as its column's unit says (README "Findings": ``_s`` seconds, ``_bytes``/``bytes``
    bytes, ``_share`` a share, ``_per_s`` a rate, ``flops``/``_elements`` counts); None is empty."""
    if v is None or v == "" or isinstance(v, bool) or not isinstance(v, (int, float)):
        return "" if v is None else str(v)
    if isinstance(v, float) and math.isnan(v):
        return ""
    if col.endswith("_flop_per_s"):
        return si(v, "FLOP/s")
    if col.endswith("_s") or "_s_" in col:
        return seconds(v)
    if col.endswith("_share"):
        return percent(v)
    if col == "bytes" or col.endswith("_bytes") or col.startswith("bytes_"):
        return si(v, "B")
    if col.endswith("flops"):
        return si(v, "FLOP")
    if col.endswith("_elements"):
        return si(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _evidence_rows(f: Finding, top: int | None) -> tuple[list[str], list[list[str]]]:
    cols = list(f.evidence_columns)
    rows = f.evidence if top is None else f.evidence[:top]
    return cols, [[_cell(c, r.get(c, "")) for c in cols] for r in rows]


def html_section(findings: list[Finding], evidence_rows: int | None = 50) -> str:
    """report.html's "Findings" section: every finding, its arithmetic and its evidence table."""
    out = ['<h2 id="findings">Findings</h2>']
    if not findings:
        return out[0] + '\n<p class="note">no findings: nothing predicted to save 1% or more of an iteration</p>'
    out.append('<p class="note">ranked by the share of an iteration they could save; predicted = the arithmetic '
               'below; verify the ones with an ab command (<code>run --verify-findings N</code> runs the top N)</p>')
    for i, f in enumerate(findings, 1):
        cols, rows = _evidence_rows(f, evidence_rows)
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        more = (f'<p class="note">{len(f.evidence) - len(rows)} more rows in findings.json</p>'
                if len(rows) < len(f.evidence) else "")
        out.append(
            f'<h3 id="finding-{html.escape(f.id)}">{i}. {html.escape(f.title)}</h3>\n'
            f"<p><b>predicted</b> {html.escape(gain(f))} · evidence {html.escape(seconds(f.time_s))} "
            f"({html.escape(percent(f.time_share))} of the profiled iteration) · <code>{html.escape(f.id)}</code></p>\n"
            f"<p><b>change</b> {html.escape(f.change)}<br><b>{'code change' if f.needs_code_change else 'verify'}</b> "
            f"{'' if f.needs_code_change else '<code>' + html.escape(f.ab or '') + '</code>'}</p>\n"
            f"<p><b>arithmetic</b> {html.escape(f.arithmetic)}</p>\n"
            f'<table class="evidence"><tr>{head}</tr>\n{body}</table>{more}')
    return "\n".join(out)


def markdown(findings: list[Finding]) -> str:
    """TensorBoard text: a table of every finding (rank, id, predicted, change, verify)."""
    if not findings:
        return "no findings"
    lines = ["| # | finding | predicted | change | verify |", "|---|---|---|---|---|"]
    for i, f in enumerate(findings, 1):
        verify = "code change" if f.needs_code_change else f"`{f.ab}`" if f.ab else "ab"
        cells = [str(i), f.title, gain(f), f.change, verify]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def verdict_lines(results: list[dict]) -> str:
    """``--verify-findings``: predicted vs measured per verified change (:func:`harness.findings.verify.verify`)."""
    lines = ["Findings verified (A/B in this process: candidate / baseline latency, with the interval)"]
    for r in results:
        m = r.get("measured_ratio")
        measured = (f"{m:.3f} [{r['low']:.3f}, {r['high']:.3f}] {r['verdict']}" if m is not None
                    else f"not measured: {r.get('error')}")
        lines.append(f"  {', '.join(r['ids'])}  ({r['side']}): predicted {r['predicted_ratio']:.3f}, measured {measured}")
        if r.get("inconclusive_reason"):
            lines.append(f"    {r['inconclusive_reason']}")
    return "\n".join(lines)


__all__ = ["document_html", "document_markdown", "document_terminal", "gain", "html_section", "markdown",
           "terminal_block", "verdict_lines"]


def _findings(doc: dict | None) -> list[Finding]:
    from .model import from_dict

    return [from_dict(d) for d in (doc or {}).get("findings") or []]


def document_terminal(doc: dict | None, top: int = TERMINAL_TOP) -> str:
    """:func:`terminal_block` of findings.json's document (plus its error, if a family failed)."""
    text = terminal_block(_findings(doc), top)
    if doc and doc.get("error"):
        text = (text + "\n" if text else "") + f"findings: not computed ({doc['error']})"
    return text


def document_html(doc: dict | None) -> str:
    return html_section(_findings(doc))


def document_markdown(doc: dict | None) -> str:
    return markdown(_findings(doc))
