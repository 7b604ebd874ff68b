"""``python -m harness list [torchvision | timm [PATTERN] | hf [PATTERN]]``: what can be named.

Without a source: the built-in scenarios, each with its one-line description, read from
the file's ``description = "..."`` constant (else its module docstring) with ``ast``, so
nothing is imported (no torch: the listing is instant). With a source: the model names
that ``SOURCE:NAME`` accepts, optionally filtered by a glob.
"""
from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

from ..errors import HarnessError

HF_EXPLAINED = """\
hf:ID_OR_PATH builds a transformers model from its config alone (random weights; nothing is downloaded):
  hf:./my-config-dir    a local directory holding config.json
  hf:ORG/NAME           a model whose files are already in the local Hugging Face cache (used offline)
  hf:MODEL_TYPE         a transformers architecture with its default config, e.g. hf:llama, hf:bert
  --model-kwargs JSON   config overrides, e.g. '{"num_hidden_layers": 2, "hidden_size": 256}'
Below: the cached models, then the model types."""


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list the built-in scenarios, or the models of a source (torchvision, timm, hf)")
    p.add_argument("source", nargs="?", default=None, metavar="SOURCE",
                   help="torchvision, timm or hf: list the names SOURCE:NAME accepts (default: the built-in scenarios)")
    p.add_argument("pattern", nargs="?", default=None, metavar="PATTERN", help="a glob to filter names, e.g. 'convnext*'")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=main)


def describe(path: Path) -> dict:
    """``name`` and ``description`` of a scenario file, read with ``ast`` (nothing is executed)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    consts = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    consts[target.id] = node.value.value
    doc = (ast.get_docstring(tree) or "").strip().splitlines()
    return {"name": consts.get("name", path.stem), "description": consts.get("description", doc[0] if doc else ""),
            "path": str(path)}


def builtin_rows() -> list[dict]:
    from ..pipeline.scenario import builtin_paths

    rows = []
    for name, path in builtin_paths().items():
        try:
            rows.append(describe(path))
        except (OSError, SyntaxError, UnicodeDecodeError) as exc:  # one broken file must not hide the others
            rows.append({"name": name, "description": f"(cannot read: {type(exc).__name__}: {exc})", "path": str(path)})
    return rows


def main(args: argparse.Namespace) -> int:
    if args.source is None:
        rows = builtin_rows()
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        width = max((len(r["name"]) for r in rows), default=0)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['description']}")
        print("\nrun one: python -m harness run NAME   (or a file of your own: python -m harness run path/to/my_scenario.py)")
        print("any model by name: python -m harness run torchvision:NAME | timm:NAME | hf:ID_OR_PATH"
              "   (python -m harness list torchvision | timm [PATTERN] | hf)")
        return 0
    return list_source(args.source, args.pattern, as_json=args.json)


def list_source(source: str, pattern: str | None, as_json: bool = False) -> int:
    from .. import models

    names = models.list_models(source, pattern)
    if not names and pattern:
        raise HarnessError(f"no {source} model matches {pattern!r}; try a wider glob such as '*{pattern.strip('*')}*'")
    if as_json:
        print(json.dumps(names, indent=2))
        return 0
    if source == "hf":
        print(HF_EXPLAINED)
    for n in names:
        print(f"{source}:{n}")
    print(f"\n{len(names)} names; run one: python -m harness run {source}:{names[0] if names else 'NAME'}", end="")
    print("   (random weights; nothing is downloaded)")
    return 0
