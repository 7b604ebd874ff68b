"""The worker protocol of ``ab --isolate``: one process tree per side, one JSON line per message.

A *zygote* (``python -m harness.tracking.ab --worker JSON`` in the side's own Python; the JSON is
``{"side": {"run": <the side's RunSpec dict>, "label": ..., "python": ...}}``) imports torch,
harness and the scenario file once, then forks a fresh *child* per generation; the child builds
the side as ``run`` does (after a random-size allocation, so memory layout differs between
generations), sets its workload up, warms up and serves blocks. Forking instead of starting a process per generation
costs milliseconds instead of seconds (importing torch), so generations can be short and many.

Messages, parent -> zygote/child (stdin) and back (stdout):

* zygote start -> ``{"loaded": true, "python": ...}``
* ``{"fork": true, "counts": bool, "seed": int, "cpus": [..] | null}`` -> the child's
  ``{"ready": true, "iter_s": ..., "pid": ..., <the side's description>}``
* ``{"block": k, "discard": d}`` -> ``{"samples": [seconds, ...], "cpu_share": x, "phases": rows | null}``
  (``rows``: ``[iteration, phase, index, seconds]`` per phase occurrence, for a workload of several phases)
* ``{"exit": true}`` -> the zygote's ``{"child_exit": status}``; ``{"quit": true}`` ends the zygote
* any failure -> ``{"error": "one line"}`` (the parent raises it as a HarnessError)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ...core.text import short_exc
from ...errors import HarnessError
from .inprocess import BlockTiming, Prepared
from .sides import SideSpec

ROOT = Path(__file__).resolve().parents[3]


class Worker:
    """The parent's handle on one side's zygote (see the module doc)."""

    def __init__(self, spec: SideSpec):
        import tempfile

        py = spec.python or sys.executable
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        payload = json.dumps({"side": spec.to_json()})
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: chatty workers never block
        try:
            self.proc = subprocess.Popen([py, "-m", "harness.tracking.ab", "--worker", payload], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env,
                                         bufsize=1)
        except OSError as exc:
            raise HarnessError(f"cannot start {py} for {spec.scenario}: {exc.strerror or exc}") from None
        self.spec = spec
        self.info: dict = {}

    def _send(self, obj: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._read()  # reports why the worker is gone
            raise

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.stderr.seek(0)
            last = [ln for ln in self.stderr.read().strip().splitlines() if ln.strip()]
            raise HarnessError(f"the worker for {self.spec.scenario} ({self.spec.python or sys.executable}) exited: "
                               f"{last[-1][:300] if last else 'no message'}")
        msg = json.loads(line)
        if "error" in msg:
            raise HarnessError(msg["error"])
        return msg

    def loaded(self) -> dict:
        """Wait until the zygote has imported everything."""
        return self._read()

    def spawn(self, with_counts: bool, seed: int, cpus: list[int] | None = None) -> None:
        self._send({"fork": True, "counts": with_counts, "seed": seed, "cpus": cpus})

    def ready(self) -> dict:
        self.info = self._read()
        return self.info

    def block(self, k: int, discard: int) -> BlockTiming:
        self._send({"block": k, "discard": discard})
        reply = self._read()
        return BlockTiming(reply["samples"], reply.get("cpu_share"), reply.get("phases"))

    def end_child(self) -> None:
        self._send({"exit": True})
        self._read()  # the zygote's {"child_exit": status}

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.stderr):
            try:
                f.close()
            except OSError:
                pass


# --------------------------------------------------------------------------- the worker's side

def _reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _child(spec: SideSpec, with_counts: bool, seed: int, cpus: list[int] | None = None) -> int:
    """A forked generation: build, warm up, serve blocks until told to exit (then the workload's teardown)."""
    import random

    import torch

    if cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, set(cpus))  # the same cores as the other side's child
        except OSError:
            pass
    rng = random.Random(seed * 7919 + os.getpid())
    pad = torch.empty(rng.randrange(1, 16384), dtype=torch.uint8)  # shifts the layout of what follows  # noqa: F841
    with Prepared(spec, with_counts=with_counts) as side:
        iter_s = side.warmup()
        _reply({"ready": True, "iter_s": iter_s, "pid": os.getpid(), **side.describe()})
        while True:
            line = sys.stdin.readline()
            if not line:
                return 0
            cmd = json.loads(line)
            if cmd.get("exit") or cmd.get("quit"):
                return 0
            b = side.block(int(cmd["block"]), int(cmd.get("discard", 0)))
            _reply({"samples": b.samples, "cpu_share": b.cpu_share, "phases": b.phases})


def _fork_child(spec: SideSpec, cmd: dict) -> int:
    """Fork one generation; in the parent wait for it and return its exit status."""
    pid = os.fork()
    if pid == 0:  # the child
        code = 2
        try:
            code = _child(spec, bool(cmd.get("counts")), int(cmd.get("seed", 0)), cmd.get("cpus"))
        except HarnessError as exc:
            _reply({"error": exc.message})
        except BaseException as exc:  # noqa: BLE001 - reported as one line
            _reply({"error": f"worker failed: {short_exc(exc, 200)}"})
        finally:
            sys.stdout.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _preimport(spec: SideSpec, sc) -> None:
    """Import once, in the zygote, what the workload's setup would import lazily in every forked
    generation: a training step's optimizer imports torch._dynamo (~3 s per generation on the 2-vCPU host)."""
    from ...pipeline import workloads

    cls = workloads.cls_for(spec.spec.workload or sc.workload)
    if cls is not None and cls.computes_gradients:
        import torch._dynamo  # noqa: F401


def worker_main(payload: str) -> int:
    """The zygote of an isolated side (see the module doc)."""
    try:
        spec = SideSpec.from_json(json.loads(payload)["side"])
        import torch  # noqa: F401 - imported once, before forking

        from ...pipeline import prepare, run, scenario  # noqa: F401

        _preimport(spec, spec.load())  # fail early (and import the file once) in the zygote
        if not hasattr(os, "fork"):
            raise HarnessError("--isolate needs os.fork (Linux or macOS)")
        _reply({"loaded": True, "python": sys.executable})
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd.get("quit"):
                return 0
            if not cmd.get("fork"):
                continue
            code = _fork_child(spec, cmd)
            if code != 0:
                return 2  # the child reported its error; the parent reads it
            _reply({"child_exit": code})
        return 0
    except HarnessError as exc:
        _reply({"error": exc.message})
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        _reply({"error": f"worker failed: {short_exc(exc, 200)}"})
        return 2


def main_worker(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--worker":
        return worker_main(argv[1])
    print("usage: python -m harness.tracking.ab --worker JSON (internal: a side of `harness ab --isolate`)", file=sys.stderr)
    return 2
