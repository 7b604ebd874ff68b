"""What torchrun (or Slurm's launcher through torchrun) tells a process, and what a rank pins.

torch's elastic agent sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` for every worker it starts (``torch.distributed.run``);
``init_process_group("env://")`` reads them. A process is a rank when ``RANK`` and
``WORLD_SIZE`` are both set.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from ..errors import HarnessError

BACKENDS = ("gloo", "nccl")


@dataclass(frozen=True)
class RankEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    host: str

    @property
    def worker(self) -> str:
        """The trace's worker name: the profiler plugin lists one worker per rank."""
        return f"rank{self.rank}"


def is_rank_process(environ=None) -> bool:
    environ = os.environ if environ is None else environ
    return "RANK" in environ and "WORLD_SIZE" in environ


def _int(environ, name: str, default: int | None = None) -> int:
    value = environ.get(name)
    if value is None and default is not None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise HarnessError(f"environment variable {name}={value!r} is not a whole number; "
                           "launch with torchrun (or python -m harness run ... --nproc-per-node N)") from None


def from_env(environ=None) -> RankEnv:
    """This process's place in the job, from the variables torchrun sets."""
    environ = os.environ if environ is None else environ
    world = _int(environ, "WORLD_SIZE")
    rank = _int(environ, "RANK")
    local_world = _int(environ, "LOCAL_WORLD_SIZE", world)
    local = _int(environ, "LOCAL_RANK", rank % max(local_world, 1))
    if not 0 <= rank < world:
        raise HarnessError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return RankEnv(rank, world, local, local_world, environ.get("MASTER_ADDR", "localhost"), socket.gethostname())


def default_threads(local_world_size: int) -> int:
    """The CPUs this process may use, divided by the ranks on this node (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(local_world_size, 1))


def rank_device(device: str | None, env: RankEnv) -> str:
    """``cuda`` (or ``auto`` with a GPU) pins ``cuda:LOCAL_RANK``; cpu stays cpu."""
    import torch

    text = str(device or "cpu").strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda"):
        if text != "cuda":
            raise HarnessError(f"--device {text} with several ranks: give --device cuda; "
                               "each rank uses cuda:LOCAL_RANK")
        if not torch.cuda.is_available():
            raise HarnessError("--device cuda was asked for but no CUDA GPU is available here; use --device cpu")
        if env.local_rank >= torch.cuda.device_count():
            raise HarnessError(f"rank {env.rank} needs cuda:{env.local_rank} but this node has "
                               f"{torch.cuda.device_count()} GPU(s); lower --nproc-per-node")
        torch.cuda.set_device(env.local_rank)
        return f"cuda:{env.local_rank}"
    return text


def backend_for(device: str, backend: str | None) -> str:
    """gloo on CPU, nccl on CUDA, unless ``--backend`` says otherwise."""
    if backend is not None:
        name = backend.strip().lower()
        if name not in BACKENDS:
            raise HarnessError(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}")
        if name == "nccl" and not device.startswith("cuda"):
            raise HarnessError("--backend nccl needs --device cuda; use --backend gloo on CPU")
        return name
    return "nccl" if device.startswith("cuda") else "gloo"
