"""``LOGDIR/history.csv``: one row per finished run, safe to append from many processes.

Layout
------
:data:`COLUMNS` (schema :data:`SCHEMA_VERSION`), ``schema_version`` first. Every value is
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
silently — appends to such a file keep its own layout; ``python -m harness history
--migrate`` rewrites it explicitly, keeping a copy.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from ..core import fsio
from ..core.schema import config_key, env_key, parse_config_key, parse_env_key  # noqa: F401 (history's API)
from ..errors import HarnessError

FILE_NAME = "history.csv"
LOCK_NAME = ".history.csv.lock"
SCHEMA_VERSION = 3

#: Current layout (schema 3).
COLUMNS: list[str] = [
    "schema_version", "run_id", "started_at", "scenario",
    # config key and its parts
    "config_key", "batch_size", "dtype", "device", "threads", "tag", "workload",
    # environment key and its parts
    "env_key", "torch_version", "device_name", "git_commit",
    # work
    "params", "macs", "flops",
    # latency of one iteration (a forward; a generate call; a train step), seconds
    "latency_p50_s", "latency_p90_s", "latency_p99_s", "latency_mean_s", "latency_std_s", "latency_n",
    # phase medians, seconds: generate (ttft = prefill, decode step), train (forward, backward, optimizer)
    "ttft_p50_s", "decode_step_p50_s", "forward_p50_s", "backward_p50_s", "optimizer_p50_s",
    # rates
    "throughput_samples_per_s", "achieved_flop_per_s", "utilization", "peak_flop_per_s", "peak_source",
    "peak_memory_bytes",
    # how busy the machine was (summary["contention"])
    "cpu_share", "disturbed",
    "run_dir",
]

#: Phase columns: column -> (workload, phase name in ``summary["phases"]``).
PHASE_COLUMNS: dict[str, tuple[str, str]] = {
    "ttft_p50_s": ("generate", "prefill"), "decode_step_p50_s": ("generate", "decode"),
    "forward_p50_s": ("train", "forward"), "backward_p50_s": ("train", "backward"),
    "optimizer_p50_s": ("train", "optimizer"),
}

#: Summary keys that join a non-forward workload's config key (after ``workload=``).
WORKLOAD_SHAPE_KEYS: dict[str, tuple[str, ...]] = {"generate": ("prompt_len", "new_tokens"), "train": ()}

#: Schema 2: schema 3 without workload, phase timings, peak_source, cpu_share, disturbed.
COLUMNS_V2: list[str] = [c for c in COLUMNS if c not in
                         {"workload", *PHASE_COLUMNS, "peak_source", "cpu_share", "disturbed"}]

#: Schema 1, the first layout (the issue's list: keys only, no config/env parts, no
#: throughput or memory). Read and migrated in memory; appended to in its own layout.
COLUMNS_V1: list[str] = [
    "schema_version", "run_id", "started_at", "scenario", "config_key", "env_key",
    "params", "macs", "flops",
    "latency_p50_s", "latency_p90_s", "latency_p99_s", "latency_mean_s", "latency_std_s", "latency_n",
    "achieved_flop_per_s", "utilization", "peak_flop_per_s", "run_dir",
]

LAYOUTS: dict[int, list[str]] = {1: COLUMNS_V1, 2: COLUMNS_V2, 3: COLUMNS}

#: Columns that stay text (a commit like ``1234567`` must not become a number).
TEXT_COLUMNS = {"run_id", "started_at", "scenario", "config_key", "dtype", "device", "tag", "workload", "env_key",
                "torch_version", "device_name", "git_commit", "peak_source", "run_dir"}
INT_COLUMNS = {"schema_version", "batch_size", "threads", "params", "macs", "flops", "latency_n", "disturbed"}
NUMERIC_COLUMNS = [c for c in COLUMNS if c not in TEXT_COLUMNS]

LOCK_TIMEOUT_S = 120.0


# keys: harness.core.schema (config_key, parse_config_key, parse_env_key)


# --------------------------------------------------------------------------- rows

def row_from_summary(summary: dict, logdir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The history row (all of :data:`COLUMNS`) for a run's ``summary.json`` dict."""
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
    """The config key of a summary without one: today's key for a forward run; a generate or
    train run adds ``workload=...`` and its shape (:data:`WORKLOAD_SHAPE_KEYS`)."""
    workload = s.get("workload") or "forward"
    extra = None
    if workload != "forward":
        extra = {"workload": workload, **{k: s.get(k) for k in WORKLOAD_SHAPE_KEYS.get(workload, ()) if k in s}}
    return config_key(s.get("scenario"), s.get("batch_size"), s.get("dtype"), s.get("device"), s.get("threads"),
                      s.get("tag"), extra=extra)


def phase_p50s(s: dict) -> dict[str, float | None]:
    """:data:`PHASE_COLUMNS` from ``summary["phases"][name]["time_s"]["p50"]`` (None for other workloads)."""
    workload = s.get("workload") or "forward"
    phases = s.get("phases") or {}
    out: dict[str, float | None] = {}
    for col, (wl, name) in PHASE_COLUMNS.items():
        t = ((phases.get(name) or {}).get("time_s") or {}).get("p50") if wl == workload else None
        out[col] = t
    return out


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
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        value = value.item()
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
    version = next((v for v, cols in LAYOUTS.items() if cols == header), None)
    if version is None:
        # a newer harness may have written it; otherwise it is a foreign CSV
        raise _bad(path, 1, "header does not match any known history schema "
                            f"(known: {', '.join(str(v) for v in LAYOUTS)}); written by a newer harness, or not a harness file")
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
    for col in (*PHASE_COLUMNS, "peak_source", "cpu_share", "disturbed"):
        df[col] = None
    df["schema_version"] = 3
    return df


#: In-memory migrations: version -> function returning the next version's frame.
MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3}


def _frame(parsed: _Parsed | None) -> pd.DataFrame:
    if parsed is None:
        return _typed(pd.DataFrame({c: [] for c in COLUMNS}))
    df = pd.DataFrame(parsed.rows, columns=parsed.columns, dtype=object)
    df = df.replace("", None)
    v = parsed.version
    while v < SCHEMA_VERSION:
        df = MIGRATIONS[v](df)
        v += 1
    return _typed(df[COLUMNS])


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in COLUMNS:
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
    """All rows of ``LOGDIR/history.csv`` as a DataFrame with :data:`COLUMNS` (empty when absent).

    Validates the file (HarnessError, exit 2, naming file and line, for anything that is
    not a complete harness history) and migrates older schema versions in memory.
    Text columns are ``object`` (``None`` for missing), whole numbers ``Int64``, others float.
    """
    path = history_path(logdir)
    return _frame(_parse(path, _read_bytes(path)))


def append(logdir: str | os.PathLike, summary: dict) -> None:
    """Add one run (its ``summary.json`` dict) to ``LOGDIR/history.csv``, atomically, under the lock.

    A corrupt file is never overwritten: HarnessError (exit 2) naming file and line.
    A file of an older schema version gets the row in its own layout (columns it lacks
    are dropped for that row; summary.json in the run directory keeps everything).
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
            new = format_header(COLUMNS) + format_row(row, COLUMNS)
        else:
            cols = LAYOUTS[parsed.version]
            row = {**row, "schema_version": parsed.version}
            new = data + format_row(row, cols)
            if parsed.version < SCHEMA_VERSION:
                warn(f"{path} is in history schema {parsed.version}; this run was added in that layout. "
                     f"`python -m harness history --migrate --logdir {logdir}` upgrades it to schema {SCHEMA_VERSION} (keeping a copy)")
        fsio.atomic_write_bytes(path, new)


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
        df = _frame(parsed)
        out = format_header(COLUMNS) + b"".join(
            format_row({c: none_if_na(r[c]) for c in COLUMNS}, COLUMNS) for _, r in df.iterrows())
        fsio.atomic_write_bytes(path, out)
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
