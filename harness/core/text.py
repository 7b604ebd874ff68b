"""Small text helpers shared by every stage: one-line exception text and UTC timestamps."""
from __future__ import annotations

from datetime import datetime, timezone


def first_line(exc: BaseException) -> str:
    """The first non-empty line of ``str(exc)`` ('' when there is none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def short_exc(exc: BaseException, limit: int = 300) -> str:
    """``TypeName: first line`` (just the type name when the message is empty), cut at ``limit``."""
    msg = first_line(exc)
    out = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return out[:limit]


def utc_iso(when: datetime | None = None) -> str:
    """ISO 8601 UTC with microseconds and a ``Z``: ``2026-12-02T20:27:54.123456Z``."""
    when = when or datetime.now(timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def table(head: list[str], rows: list[list[str]], right: "set[int] | str" = "") -> list[str]:
    """Aligned text columns: the header, a rule of dashes under it, then the rows; two spaces between
    columns, trailing spaces stripped. ``right``: the indices of right-aligned columns (numbers), or a
    string of ``l``/``r`` per column."""
    if isinstance(right, str):
        right = {i for i, a in enumerate(right) if a == "r"}
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
