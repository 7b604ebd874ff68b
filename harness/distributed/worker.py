"""``python -m harness.distributed.worker SPEC_JSON``: one rank started by :mod:`.launch`.

Exit 0 when the rank finished, 2 when it failed. The worker prints no error itself: the
launcher prints the one line of the rank that caused the failure, read from the error file
each rank records (:func:`harness.distributed.job.record_error`).
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
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
