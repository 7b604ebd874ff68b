"""Files that are never half-written.

Every file goes to a temporary name in the same directory, is fsynced and then
renamed over its final name, so a reader (TensorBoard's profiler plugin, pandas,
a second harness process) sees either nothing or the whole file. A run directory
is built under a hidden name (``.tmp-<run_id>``) and renamed into place when it is
complete; hidden leftovers of killed runs are ignored by readers and cleaned by
:func:`clean_stale_tmp`.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

TMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary name, fsync, rename).

    The temporary name ``.tmp-write-<pid>-<hex>`` never contains the final name, so
    readers that match on names (TensorBoard's ``*tfevents*``, the profiler plugin's
    ``*.pt.trace.json``) never see a partial file; the pid lets :func:`clean_stale_tmp`
    remove what a killed writer left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}write-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, to_json(obj))


def atomic_write_csv(path: str | os.PathLike, df: pd.DataFrame) -> Path:
    return atomic_write_text(path, df.to_csv(index=False))


def new_run_id(now: datetime | None = None) -> str:
    """A run id sortable by time and unique across processes started in the same second:
    ``20261125T061500.123456Z-<pid>-<random>``."""
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{os.getpid()}-{secrets.token_hex(2)}"


class RunDir:
    """A run directory that becomes visible only when complete.

    ``path`` is where files are written while the run works (a hidden ``.tmp-``
    directory); :meth:`commit` renames it to ``final``. If the process dies or the
    run fails, :meth:`abort` removes it; a SIGKILL leaves only the hidden directory.
    """

    def __init__(self, parent: Path, run_id: str):
        self.parent = Path(parent)
        self.run_id = run_id
        self.final = self.parent / run_id
        self.path = self.parent / f"{TMP_PREFIX}{run_id}"
        self.parent.mkdir(parents=True, exist_ok=True)
        self.path.mkdir()
        self._deferred: list[tuple[str, str | Path]] = []

    def defer(self, staged_name: str, final_name: str | Path) -> Path:
        """Stage a file under ``staged_name``; it takes ``final_name`` only after :meth:`commit`.

        Used for files whose mere presence makes a reader load the directory (the
        profiler plugin loads any directory holding ``*.pt.trace.json`` once and never
        again, hidden ones included), so they appear last, whole.
        ``final_name`` may also be an absolute path outside the run directory (a
        TensorBoard trend file): it is moved there after the commit, so an aborted run
        leaves nothing outside its hidden directory either.
        Returns the staged path to write to.
        """
        self._deferred.append((staged_name, final_name))
        return self.path / staged_name

    def commit(self) -> Path:
        fsync_dir(self.path)
        os.rename(self.path, self.final)
        fsync_dir(self.parent)
        self.path = self.final
        for staged, final in self._deferred:
            src = self.final / staged
            dst = self.final / final  # an absolute `final` stays as it is
            if src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
                fsync_dir(dst.parent)
        return self.final

    def abort(self) -> None:
        if self.path != self.final:
            shutil.rmtree(self.path, ignore_errors=True)


def _owner_alive(name: str) -> bool | None:
    """Whether the process that made a ``.tmp-<run_id>`` entry still runs (None: can't tell).

    Run ids hold the writer's pid: ``<time>-<pid>-<hex>``.
    """
    parts = name[len(TMP_PREFIX):].split("-")
    if len(parts) < 3 or not parts[1].isdigit():
        return None
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def clean_stale_tmp(root: Path, grace_s: float = 60.0, max_age_s: float = 86400.0) -> int:
    """Remove hidden temporaries left by killed runs; returns how many.

    An entry goes when its writer's pid no longer runs and it is older than ``grace_s``
    (a pid can be reused, so a day-old entry goes regardless). Live runs are never touched.
    """
    removed = 0
    root = Path(root)
    if not root.is_dir():
        return 0
    now = time.time()
    for p in root.glob(f"{TMP_PREFIX}*"):
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        alive = _owner_alive(p.name)
        if (alive is False and age > grace_s) or age > max_age_s or (alive is None and age > grace_s * 60):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed += 1
    return removed


def fault_point(stage: str) -> None:
    """Fault injection for the reliability tests: ``HARNESS_FAULT_AT=<stage>[:kill]``.

    Raises KeyboardInterrupt (a Ctrl-C) or SIGKILLs this process at ``stage``. Unset in
    normal use; costs one environment lookup.
    """
    want = os.environ.get("HARNESS_FAULT_AT")
    if not want:
        return
    where, _, how = want.partition(":")
    if where != stage:
        return
    if how == "kill":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    raise KeyboardInterrupt
