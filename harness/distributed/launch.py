"""``--nproc-per-node N``: start N ranks on this machine through torch's elastic agent.

The agent is the code behind ``torchrun`` (``torch.distributed.launcher.api.elastic_launch``):
a c10d rendezvous on a free local port (torchrun's ``--standalone``), ``max_restarts=0``, every
worker ``python -m harness.distributed.worker SPEC``. When a worker fails the agent stops the
others (SIGTERM, then SIGKILL after ``shutdown_timeout``) and raises ``ChildFailedError``; the
failure reported is the rank that raised first (its own error, not a collective that failed
because of it), read from the error file each worker records (:func:`.job.record_error`).
"""
from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path

from ..core import fsio
from ..errors import HarnessError
from .job import JobSpec

SHUTDOWN_TIMEOUT_S = 10


def launch(spec: JobSpec, nproc_per_node: int) -> dict:
    """Run the job with ``nproc_per_node`` local ranks; returns the job's summary (rank 0's)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc_per_node < 1:
        raise HarnessError(f"--nproc-per-node must be at least 1, got {nproc_per_node}")
    spec.run_id = spec.run_id or fsio.new_run_id()
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc_per_node, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                          rdzv_configs={"timeout": int(spec.rank_timeout_s)}, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    quiet = logging.getLogger("torch.distributed.elastic")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the agent's failure tables: the one line below says it
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "harness.distributed.worker", spec.to_json())
    except ChildFailedError as exc:
        _remove_staging(spec)
        raise HarnessError(root_cause(exc.failures, nproc_per_node)) from None
    finally:
        quiet.setLevel(level)
    return _read_summary(spec)


def root_cause(failures: dict, world_size: int) -> str:
    """One line for the failed job: the earliest own error of a rank, else the earliest failure."""
    def key(item):
        rank, f = item
        extra = (f.error_file_data or {}).get("harness") or {}
        return (bool(extra.get("peer", True)), float(extra.get("time", f.timestamp)), rank)

    rank, f = min(failures.items(), key=key)
    if (f.error_file_data or {}).get("harness"):
        return f.message
    return f"rank {rank} of {world_size} failed: exit code {f.exitcode} ({f.message})"


def _job_dir(spec: JobSpec) -> Path:
    from ..pipeline import scenario as scenario_mod

    return Path(spec.logdir) / scenario_mod.load(spec.scenario, spec.run.model_options()).name


def _remove_staging(spec: JobSpec) -> None:
    """A rank 0 stopped while writing leaves its hidden ``.tmp-<run_id>``: remove it now."""
    import shutil

    shutil.rmtree(_job_dir(spec) / f"{fsio.TMP_PREFIX}{spec.run_id}", ignore_errors=True)


def _read_summary(spec: JobSpec) -> dict:
    from ..core import record

    path = _job_dir(spec) / spec.run_id / "summary.json"
    if not path.exists():
        raise HarnessError(f"the ranks finished but {path} is missing; see the ranks' output above")
    return dict(record.load(path))
