"""Beyond one process: multi-rank runs (torch.distributed) and sweeps on a cluster scheduler.

- :mod:`.ranks`: what torchrun tells a process (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ...),
  the device and threads each rank pins, the backend.
- :mod:`.comm`: the process group, the control group for object collectives, and failures
  tagged as "a collective failed" (a peer's fault) or "this rank raised" (the cause).
- :mod:`.job`: one rank of a job: run the scenario's workload on its replica, gather every
  rank's figures on rank 0, which writes the job's run directory and one history row.
- :mod:`.merge`: the merged summary (pure); :mod:`.commtime`: time in collectives from a trace.
- :mod:`.launch`: ``--nproc-per-node N`` launches the ranks through torch's elastic agent
  (the code behind ``torchrun``) and turns a failed rank into one line (exit 2).
- :mod:`.executors`: ``make_executor("local" | "submitit", ...)``: how a sweep runs its points.
- :mod:`.histories`: ``merge_histories(paths, out)`` for per-job history files.
"""
from __future__ import annotations

__all__ = ["Executor", "make_executor", "merge_histories"]


def __getattr__(name: str):
    """Lazy: ``harness run``'s parser imports this package, which must not import pandas or torch."""
    if name in ("Executor", "make_executor"):
        from . import executors

        return getattr(executors, name)
    if name == "merge_histories":
        from .histories import merge_histories

        return merge_histories
    raise AttributeError(name)
