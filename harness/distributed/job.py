"""One rank of a multi-rank job, and rank 0's commit of the job's run directory.

Every rank loads the scenario, pins its device (``cuda:LOCAL_RANK``) or its share of the
CPUs, applies the scenario's ``wrap(model, process_group)`` when it has one, and runs every
stage of :func:`harness.pipeline.run.execute` on its own replica (ranks meet at a barrier
before the timed and the profiled iterations, so they run them at the same time). Nothing is
written until rank 0 has gathered every rank's figures (``gather_object``); only then does
rank 0 build ``LOGDIR/<scenario>/<run_id>/`` under a hidden name, rename it into place and
add one history row. A rank that raises records its one-line error for the launcher
(torch elastic's error file) and exits; the others fail in their next collective (or are
stopped by the agent), so the job never leaves a half-written directory.
"""
from __future__ import annotations

import gzip
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..core import fsio
from ..core.text import short_exc
from ..errors import HarnessError
from ..pipeline.spec import RunSpec
from . import ranks
from .comm import Group, PeerFailed

BARRIER_STAGES = ("latency", "profile")  # ranks start these stages together


@dataclass
class JobSpec:
    """What every rank runs: the run spec (every option of ``run``, model and workload options
    included) plus the job's own fields, as JSON for the workers."""

    run: RunSpec
    backend: str | None = None
    rank_timeout_s: float = 300.0
    run_id: str | None = None  # chosen by the launcher; under plain torchrun rank 0 chooses

    @property
    def scenario(self) -> str:
        return self.run.target

    @property
    def logdir(self) -> str:
        return self.run.logdir or "logs"

    def to_json(self) -> str:
        return json.dumps({"run": self.run.to_dict(), "backend": self.backend, "rank_timeout_s": self.rank_timeout_s,
                           "run_id": self.run_id})

    @classmethod
    def from_json(cls, text: str) -> "JobSpec":
        data = json.loads(text)
        return cls(run=RunSpec.from_dict(data.pop("run")), **data)


@dataclass
class RankRun:
    """The hook :func:`harness.pipeline.run.execute` takes as ``rank=``."""

    run_id: str
    started: datetime
    worker: str
    trace_path: Path


def _terminate_as_exit(signum, frame):  # the agent stops the other ranks with SIGTERM
    raise SystemExit(128 + signum)


def run_rank(spec: JobSpec) -> dict | None:
    """Run this process's rank; returns the job's summary on rank 0, None on the others.

    Raises HarnessError (exit 2) naming the rank when this rank fails.
    """
    env = ranks.from_env()
    signal.signal(signal.SIGTERM, _terminate_as_exit)
    try:
        device = ranks.rank_device(spec.run.device, env)
        backend = ranks.backend_for(device, spec.backend)
        group = Group(backend, spec.rank_timeout_s)
    except BaseException as exc:
        raise _failed(env, exc) from exc
    try:
        with tempfile.TemporaryDirectory(prefix=f"harness-{env.worker}-") as tmp:
            started, run_id = group.broadcast(_job_id(spec), "the run id")
            payload = _replica(spec, env, group, device, RankRun(run_id, started, env.worker, Path(tmp) / "trace"))
            payloads = group.gather(payload, "every rank's figures")
            if env.rank == 0:
                from .commit import commit_job

                return commit_job(spec, payloads, backend)
            return None
    except BaseException as exc:
        raise _failed(env, exc) from exc
    finally:
        group.close()


def _job_id(spec: JobSpec) -> tuple[datetime, str]:
    started = datetime.now(timezone.utc)
    return started, spec.run_id or fsio.new_run_id(started)


def _replica(spec: JobSpec, env: ranks.RankEnv, group: Group, device: str, hook: RankRun) -> dict:
    """Run every stage on this rank's replica; returns what rank 0 needs to write the job."""
    from ..pipeline.run import build, execute
    from .commtime import comm_figures
    from .wrap import wrap_model

    threads = spec.run.threads or ranks.default_threads(env.local_world_size)
    rank_spec = spec.run.replace(device=device, threads=threads, logdir=None)  # rank 0 writes the job's directory
    sc, wl, prep = build(rank_spec)
    prep.model = wrap_model(sc.module, prep.model, group.default, wl)
    cfg = rank_spec.profile

    def barrier(stage: str) -> None:
        if stage in BARRIER_STAGES:
            group.barrier(stage)

    run = execute(prep, rank_spec, scenario=sc.name, workload=wl, progress=barrier, rank=hook)
    data = hook.trace_path.read_bytes()
    comm = comm_figures(json.loads(gzip.decompress(data) if cfg.gzip else data), wl.label)
    run.counts = None  # the tables carry the counted work; the counter's objects stay here
    return {"rank": env.rank, "local_rank": env.local_rank, "host": env.host, "run": run, "comm": comm,
            "trace_name": run.summary["trace_files"][0], "trace": data}


def _failed(env: ranks.RankEnv, exc: BaseException) -> BaseException:
    """This rank's failure as one line; recorded for the launcher (torch elastic's error file)."""
    if isinstance(exc, KeyboardInterrupt):
        return exc
    if isinstance(exc, SystemExit):
        msg = f"rank {env.rank} ({env.host}) was stopped (exit {exc.code}): another rank failed"
        peer = True
    else:
        if isinstance(exc, (HarnessError, PeerFailed)):
            what = str(exc)
        else:
            what = short_exc(exc)
        msg = f"rank {env.rank} of {env.world_size} ({env.host}) failed: {' '.join(str(what).split())}"
        peer = isinstance(exc, PeerFailed)
    record_error(msg, peer)
    return HarnessError(msg)


def record_error(message: str, peer: bool) -> None:
    """Write torch elastic's per-worker error file (``TORCHELASTIC_ERROR_FILE``), which the
    agent reads into ``ProcessFailure.message``; ``harness`` adds the exact time and whether
    the error was a peer's (a failed collective) rather than this rank's own."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    now = time.time()
    data = {"message": message, "timestamp": int(now), "harness": {"time": now, "peer": peer}}
    try:
        fsio.atomic_write_json(path, data)
    except OSError as exc:
        print(f"warning: could not record the error for the launcher: {exc}", file=sys.stderr)
