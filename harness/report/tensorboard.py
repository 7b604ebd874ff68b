"""TensorBoard-native summaries of a run: they render with no network access.

torch-tb-profiler's pages load Google Charts from a CDN and stay a spinner offline;
TensorBoard's own dashboards (SCALARS, TEXT, IMAGES, HPARAMS) do not. So each run
also writes TensorBoard summaries, with TensorBoard's own protos and record writer.

Layout under ``LOGDIR`` (a TensorBoard *run* is a directory holding event files)::

    LOGDIR/<scenario>/<run_id>/                 run "<scenario>/<run_id>"
        <worker>.<span>.pt.trace.json             -> torch-tb-profiler (online views)
        events.out.tfevents.<step>.<run_id>       -> this module, one file:
            TEXT    report/summary (+ the workload's own rows), report/top_operators,
                    report/top_modules  (markdown tables; one per phase when the workload has several)
            IMAGES  roofline, time_by_module, memory_timeline   (one per key of ``images``)
            SCALARS memory/measured_peak_MB, memory/at_peak/<category>_MB (measured memory by category)
            HPARAMS session start (config) + end; metric scalars hparams/latency_p50_ms, ...
    LOGDIR/<scenario>/trends/<config>/          run "<scenario>/trends/<config>"
        events.out.tfevents.<step>.<run_id>       one file per run of that config:
            SCALARS latency/p50_ms, latency/p90_ms, throughput/samples_per_s,
                    compute/achieved_GFLOP_per_s, compute/utilization_pct, memory/peak_MB
                    at step = run index of the config
            TEXT    run  (which run_id is that step)

HPARAMS: every run dir is one session; no ``_hparams_/experiment`` summary is written
anywhere, so TensorBoard builds the experiment from all sessions: one table row per
run, columns = the union of the configs (batch_size, dtype, threads, ...) and of the
``hparams/*`` metrics, across scenarios and configs.

Every event file is written whole under a temporary name that lacks ``tfevents``
(TensorBoard only reads names containing it) and then renamed. The step is in the
file name, zero-padded, so name order is step order: TensorBoard reads a run's files
in name order and drops points whose step goes backwards.
"""
from __future__ import annotations

import io
import math
import os
import re
import socket
import struct
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..core.fsio import TMP_PREFIX, atomic_write_bytes
from ..core.schema import config_label, parse_config_key
from .caveats import warnings
from .cells import CACHE_LEGEND, cache_marked, dispatch_level, iteration_word, num
from .html import figures_table, markdown_table, modules_table, ops_table, phases_table, summary_rows
from .phases import per_phase

EVENT_PREFIX = "events.out.tfevents."
TEXT_SUMMARY = "report/summary"
TEXT_OPS = "report/top_operators"
TEXT_MODULES = "report/top_modules"
TEXT_FINDINGS = "report/findings"
TEXT_TREND_RUN = "run"
HPARAMS_METRIC_PREFIX = "hparams/"
TOP = 15

# (tag, unit-converting getter); a missing value writes no point
_MB = 1e6


def _lat(key: str) -> Callable[[dict], Any]:
    return lambda s: None if num((s.get("latency_s") or {}).get(key)) is None else num(s["latency_s"][key]) * 1e3


TREND_SCALARS: list[tuple[str, Callable[[dict], Any]]] = [
    ("latency/p50_ms", _lat("p50")),
    ("latency/p90_ms", _lat("p90")),
    ("throughput/samples_per_s", lambda s: num(s.get("throughput_samples_per_s"))),
    ("compute/achieved_GFLOP_per_s", lambda s: None if num(s.get("achieved_flop_per_s")) is None
     else num(s["achieved_flop_per_s"]) / 1e9),
    ("compute/utilization_pct", lambda s: None if num(s.get("utilization")) is None else 100 * num(s["utilization"])),
    ("memory/peak_MB", lambda s: None if num(s.get("peak_memory_bytes")) is None else num(s["peak_memory_bytes"]) / _MB),
]

def hparams_metric_tag(trend_tag: str) -> str:
    """``latency/p50_ms`` -> ``hparams/latency_p50_ms`` (the run's own copy, read by HPARAMS)."""
    return HPARAMS_METRIC_PREFIX + trend_tag.replace("/", "_")


HPARAM_KEYS = ["scenario", "batch_size", "dtype", "device", "device_name", "threads", "tag", "torch_version",
               "git_commit"]


# ------------------------------------------------------------ protos --------

def _pb():
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

    return event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2


def _scalar_value(tag: str, value: float):
    _, summary_pb2, *_ = _pb()
    return summary_pb2.Summary.Value(tag=tag, simple_value=float(value))


def _text_value(tag: str, markdown: str):
    _, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2 = _pb()
    from tensorboard.plugins.text import metadata as text_metadata

    md = text_metadata.create_summary_metadata(display_name=None, description=None)
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[markdown.encode("utf-8")],
                                    tensor_shape=tensor_shape_pb2.TensorShapeProto())
    return summary_pb2.Summary.Value(tag=tag, metadata=md, tensor=tensor)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def _image_value(tag: str, png: bytes):
    _, summary_pb2, *_ = _pb()
    w, h = png_size(png)
    img = summary_pb2.Summary.Image(height=h, width=w, colorspace=4, encoded_image_string=png)
    return summary_pb2.Summary.Value(tag=tag, image=img)


def _hparam_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
        return v
    if hasattr(v, "item"):
        return _hparam_value(v.item())
    return str(v)


def hparams_of(summary: dict) -> dict[str, Any]:
    """The HPARAMS columns of a run: :data:`HPARAM_KEYS` from the summary, then every other
    field of its config key (a workload's ``workload=``, ``prompt_len=`` …) as
    :func:`harness.core.schema.parse_config_key` reads it."""
    out = {k: summary.get(k) for k in HPARAM_KEYS}
    if summary.get("config_key"):
        for k, v in parse_config_key(summary["config_key"]).items():
            if out.get(k) is None and k != "tag":
                out[k] = v
    return out


def _hparams_values(summary: dict, start_time: float, end_time: float) -> list:
    """session_start_info (config) + session_end_info, as TensorBoard's hparams plugin reads them."""
    _, summary_pb2, *_ = _pb()
    from tensorboard.plugins.hparams import api_pb2, metadata as hp_metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(start_time_secs=start_time)
    for key, raw in hparams_of(summary).items():
        v = _hparam_value(raw)
        if isinstance(v, bool):
            start.hparams[key].bool_value = v
        elif isinstance(v, (int, float)):
            start.hparams[key].number_value = float(v)
        else:
            start.hparams[key].string_value = v
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=end_time)
    out = []
    for tag, data in ((hp_metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
                      (hp_metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))):
        out.append(summary_pb2.Summary.Value(tag=tag, metadata=hp_metadata.create_summary_metadata(data),
                                             tensor=hp_metadata.NULL_TENSOR))
    return out


def _event_file_bytes(events: list[tuple[float, int, list]]) -> bytes:
    """A complete event file: the version record, then one Event per (wall_time, step, values)."""
    event_pb2, summary_pb2, *_ = _pb()
    from tensorboard.summary.writer.record_writer import RecordWriter

    buf = io.BytesIO()
    w = RecordWriter(buf)
    first = events[0][0] if events else time.time()
    w.write(event_pb2.Event(wall_time=first, file_version="brain.Event:2").SerializeToString())
    for wall, step, values in events:
        if values:
            w.write(event_pb2.Event(wall_time=wall, step=step,
                                    summary=summary_pb2.Summary(value=values)).SerializeToString())
    return buf.getvalue()


def event_file_name(step: int, run_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id or f"{socket.gethostname()}.{os.getpid()}")
    return f"{EVENT_PREFIX}{max(int(step), 0):010d}.{safe}"


def _write_whole(path: Path, data: bytes, staged: Path | None = None) -> Path:
    """Write ``data`` whole to ``path`` (or only to ``staged``, which the caller renames
    to ``path`` later); returns ``path``. The temporary name holds no "tfevents", so
    TensorBoard never reads a partial file."""
    atomic_write_bytes(staged if staged is not None else path, data)
    return path


def _epoch(iso: Any, default: float) -> float:
    if not iso:
        return default
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def _steps_in(trend_dir: Path) -> list[int]:
    steps = []
    if trend_dir.is_dir():
        for p in trend_dir.iterdir():
            m = re.match(re.escape(EVENT_PREFIX) + r"(\d{10})\.", p.name)
            if m:
                steps.append(int(m.group(1)))
    return steps


# ------------------------------------------------------------ content -------

def summary_markdown(summary: dict) -> str:
    """Warnings (one bold line each), the summary table, the workload's own rows (TTFT, decode step
    and MBU; training step, MFU/HFU and memory split), then the phases table when there are phases."""
    s = summary or {}
    rows = [[k, v] for k, v in summary_rows(s)]
    parts = [f"**⚠ {w}**" for w in warnings(s)]
    parts.append(f"**Run summary** (per {iteration_word(s)})\n\n" + markdown_table(["Quantity (unit)", "Value"], rows))
    fh, frows = figures_table(s)
    if frows:
        parts.append(f"**Workload `{s.get('workload')}`** (per {iteration_word(s)})\n\n" + markdown_table(fh, frows))
    ph, prows = phases_table(s)
    if prows:
        parts.append("**Phases** (time: un-profiled p50 of each phase)\n\n" + markdown_table(ph, prows))
    return "\n\n".join(parts)


def ops_markdown(ops: pd.DataFrame | None, top: int = TOP, summary: dict | None = None) -> str:
    """The top dispatch-level operators, one table per phase when the run has phases."""
    s = summary or {}
    out = []
    for phase, part in per_phase(s, ops):
        headers, rows = ops_table(part, top=top, summary=s)
        n = len(dispatch_level(part)) if part is not None else 0
        where = f" in phase {phase}" if phase else ""
        cache = f"; {CACHE_LEGEND}" if cache_marked(rows) else ""
        out.append(f"**Top {len(rows)} of {n} dispatch-level operators{where} by profiled self time "
                   f"per {iteration_word(s)}** (FLOPs counted by harness, time by torch.profiler; — = none of that work, "
                   f"uncounted = no formula{cache})\n\n" + markdown_table(headers, rows, code_columns=["Operator"]))
    return "\n\n".join(out)


def modules_markdown(modules: pd.DataFrame | None, top: int = TOP, summary: dict | None = None) -> str:
    """The top modules by profiled time (root excluded), one table per phase when the run has phases."""
    s = summary or {}
    out = []
    for phase, part in per_phase(s, modules):
        headers, rows = modules_table(part, top=top, summary=s)
        n = 0 if part is None else len(part)
        where = f" in phase {phase}" if phase else ""
        out.append(f"**Top {len(rows)} of {n} modules{where} by profiled time per {iteration_word(s)}** "
                   "(root module excluded)\n\n" + markdown_table(headers, rows, code_columns=["Module"]))
    return "\n\n".join(out)


def phase_scalars(s: dict) -> list[tuple[str, float]]:
    """``phase/<name>/p50_ms`` and ``phase/<name>/achieved_GFLOP_per_s`` (and ``.../achieved_GB_per_s``)
    for runs with several phases (prefill/decode, forward/backward/optimizer)."""
    phases = s.get("phases") or {}
    if len(phases) < 2:
        return []
    out = []
    for name, ph in phases.items():
        p50 = num((ph.get("time_s") or {}).get("p50"))
        for tag, v, scale in (("p50_ms", p50, 1e3), ("achieved_GFLOP_per_s", num(ph.get("achieved_flop_per_s")), 1e-9),
                              ("achieved_GB_per_s", num(ph.get("achieved_bytes_per_s")), 1e-9)):
            if v is not None:
                out.append((f"phase/{name}/{tag}", v * scale))
    return out


def write_run_summaries(run_dir: Path, summary: dict, ops: pd.DataFrame, modules: pd.DataFrame,
                        images: dict[str, Path], *, trend_dir: Path, step: int,
                        defer: Callable[[str, str], Path] | None = None, findings: dict | None = None) -> list[Path]:
    """Write the TensorBoard summaries of one run; returns the event files' final paths.

    ``run_dir`` gets one event file (TEXT, IMAGES, HPARAMS of this run, next to its
    trace); ``trend_dir`` (one directory per config) gets one more event file holding
    the SCALARS at ``step``. ``step`` should be the run index of this config; if the
    trend directory already holds that step or a later one, the next free step is used
    instead (TensorBoard would drop a point whose step goes backwards).

    ``defer(staged_name, final_name) -> staged_path`` (``RunDir.defer``): when given,
    both files are written under staged names inside the (hidden) run directory and take
    their final names only when the caller commits it: the run's event file in the run
    directory, the trend point at its absolute path in ``trend_dir``. So TensorBoard never
    lists the directory under construction, and an aborted run leaves nothing behind,
    in the trend either. Without ``defer`` both are written at once (whole, renamed).

    Returns the final paths: ``[run_dir / <event file>, trend_dir / <event file>]`` (with
    ``defer``, the first is named inside the run directory as it will be once committed).
    """
    run_dir, trend_dir = Path(run_dir), Path(trend_dir)
    s = summary or {}
    run_id = str(s.get("run_id") or run_dir.name.removeprefix(TMP_PREFIX))
    now = time.time()
    wall = _epoch(s.get("finished_at"), now)
    start = _epoch(s.get("started_at"), wall)
    taken = _steps_in(trend_dir)
    step = max(int(step), max(taken) + 1 if taken else 0)

    # the run itself: TEXT, IMAGES, HPARAMS (+ its metric scalars)
    values = [_text_value(TEXT_SUMMARY, summary_markdown(s)),
              _text_value(TEXT_OPS, ops_markdown(ops, summary=s)),
              _text_value(TEXT_MODULES, modules_markdown(modules, summary=s))]
    if findings is not None:  # findings.json's document: the run's ranked findings (harness.findings)
        from ..findings.render import document_markdown

        values.append(_text_value(TEXT_FINDINGS, document_markdown(findings)))
    for name, p in (images or {}).items():
        try:
            values.append(_image_value(name, Path(p).read_bytes()))
        except (OSError, ValueError, TypeError):
            continue  # a missing or non-PNG picture is left out, the rest still shows
    from ..memory.measured import scalars as memory_scalars

    values += [_scalar_value(tag, v) for tag, v in memory_scalars(s)]
    metrics = [(hparams_metric_tag(tag), get(s)) for tag, get in TREND_SCALARS]
    values += [_scalar_value(tag, v) for tag, v in metrics if v is not None]
    values += _hparams_values(s, start, wall)
    run_name = event_file_name(step, run_id)
    staged = defer(f"{TMP_PREFIX}events.staged", run_name) if defer is not None else None
    run_event = _write_whole(run_dir / run_name, _event_file_bytes([(wall, step, values)]), staged=staged)

    # the config's trend: SCALARS at step = run index
    trend_values = [_scalar_value(tag, v) for tag, get in TREND_SCALARS if (v := get(s)) is not None]
    trend_values += [_scalar_value(tag, v) for tag, v in phase_scalars(s)]
    trend_values.append(_text_value(TEXT_TREND_RUN, f"step {step}: run `{run_id}` started {s.get('started_at') or 'n/a'}"
                                                    f" (`{config_label(s.get('config_key') or '')}`)"))
    trend_path = (trend_dir / event_file_name(step, run_id)).absolute()
    staged = defer(f"{TMP_PREFIX}trend.staged", trend_path) if defer is not None else None
    trend_event = _write_whole(trend_path, _event_file_bytes([(wall, step, trend_values)]), staged=staged)
    return [run_event, trend_event]
