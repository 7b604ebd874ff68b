"""The :class:`Finding` record, the ranking, and findings.json's document.

A finding is one change a person (or the harness) could make, with the evidence rows it rests on
and the time it is predicted to save, the arithmetic written out. Predictions are shares of one
iteration: ``saved_share`` of the iteration's time, so ``predicted_ratio = 1 - saved_share`` is
what an A/B of the change should measure (candidate / baseline latency). ``saved_s`` is that share
of the un-profiled latency p50.

Torch-free and pandas-free: the CLI and report.html read findings.json through :func:`from_dict`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

SCHEMA_VERSION = 1

#: finding families, each a module of :mod:`harness.findings`
FAMILIES = ("compiled", "elementwise", "fragments", "channels", "dtype", "layout", "underfilled", "decode",
            "optimizer", "recompute", "attention")

#: findings predicted to save less than this share of an iteration are not reported
MIN_SAVED_SHARE = 0.01


@dataclass(frozen=True)
class Finding:
    """One change and what it is predicted to buy.

    ``id``: stable for a (family, phase, subject) — ``elementwise:forward``; ``family``: one of
    :data:`FAMILIES`; ``title``: one line; ``phase``: the workload phase (None: the whole iteration);
    ``evidence``: rows (dicts whose keys carry units, ``_s``, ``_bytes``) that the prediction sums over,
    ``evidence_columns`` their order; ``time_s``: profiled seconds per iteration of the evidence;
    ``time_share``: of the profiled iteration; ``saved_share``: predicted share of the iteration saved;
    ``saved_s``: that share of the un-profiled latency p50; ``arithmetic``: the prediction written out;
    ``change``: what to do, in words; ``ab_side``: the candidate side's options when the harness can make
    the change itself (``"compile"``, ``"dtype=bfloat16"``), else None; ``ab``: the command that measures it;
    ``needs_code_change``: the change is to the model's code (not verified).
    """

    id: str
    family: str
    title: str
    phase: str | None
    evidence: list = field(default_factory=list)
    evidence_columns: tuple = ()
    time_s: float = 0.0
    time_share: float = 0.0
    saved_share: float = 0.0
    saved_s: float = 0.0
    arithmetic: str = ""
    change: str = ""
    ab_side: str | None = None
    ab: str | None = None
    needs_code_change: bool = False

    @property
    def predicted_ratio(self) -> float:
        """Candidate / baseline latency an A/B of the change should measure."""
        return 1.0 - self.saved_share

    @property
    def verifiable(self) -> bool:
        return self.ab_side is not None and not self.needs_code_change

    def to_dict(self) -> dict:
        out = asdict(self)
        out["evidence_columns"] = list(self.evidence_columns)
        out["predicted_ratio"] = self.predicted_ratio
        out["verifiable"] = self.verifiable
        return out


def from_dict(d: dict) -> Finding:
    """A finding as findings.json holds it (derived keys dropped)."""
    keys = {k: v for k, v in d.items() if k not in ("predicted_ratio", "verifiable")}
    keys["evidence_columns"] = tuple(keys.get("evidence_columns") or ())
    return Finding(**keys)


def per_phase(rows: list[dict], make: Callable[[str, list[dict]], Finding], key: str | None = None) -> list[Finding]:
    """One finding per phase of ``rows`` (in their order; each phase's rows sorted by ``-row[key]`` when
    given), those that could save at least :data:`MIN_SAVED_SHARE`."""
    out = []
    for phase in dict.fromkeys(r["phase"] for r in rows):
        mine = [r for r in rows if r["phase"] == phase]
        f = make(phase, sorted(mine, key=lambda r: -r[key]) if key else mine)
        if f.saved_share >= MIN_SAVED_SHARE:
            out.append(f)
    return out


def ranked(findings: Iterable[Finding]) -> list[Finding]:
    """By the time they could save, largest first; ties by id (a stable order)."""
    return sorted(findings, key=lambda f: (-f.saved_share, f.id))


def document(findings: list[Finding], context: dict) -> dict:
    """findings.json: ``{schema_version, context, findings: [...]}`` (README "Findings")."""
    return {"schema_version": SCHEMA_VERSION, "context": context, "findings": [f.to_dict() for f in findings]}


def shares(time_s: float, saved_profiled_s: float, profiled_s: float, latency_s: float | None) -> dict:
    """``time_share``, ``saved_share`` (of the profiled iteration) and ``saved_s`` (that share of the
    un-profiled latency p50): the keyword arguments every family passes to :class:`Finding`."""
    share = saved_profiled_s / profiled_s if profiled_s > 0 else 0.0
    return {"time_s": time_s, "time_share": time_s / profiled_s if profiled_s > 0 else 0.0,
            "saved_share": share, "saved_s": share * (latency_s or 0.0)}
