"""``python -m harness.distributed.worker SPEC_JSON``: one rank started by :mod:`.launch`.

Exit 0 when the rank finished, 2 with one line on stderr when it failed (the launcher reads
the rank's recorded error, see :func:`harness.distributed.job.record_error`).
"""
from __future__ import annotations

import sys

from ..errors import HarnessError
from .job import JobSpec, run_rank


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m harness.distributed.worker SPEC_JSON (started by --nproc-per-node)", file=sys.stderr)
        return 2
    try:
        run_rank(JobSpec.from_json(argv[0]))
    except HarnessError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
