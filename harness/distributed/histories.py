"""Merging history files: for file systems where ``flock`` is not reliable (some NFS and
parallel file systems), each job writes its own LOGDIR (its own ``history.csv``, no sharing)
and :func:`merge_histories` folds them into one, each run once.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..core import fsio
from ..errors import HarnessError


def _logdir(path: str | os.PathLike) -> Path:
    """A LOGDIR, or a ``history.csv`` inside one."""
    p = Path(path)
    from ..tracking.history import FILE_NAME

    if p.name == FILE_NAME or p.is_file():
        if p.name != FILE_NAME:
            raise HarnessError(f"{p}: a history file must be named {FILE_NAME} (give its LOGDIR)")
        return p.parent
    return p


def merge_histories(paths: Iterable[str | os.PathLike], out: str | os.PathLike) -> int:
    """Add every run of the histories in ``paths`` (LOGDIRs or their history.csv) to ``out``'s
    (a LOGDIR) ``history.csv``, under its lock; returns how many rows were added.

    A run already in ``out`` (same ``run_id``) is skipped; rows are ordered by ``started_at``.
    ``run_dir`` stays pointing at the run: relative to ``out`` when inside it, else absolute.
    Each input is read (validated, older schemas migrated in memory) by
    :func:`harness.tracking.history.read`.
    """
    from ..tracking import history

    out = Path(out)
    version = history.file_version(out)
    if version not in (None, history.SCHEMA_VERSION):
        raise HarnessError(f"{history.history_path(out)} is in history schema {version}; run "
                           f"`python -m harness history --migrate --logdir {out}` first")
    frames = []
    for p in paths:
        src = _logdir(p)
        df = history.read(src)
        df["run_dir"] = [None if rd is None else _rebase(src, rd, out) for rd in df["run_dir"]]
        frames.append(df)
    with history.locked(out):
        current = history.read(out)
        seen = set(current["run_id"])
        new = pd.concat(frames, ignore_index=True) if frames else current.iloc[:0]
        new = new[~new["run_id"].isin(seen)].drop_duplicates("run_id")
        merged = pd.concat([current, new], ignore_index=True).sort_values(["started_at", "run_id"], kind="stable")
        fsio.atomic_write_bytes(history.history_path(out), history.frame_bytes(merged))
    return len(new)


def _rebase(src: Path, run_dir: str, out: Path) -> str:
    p = Path(run_dir)
    absolute = p if p.is_absolute() else (src / p)
    try:
        return str(absolute.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(absolute.resolve())
