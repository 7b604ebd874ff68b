"""``LOGDIR/history.csv``: one row per finished run, safe to append from many processes.

Layout
------
Schema :data:`SCHEMA_VERSION`: :data:`FIXED_COLUMNS` (``schema_version`` first), then the
phase columns of every registered workload (:func:`phase_columns`, from each workload's
``history_columns()``, in registry order); :func:`columns` is that header (``COLUMNS`` reads
it too). A workload registered at run time adds its columns: a file whose header lacks a
column a new row needs is rewritten, atomically, with the header extended (old rows get
empty cells). Every value is
plain CSV (RFC 4180 quoting, ``\\n`` line ends, UTF-8); an empty field is a missing value.
Times are seconds, rates per second, ``run_dir`` is relative to LOGDIR when the run lies
inside it (so a logdir can be moved) and absolute otherwise. The file always loads with
``pandas.read_csv``.

Appending (:func:`append`)
--------------------------
Under an exclusive ``fcntl.flock`` on ``LOGDIR/.history.csv.lock`` the current file is
read and validated, the new row is added to its exact bytes, and the whole content goes
to a temporary file that is fsynced and renamed over ``history.csv`` (then the directory
is fsynced). Why this and not ``O_APPEND``: with rename a reader, a crash, a full disk or a
power cut can only ever see the old file or the new one — never a half-written row that
would break ``read_csv`` — and validating under the lock means a corrupt file is reported
(and left untouched) instead of being appended to. The cost is rewriting the file, a few
milliseconds even for ten thousand rows. Why ``flock`` and not the ``filelock`` package:
it is in the standard library, and the kernel releases it when the holder dies (even on
SIGKILL), so no stale lock file ever blocks a later run; the lock file itself is never
deleted (deleting it would let two processes lock two different inodes).

Reading (:func:`read`)
----------------------
Validates every line (header, field count, schema version, numbers) and raises a one-line
:class:`~harness.errors.HarnessError` (exit code 2) naming the file and line; files of an
older schema version are migrated in memory (see :data:`MIGRATIONS`) and never rewritten
silently — appends to such a file keep its own layout (with a note naming what it cannot
hold); ``python -m harness history --migrate`` rewrites it explicitly, keeping a copy.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from ..core import fsio
from ..core.schema import config_key, env_key, parse_config_key, parse_env_key  # noqa: F401 (history's API)
from ..errors import HarnessError
from ..pipeline import workloads

FILE_NAME = "history.csv"
LOCK_NAME = ".history.csv.lock"
SCHEMA_VERSION = 4

#: Schema 4: the columns every row has; the workloads' phase columns (:func:`phase_columns`) follow.
FIXED_COLUMNS: list[str] = [
    "schema_version", "run_id", "started_at", "scenario",
    # config key and its parts
    "config_key", "batch_size", "dtype", "device", "threads", "tag", "workload",
    # environment key and its parts
    "env_key", "torch_version", "device_name", "git_commit",
    # work
    "params", "macs", "flops",
    # latency of one iteration (a forward; a generate call; a train step), seconds
    "latency_p50_s", "latency_p90_s", "latency_p99_s", "latency_mean_s", "latency_std_s", "latency_n",
    # rates
    "throughput_samples_per_s", "achieved_flop_per_s", "utilization", "peak_flop_per_s", "peak_source",
    "peak_memory_bytes",
    # how busy the machine was (summary["contention"])
    "cpu_share", "disturbed",
    "run_dir",
]

#: Schema 3 (frozen): the phase columns of generate and train sat between latency and rates.
PHASE_COLUMNS_V3: list[str] = ["ttft_p50_s", "decode_step_p50_s", "forward_p50_s", "backward_p50_s",
                               "optimizer_p50_s"]
_AT = FIXED_COLUMNS.index("throughput_samples_per_s")
COLUMNS_V3: list[str] = FIXED_COLUMNS[:_AT] + PHASE_COLUMNS_V3 + FIXED_COLUMNS[_AT:]

#: Schema 2: schema 3 without workload, phase timings, peak_source, cpu_share, disturbed.
COLUMNS_V2: list[str] = [c for c in COLUMNS_V3 if c not in
                         {"workload", *PHASE_COLUMNS_V3, "peak_source", "cpu_share", "disturbed"}]

#: Schema 1, the first layout (the issue's list: keys only, no config/env parts, no
#: throughput or memory). Read and migrated in memory; appended to in its own layout.
COLUMNS_V1: list[str] = [
    "schema_version", "run_id", "started_at", "scenario", "config_key", "env_key",
    "params", "macs", "flops",
    "latency_p50_s", "latency_p90_s", "latency_p99_s", "latency_mean_s", "latency_std_s", "latency_n",
    "achieved_flop_per_s", "utilization", "peak_flop_per_s", "run_dir",
]

#: The fixed layouts of the older schemas (schema 4's header is :func:`columns`, possibly extended).
LAYOUTS: dict[int, list[str]] = {1: COLUMNS_V1, 2: COLUMNS_V2, 3: COLUMNS_V3}

#: Columns that stay text (a commit like ``1234567`` must not become a number).
TEXT_COLUMNS = {"run_id", "started_at", "scenario", "config_key", "dtype", "device", "tag", "workload", "env_key",
                "torch_version", "device_name", "git_commit", "peak_source", "run_dir"}
INT_COLUMNS = {"schema_version", "batch_size", "threads", "params", "macs", "flops", "latency_n", "disturbed"}
#: What a phase column may be called (schema 4 validates the columns after :data:`FIXED_COLUMNS`).
PHASE_COLUMN_NAME = re.compile(r"[a-z][a-z0-9_]*")


def phase_columns() -> list[str]:
    """The phase p50 columns of every registered workload (``history_columns()``), registry order, each once."""
    out: list[str] = []
    for cls in workloads.WORKLOADS.values():
        out += [c for c in cls.history_columns() if c not in out]
    return out


def columns() -> list[str]:
    """The current header: :data:`FIXED_COLUMNS` then :func:`phase_columns`."""
    return FIXED_COLUMNS + phase_columns()


def __getattr__(name: str) -> Any:
    """``COLUMNS`` and ``NUMERIC_COLUMNS`` follow the registry (a workload registered at run time adds columns)."""
    if name == "COLUMNS":
        return columns()
    if name == "NUMERIC_COLUMNS":
        return [c for c in columns() if c not in TEXT_COLUMNS]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


LOCK_TIMEOUT_S = 120.0


# keys: harness.core.schema (config_key, parse_config_key, parse_env_key)


# --------------------------------------------------------------------------- rows

def row_label(r: Any) -> str:
    """A history row (or summary) in words: ``vgg16 · bs 1 · float32 · cpu · 2 thr`` (+ tag, workload)."""
    tag = r.get("tag")
    bits = [str(r.get("scenario")), f"bs {_int_text(r.get('batch_size'))}", str(r.get("dtype")),
            str(r.get("device")), f"{_int_text(r.get('threads'))} thr"]
    if isinstance(tag, str) and tag:
        bits.append(f"tag {tag}")
    workload = r.get("workload")
    if isinstance(workload, str) and workload != "forward":
        bits.append(workload)
    return " · ".join(bits)


def _int_text(v: Any) -> str:
    try:
        return str(int(v))
    except (TypeError, ValueError):
        return "?"


def row_from_summary(summary: dict, logdir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The history row for a run's ``summary.json`` dict: every column of :func:`columns`, plus the
    phase columns of the run's own workload (were it not registered here)."""
    s = summary
    lat = s.get("latency_s") or {}
    workload = s.get("workload") or "forward"
    p50, bs = lat.get("p50"), s.get("batch_size")
    tput = s.get("throughput_samples_per_s")
    if tput is None and p50 and bs:
        tput = bs / p50
    contention = s.get("contention") or {}
    row = {
        "schema_version": SCHEMA_VERSION, "run_id": s.get("run_id"), "started_at": s.get("started_at"),
        "scenario": s.get("scenario"), "config_key": s.get("config_key") or summary_config_key(s),
        **{k: s.get(k) for k in ("batch_size", "dtype", "device", "threads", "tag")}, "workload": workload,
        "env_key": s.get("env_key") or env_key(s.get("torch_version"), s.get("device_name"), s.get("git_commit")),
        **{k: s.get(k) for k in ("torch_version", "device_name", "git_commit", "params", "macs", "flops")},
        "latency_p50_s": p50, "latency_p90_s": lat.get("p90"), "latency_p99_s": lat.get("p99"),
        "latency_mean_s": lat.get("mean"), "latency_std_s": lat.get("std"), "latency_n": lat.get("n"),
        **phase_p50s(s), "throughput_samples_per_s": tput,
        **{k: s.get(k) for k in ("achieved_flop_per_s", "utilization", "peak_flop_per_s", "peak_source",
                                 "peak_memory_bytes")},
        "cpu_share": contention.get("cpu_share"),
        "disturbed": None if contention.get("disturbed") is None else bool(contention["disturbed"]),
        "run_dir": _relative_run_dir(s.get("path"), logdir),
    }
    if not row["run_id"]:
        raise HarnessError("cannot add a run to history.csv: its summary has no run_id")
    return row


def summary_config_key(s: dict) -> str:
    """The config key of a summary without one: today's key for a forward run; another workload
    adds ``workload=NAME`` and the summary's values of that workload's options (``prompt_len``...)."""
    workload = s.get("workload") or "forward"
    extra = None
    if workload != "forward":
        cls = workloads.cls_for(workload)
        extra = cls.summary_config_extra(s) if cls is not None else {"workload": workload}
    return config_key(s.get("scenario"), s.get("batch_size"), s.get("dtype"), s.get("device"), s.get("threads"),
                      s.get("tag"), extra=extra)


def phase_p50s(s: dict) -> dict[str, float | None]:
    """Every registered phase column (None) with the run's own workload's filled from
    ``summary["phases"][phase]["time_s"]["p50"]`` (:func:`harness.pipeline.workloads.phase_p50s`)."""
    return {**{c: None for c in phase_columns()}, **workloads.phase_p50s(s)}


def _relative_run_dir(path: Any, logdir: Any) -> str | None:
    if not path:
        return None
    p = Path(path)
    if logdir is not None:
        try:
            return str(p.resolve().relative_to(Path(logdir).resolve()))
        except ValueError:
            pass
    return str(p.resolve())


def _cell(value: Any) -> str:
    """One CSV field: empty for a missing value, 1/0 for a boolean, ``repr`` for a float, one line for text."""
    value = none_if_na(value)
    if value is None:
        return ""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        value = value.item()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ""
        return repr(value)
    # one row per line: no line breaks inside a field
    return " ".join(str(value).splitlines())


def format_row(row: dict[str, Any], columns: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue().encode("utf-8")


def format_header(columns: list[str]) -> bytes:
    return (",".join(columns) + "\n").encode("utf-8")


def frame_bytes(df: pd.DataFrame, columns: list[str] | None = None) -> bytes:
    """``df`` as CSV bytes in history's format: a header, one line per row, :func:`_cell`'s fields
    (``columns``: which and in what order; default the frame's own). history.csv and sweep.csv use it."""
    cols = list(df.columns) if columns is None else list(columns)
    records = df.reindex(columns=cols).to_dict("records")
    return format_header(cols) + b"".join(format_row(r, cols) for r in records)


# --------------------------------------------------------------------------- locking

@contextlib.contextmanager
def locked(logdir: str | os.PathLike, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the exclusive history lock of ``logdir`` (``flock`` on ``.history.csv.lock``)."""
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    lock_path = logdir / LOCK_NAME
    try:
        import fcntl
    except ImportError:  # not POSIX: the filelock package does the same with the OS's own lock
        from filelock import FileLock, Timeout

        try:
            with FileLock(str(lock_path), timeout=timeout_s):
                yield
        except Timeout:
            raise HarnessError(f"{lock_path} stayed locked for {timeout_s:.0f} s; is another harness stuck?") from None
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HarnessError(
                        f"{lock_path} stayed locked for {timeout_s:.0f} s; is another harness process stuck?") from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- validation

class _Parsed:
    def __init__(self, version: int, columns: list[str], rows: list[list[str]]):
        self.version = version
        self.columns = columns
        self.rows = rows


def _bad(path: Path, line: int, what: str) -> HarnessError:
    return HarnessError(
        f"{path} line {line}: {what}; history.csv is left untouched — repair or move it away "
        f"(runs are kept in their directories)")


def _parse(path: Path, data: bytes) -> _Parsed | None:
    """Validate the bytes of a history file; ``None`` when empty. Raises HarnessError naming the line."""
    if not data.strip():
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _bad(path, line, "binary data (bytes that are not UTF-8 text), not CSV") from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise _bad(path, line, "binary data (NUL bytes), not CSV text")
    if not text.endswith("\n"):
        line = text.count("\n") + 1
        raise _bad(path, line, "the last line is incomplete (no line end: the file was cut short)")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise _bad(path, 1, f"unreadable header ({exc})") from None
    header = [h.strip() for h in header]
    if not header or header[0].lstrip("\ufeff") != "schema_version":
        raise _bad(path, 1, f"not a harness history header (first column {header[0][:40]!r}, expected 'schema_version')")
    version = _header_version(path, header)
    ncols = len(header)
    int_idx = [i for i, c in enumerate(header) if c in INT_COLUMNS]
    num_idx = [i for i, c in enumerate(header) if c not in TEXT_COLUMNS]
    run_id_idx = header.index("run_id")
    rows: list[list[str]] = []
    line_start = 2
    try:
        for rec in reader:
            line = line_start
            line_start = reader.line_num + 1
            if not rec:
                continue  # blank line
            if len(rec) != ncols:
                raise _bad(path, line, f"{len(rec)} fields where the header has {ncols} (a truncated or foreign row)")
            if rec[0] != str(version):
                if rec[0].isdigit() and int(rec[0]) > SCHEMA_VERSION:
                    raise _bad(path, line, f"schema_version {rec[0]} is newer than this harness reads ({SCHEMA_VERSION}); upgrade harness")
                raise _bad(path, line, f"schema_version {rec[0]!r} does not match the header's layout (version {version})")
            if not rec[run_id_idx]:
                raise _bad(path, line, "empty run_id")
            for i in num_idx:
                v = rec[i]
                if v == "":
                    continue
                try:
                    x = float(v)
                except ValueError:
                    raise _bad(path, line, f"column {header[i]} is {v[:30]!r}, not a number") from None
                if i in int_idx and not math.isnan(x) and x != int(x):
                    raise _bad(path, line, f"column {header[i]} is {v[:30]!r}, not a whole number")
            rows.append(rec)
    except csv.Error as exc:
        raise _bad(path, line_start, f"malformed CSV ({exc})") from None
    return _Parsed(version, header, rows)


def _header_version(path: Path, header: list[str]) -> int:
    """The schema of a header: an older fixed layout, or schema 4 (:data:`FIXED_COLUMNS` then phase columns)."""
    version = next((v for v, cols in LAYOUTS.items() if cols == header), None)
    if version is not None:
        return version
    extra = header[len(FIXED_COLUMNS):]
    if header[:len(FIXED_COLUMNS)] == FIXED_COLUMNS:
        bad = [c for c in extra if not PHASE_COLUMN_NAME.fullmatch(c) or c in FIXED_COLUMNS]
        dup = sorted({c for c in extra if extra.count(c) > 1})
        if not bad and not dup:
            return SCHEMA_VERSION
        raise _bad(path, 1, f"phase column {(bad or dup)[0][:40]!r} is not a valid or unique column name")
    # a newer harness may have written it; otherwise it is a foreign CSV
    raise _bad(path, 1, "header does not match any known history schema "
                        f"(known: {', '.join(str(v) for v in [*LAYOUTS, SCHEMA_VERSION])}); written by a newer "
                        "harness, or not a harness file")


# --------------------------------------------------------------------------- migration

def _migrate_1_to_2(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    cfg = df["config_key"].map(lambda k: parse_config_key(k) if isinstance(k, str) else {})
    env = df["env_key"].map(lambda k: parse_env_key(k) if isinstance(k, str) else {})
    for col in ("batch_size", "dtype", "device", "threads", "tag"):
        df[col] = cfg.map(lambda d, c=col: d.get(c))
    for col in ("torch_version", "device_name", "git_commit"):
        df[col] = env.map(lambda d, c=col: d.get(c))
    bs = pd.to_numeric(df["batch_size"], errors="coerce")
    df["throughput_samples_per_s"] = bs / pd.to_numeric(df["latency_p50_s"], errors="coerce")
    df["peak_memory_bytes"] = math.nan
    df["schema_version"] = 2
    return df


def _migrate_2_to_3(df: pd.DataFrame) -> pd.DataFrame:
    """Schema 2 rows were all forward runs; phases, peak source and contention were not recorded."""
    df = df.copy()
    df["workload"] = "forward"
    for col in (*PHASE_COLUMNS_V3, "peak_source", "cpu_share", "disturbed"):
        df[col] = None
    df["schema_version"] = 3
    return df


def _migrate_3_to_4(df: pd.DataFrame) -> pd.DataFrame:
    """Schema 4 holds the same values; its phase columns follow the fixed ones (:func:`_frame` orders them)."""
    df = df.copy()
    df["schema_version"] = 4
    return df


#: In-memory migrations: version -> function returning the next version's frame.
MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3, 3: _migrate_3_to_4}


def _ordered(names: Any) -> list[str]:
    """:func:`columns`, then any other column in ``names`` (a phase column of a workload not registered here)."""
    cols = columns()
    return cols + [c for c in names if c not in cols]


def _frame(parsed: _Parsed | None) -> pd.DataFrame:
    if parsed is None:
        return _typed(pd.DataFrame({c: [] for c in columns()}))
    df = pd.DataFrame(parsed.rows, columns=parsed.columns, dtype=object)
    df = df.replace("", None)
    v = parsed.version
    while v < SCHEMA_VERSION:
        df = MIGRATIONS[v](df)
        v += 1
    return _typed(df.reindex(columns=_ordered(df.columns)))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in df.columns:
        if c in TEXT_COLUMNS:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
        elif c in INT_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df.reset_index(drop=True)


def history_path(logdir: str | os.PathLike) -> Path:
    return Path(logdir) / FILE_NAME


def file_version(logdir: str | os.PathLike) -> int | None:
    """The schema version ``history.csv`` is written in (None when absent or empty)."""
    path = history_path(logdir)
    if not path.exists():
        return None
    parsed = _parse(path, _read_bytes(path))
    return parsed.version if parsed else None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except IsADirectoryError:
        raise HarnessError(f"{path} is a directory, not a history file") from None
    except OSError as exc:
        raise HarnessError(f"{path} cannot be read ({exc.strerror or exc})") from None


# --------------------------------------------------------------------------- public API

def read(logdir: str | os.PathLike) -> pd.DataFrame:
    """All rows of ``LOGDIR/history.csv`` as a DataFrame with :func:`columns` (empty when absent), then
    any phase column the file has of a workload not registered here.

    Validates the file (HarnessError, exit 2, naming file and line, for anything that is
    not a complete harness history) and migrates older schema versions in memory.
    Text columns are ``object`` (``None`` for missing), whole numbers ``Int64``, others float.
    """
    path = history_path(logdir)
    return _frame(_parse(path, _read_bytes(path)))


def append(logdir: str | os.PathLike, summary: dict) -> None:
    """Add one run (its ``summary.json`` dict) to ``LOGDIR/history.csv``, atomically, under the lock.

    A corrupt file is never overwritten: HarnessError (exit 2) naming file and line. A schema-4
    file whose header lacks a phase column of this run's workload is rewritten with the header
    extended (old rows get empty cells). A file of an older schema version gets the row in its
    own layout, with a note naming the values it cannot hold (summary.json keeps everything).
    """
    logdir = Path(logdir)
    row = row_from_summary(summary, logdir)
    path = history_path(logdir)
    with locked(logdir):
        data = _read_bytes(path)
        try:
            parsed = _parse(path, data)
        except HarnessError as exc:
            raise HarnessError(f"run {row['run_id']} not added to history: {exc.message}") from None
        if parsed is None:
            cols = _ordered(row)
            new = format_header(cols) + format_row(row, cols)
        elif parsed.version < SCHEMA_VERSION:
            new = data + format_row({**row, "schema_version": parsed.version}, LAYOUTS[parsed.version])
        else:
            new = _with_row(parsed, data, row, list(workloads.history_columns(summary)))
        fsio.atomic_write_bytes(path, new)
    if parsed is not None and parsed.version < SCHEMA_VERSION:
        _warn_old_layout(path, logdir, parsed.version, row)


def _with_row(parsed: _Parsed, data: bytes, row: dict[str, Any], needed: list[str]) -> bytes:
    """A schema-4 file's bytes with ``row`` added; when its header lacks a ``needed`` column, the
    whole file with the header extended by those columns and empty cells in the old rows."""
    missing = [c for c in needed if c not in parsed.columns]
    if not missing:
        return data + format_row(row, parsed.columns)
    cols = parsed.columns + missing
    old = b"".join(format_row(dict(zip(parsed.columns, rec)), cols) for rec in parsed.rows)
    return format_header(cols) + old + format_row(row, cols)


def _warn_old_layout(path: Path, logdir: Path, version: int, row: dict[str, Any]) -> None:
    """The note for a row added to an older-schema file: its layout, what it left out, how to upgrade."""
    layout = set(LAYOUTS[version])
    phases = [c for c, v in row.items() if c not in layout and c not in FIXED_COLUMNS and v is not None]
    warn(f"{path} is in history schema {version}; this run was added in that layout"
         + (f" (without {', '.join(phases)}: kept in its summary.json)" if phases else "")
         + f". `python -m harness history --migrate --logdir {logdir}` upgrades it to schema {SCHEMA_VERSION} "
           "(keeping a copy)")


def migrate(logdir: str | os.PathLike) -> Path | None:
    """Rewrite an older-schema ``history.csv`` in the current layout, keeping the old file as
    ``history.v<N>.csv``. Returns the backup path, or None when nothing needed migrating."""
    logdir = Path(logdir)
    path = history_path(logdir)
    with locked(logdir):
        data = _read_bytes(path)
        parsed = _parse(path, data)
        if parsed is None or parsed.version == SCHEMA_VERSION:
            return None
        backup = logdir / f"history.v{parsed.version}.csv"
        n = 1
        while backup.exists():
            n += 1
            backup = logdir / f"history.v{parsed.version}.{n}.csv"
        fsio.atomic_write_bytes(backup, data)
        fsio.atomic_write_bytes(path, frame_bytes(_frame(parsed)))
        return backup


def none_if_na(v: Any) -> Any:
    try:
        if v is None or pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


def warn(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)
