"""The run record's codec: summary.json written and read in one place, old schemas migrated.

A run's summary (:class:`harness.core.schema.Summary`) is assembled once
(:func:`harness.pipeline.assemble.record`); the only keys added afterwards are the ones a
run cannot know before it is written (``path``, ``stage_times_s``), and they are added by
:func:`finalize`, which returns a new dict. Everything that reads a run — compare, history,
trends, the report, the multi-rank merge — reads it through :func:`load` / :func:`migrate`,
so a summary of any earlier schema comes back in the current one.

Schema history (``schema_version``):

1. the first layout (no workload, phases, warnings or contention);
2. + ``workload``, ``phase_names``, ``phases``, ``peak_exceeded``, ``warnings``, ``contention``;
3. + ``model_options``; ``profiled.time_per_iteration_s`` / ``op_time_per_iteration_s`` (the
   ``*_per_forward_s`` names stay readable for this schema); a train run's ``memory.weights_bytes``
   means parameters and buffers, each once, like the top-level key, with ``parameters_bytes`` and
   ``buffers_bytes`` beside it (schema 2 held parameters only there).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import HarnessError
from .schema import SUMMARY_SCHEMA_VERSION, Summary

#: Keys that only exist once the run directory is written.
LATE_KEYS = ("path", "stage_times_s")


def finalize(summary: Mapping[str, Any], **late: Any) -> Summary:
    """A copy of ``summary`` with the late keys set (:data:`LATE_KEYS`); anything else is refused."""
    bad = sorted(set(late) - set(LATE_KEYS))
    if bad:
        raise ValueError(f"the run record is built once; {', '.join(bad)} cannot be set afterwards")
    return {**summary, **late}  # type: ignore[typeddict-item]


def _from_1(s: dict) -> dict:
    out = dict(s)
    out.setdefault("workload", "forward")
    out.setdefault("phase_names", ["forward"])
    out.setdefault("phases", {})
    out.setdefault("peak_exceeded", [])
    out.setdefault("warnings", [])
    out.setdefault("contention", None)
    return out


def _from_2(s: dict) -> dict:
    out = dict(s)
    out.setdefault("model_options", {})
    prof = dict(out.get("profiled") or {})
    for old, new in (("time_per_forward_s", "time_per_iteration_s"),
                     ("op_time_per_forward_s", "op_time_per_iteration_s")):
        if old in prof:
            prof.setdefault(new, prof[old])
    out["profiled"] = prof
    mem = out.get("memory")
    if isinstance(mem, dict) and "weights_bytes" in mem and "parameters_bytes" not in mem:
        mem = dict(mem)
        mem["parameters_bytes"] = mem["weights_bytes"]
        if out.get("weights_bytes") is not None:
            mem["weights_bytes"] = out["weights_bytes"]
        out["memory"] = mem
    return out


#: version -> the step that lifts a summary of that version to the next one
MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _from_1, 2: _from_2}


def migrate(summary: Mapping[str, Any], where: str = "a summary") -> Summary:
    """``summary`` lifted to :data:`SUMMARY_SCHEMA_VERSION` (a new dict; the input is left as it is)."""
    version = summary.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise HarnessError(f"{where} has schema_version {version!r}, which no harness wrote")
    if version > SUMMARY_SCHEMA_VERSION:
        raise HarnessError(f"{where} has schema_version {version}, newer than this harness reads "
                           f"({SUMMARY_SCHEMA_VERSION}); upgrade harness")
    out = dict(summary)
    while version < SUMMARY_SCHEMA_VERSION:
        out = MIGRATIONS[version](out)
        version += 1
        out["schema_version"] = version
    return out  # type: ignore[return-value]


def load(path: str | Path) -> Summary:
    """Read a summary.json (or a run directory's) and migrate it; one-line HarnessError otherwise."""
    p = Path(path)
    if p.is_dir():
        p = p / "summary.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{p} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        from .text import short_exc

        raise HarnessError(f"{p} is not readable JSON ({short_exc(exc, 100)})") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{p} is not a harness run summary (not a JSON object)")
    return migrate(data, str(p))


def dump(path: str | Path, summary: Mapping[str, Any]) -> None:
    """Write ``summary`` atomically as ``path`` (the current schema only)."""
    if summary.get("schema_version") != SUMMARY_SCHEMA_VERSION:
        raise ValueError(f"refusing to write a summary of schema {summary.get('schema_version')!r}; "
                         f"migrate it first")
    from .fsio import atomic_write_json

    atomic_write_json(Path(path), dict(summary))
