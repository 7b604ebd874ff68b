"""``run X --verify-findings [N]``: the top N verifiable changes measured as in-process A/B verdicts.

Findings that ask for the same change (``compile`` for G4 chains and G3 fragments of every phase) are
one change: its predicted ratio is 1 - the sum of their predicted shares, and one A/B measures it.
Each A/B is ``harness ab`` with the run's own configuration on both sides and the change on the
candidate (:func:`harness.tracking.ab.parse_side`), judged as ``ab`` judges (a forward, a training step,
a decode step). Findings that need a code change are never run.
"""
from __future__ import annotations

from typing import Any, Callable

from .model import Finding, from_dict

DEFAULT_BUDGET_S = 10.0
#: the verdicts, written into the run's directory after it was committed (a new file: nothing is overwritten)
VERIFIED_FILE = "findings_verified.json"


def changes(doc: dict | None, n: int) -> list[dict]:
    """The top ``n`` distinct verifiable changes, in rank order: ``{side, ids, predicted_ratio, saved_share}``."""
    groups: dict[str, list[Finding]] = {}
    for f in (from_dict(d) for d in (doc or {}).get("findings") or []):
        if f.verifiable and f.ab_side is not None:
            groups.setdefault(f.ab_side, []).append(f)
    out = []
    for side, fs in list(groups.items())[:max(n, 0)]:
        # a side that includes another's options makes that change too (compile,optimizer_step=compiled: compile)
        fs = fs + [g for other, gs in groups.items() if other != side and _includes(side, other) for g in gs]
        whole = [f for f in fs if f.family == "compiled"]  # the whole iteration's prediction includes G4's and G3's
        fs = whole or fs
        share = min(sum(f.saved_share for f in fs), 0.99)
        out.append({"side": side, "ids": [f.id for f in fs], "saved_share": share, "predicted_ratio": 1.0 - share})
    return out


def batch_factor(side: str, batch_size: Any) -> float:
    """Candidate batch / the run's batch for a ``batch_size=N`` side (its ratio is then per sample), else 1."""
    opts = dict(o.split("=", 1) for o in side.split(",") if "=" in o)
    n = opts.get("batch_size") or opts.get("bs")
    return int(n) / int(batch_size) if n and batch_size else 1.0


def _includes(side: str, other: str) -> bool:
    return set(other.split(",")) < set(side.split(","))


def verify(doc: dict | None, spec: Any, n: int, *, budget_s: float = DEFAULT_BUDGET_S,
           progress: Callable[[str], None] | None = None) -> list[dict]:
    """Measure the top ``n`` changes of findings.json's document ``doc`` for the run of ``spec``; each entry
    of :func:`changes` gains ``measured_ratio``, ``low``, ``high``, ``verdict``, ``inconclusive_reason``,
    ``error`` (when the candidate could not be built: one line) and ``ab_path``."""
    from ..errors import HarnessError
    from ..tracking.ab import defaults_of, parse_side, run_ab

    defaults = defaults_of(spec)
    out = []
    for change in changes(doc, n):
        entry = dict(change, measured_ratio=None, low=None, high=None, verdict=None, inconclusive_reason=None,
                     error=None, ab_path=None)
        try:
            base = parse_side(spec.target, **defaults)
            cand = parse_side(f"{spec.target}:{change['side']}", **defaults)
            result = run_ab(base, cand, logdir=spec.logdir, progress=progress, budget_s=budget_s)
        except HarnessError as exc:
            entry["error"] = exc.message
            out.append(entry)
            continue
        est, k = result.estimate, batch_factor(change["side"], ((doc or {}).get("context") or {}).get("batch_size"))
        verdict = result.throughput.get("verdict") if k != 1 else result.verdict  # a batch change: per sample
        entry.update(measured_ratio=est.ratio / k, low=est.low / k, high=est.high / k, verdict=verdict,
                     inconclusive_reason=result.inconclusive_reason,
                     ab_path=str(result.path) if result.path is not None else None)
        out.append(entry)
    return out


def error_of(entry: dict) -> float | None:
    """|predicted - measured| / measured of the saved share (1 - ratio); None when not measured."""
    m = entry.get("measured_ratio")
    if m is None:
        return None
    measured, predicted = 1.0 - m, 1.0 - entry["predicted_ratio"]
    return abs(predicted - measured) / abs(measured) if measured else None


def save(run_dir: Any, results: list[dict], *, n: int, budget_s: float) -> Any:
    """``findings_verified.json`` in the (committed) run directory, written atomically (temporary file, fsync,
    rename): ``{schema_version, n, budget_s, changes: [...]}``, each change as :func:`verify` returns it with
    ``error_of_prediction`` (:func:`error_of`). A run directory is new per run, so the file never replaces
    another run's; a second verification of the same run is refused (exit 2)."""
    from pathlib import Path

    from ..core import fsio
    from ..errors import HarnessError
    from .model import SCHEMA_VERSION

    path = Path(run_dir) / VERIFIED_FILE
    if path.exists():
        raise HarnessError(f"{path} exists: outputs never overwrite each other")
    changes = [dict(r, error_of_prediction=error_of(r)) for r in results]
    return fsio.atomic_write_json(path, {"schema_version": SCHEMA_VERSION, "n": n, "budget_s": budget_s,
                                         "changes": changes})
