"""Rank 0 writes the job: ``LOGDIR/<scenario>/<run_id>/`` and one history row.

Layout: the merged ``summary.json`` (:mod:`.merge`), ``ranks.csv`` (one row per rank),
``rank<k>.<span>.pt.trace.json`` per rank (the profiler plugin lists worker ``rank<k>``; each
trace carries torch.profiler's ``distributedInfo``), ``rank<k>/`` with that rank's CSVs,
``env.json`` and its own ``summary.json``, ``hta/rank<k>.trace.json`` links for Holistic Trace
Analysis, and the usual report.html, pictures and TensorBoard summaries of rank 0's tables.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import fsio
from ..core.text import utc_iso
from . import merge

RANK_COLUMNS = ["rank", "local_rank", "host", "device", "device_name", "threads", "latency_p50_s", "latency_p90_s",
                "flops", "achieved_flop_per_s", "peak_flop_per_s", "utilization", "comm_time_s", "comm_share",
                "trace_file"]


def ranks_frame(rows: list[dict]) -> pd.DataFrame:
    flat = [{**{k: v for k, v in r.items() if k != "latency_s"},
             "latency_p50_s": r["latency_s"]["p50"], "latency_p90_s": r["latency_s"]["p90"]} for r in rows]
    return pd.DataFrame(flat, columns=RANK_COLUMNS)


def commit_job(spec, payloads: list[dict], backend: str) -> dict:
    """Write every rank's files and the merged summary, rename into place, add the history row."""
    from ..pipeline import write
    from ..pipeline.run import Run, run_index, check_logdir
    from ..tracking import history

    root = check_logdir(Path(spec.logdir))
    history.read(root)  # a corrupt history.csv is reported before anything is written
    runs = [p["run"] for p in payloads]
    job = merge.job_summary([r.summary for r in runs], [p["comm"] for p in payloads], [p["host"] for p in payloads],
                            [p["local_rank"] for p in payloads], backend=backend)
    scenario, run_id = job["scenario"], job["run_id"]
    fsio.clean_stale_tmp(root / scenario)
    rundir = fsio.RunDir(root / scenario, run_id)
    try:
        for p, run in zip(payloads, runs):
            _write_rank(rundir, p, run)
        job["path"] = str(rundir.final)
        fsio.atomic_write_csv(rundir.path / "ranks.csv", ranks_frame(job["ranks"]))
        first = runs[0]
        job_run = Run(summary=job, ops=first.ops, ops_by_shape=first.ops_by_shape, modules=first.modules,
                      samples=first.samples, env=first.env, peak=first.peak)
        write.extras(job_run, rundir, root, run_index(root, job["config_key"]))
        job["finished_at"] = utc_iso()
        fsio.atomic_write_json(rundir.path / "summary.json", job)
        fsio.fault_point("commit")
        final = rundir.commit()
        for k, name in enumerate(job["trace_files"]):  # rank<k>.<span>.pt.trace.json, in rank order
            write.link_for_hta(final, name, int(name.split(".", 1)[0].removeprefix("rank")))
        history.append(root, job)
        return job
    except BaseException:
        rundir.abort()
        raise


def _write_rank(rundir: fsio.RunDir, payload: dict, run) -> None:
    from ..pipeline import write

    k = payload["rank"]
    d = rundir.path / f"rank{k}"
    d.mkdir()
    run.summary["path"] = str(rundir.final / f"rank{k}")
    write.tables(run, d)
    fsio.atomic_write_json(d / "summary.json", run.summary)
    # the trace takes its plugin-visible name only when the job's directory is complete
    staged = rundir.defer(f".trace.rank{k}.staged", payload["trace_name"])
    fsio.atomic_write_bytes(staged, payload["trace"])
