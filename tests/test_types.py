"""The type checker is part of the tests: mypy on harness/core, harness/count, harness/pipeline, harness/memory and history check.

Configured in pyproject.toml ([tool.mypy]: Python 3.10, bodies of unannotated functions checked,
errors reported in these packages only; its cache is .mypy_cache, so a rerun takes a second or two).
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["harness/core", "harness/count", "harness/pipeline", "harness/memory", "harness/tracking/check.py",
            "harness/commands/history_check.py"]


def test_mypy_is_clean():
    pytest.importorskip("mypy", reason="mypy is not installed (it comes with the test extra: pip install -e '.[test]')")
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), *PACKAGES],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"mypy {' '.join(PACKAGES)} exited {r.returncode}:\n{r.stdout}{r.stderr}"
