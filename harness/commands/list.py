"""``python -m harness list``: built-in scenarios with a one-line description each."""
from __future__ import annotations

import argparse
import json

from ..pipeline import scenario


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list the built-in scenarios")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    rows = []
    for name, path in scenario.builtin_paths().items():
        try:
            sc = scenario.load(path)
            rows.append({"name": sc.name, "description": sc.description, "path": str(path)})
        except Exception as exc:  # one broken file must not hide the others
            rows.append({"name": name, "description": f"(cannot load: {exc})", "path": str(path)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['description']}")
    print("\nrun one: python -m harness run NAME   (or a file of your own: python -m harness run path/to/my_scenario.py)")
    return 0
