"""``python -m harness.tracking.ab --worker JSON``: a side's zygote for ``harness ab --isolate``."""
import sys

from .worker import main_worker

sys.exit(main_worker(sys.argv[1:]))
