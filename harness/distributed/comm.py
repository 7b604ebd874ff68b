"""The job's process group and the few collectives the harness itself makes.

``init_process_group(timeout=--rank-timeout-s)`` bounds every collective: a rank that dies
or hangs makes the others fail within the timeout instead of waiting forever. Object
collectives (the run id, every rank's figures) go through a gloo group, on nccl jobs too, so
they never occupy a GPU. A failure inside one of these collectives is a :class:`PeerFailed`:
another rank's doing, reported after the rank that actually raised.
"""
from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any, Iterator

import torch.distributed as dist


class PeerFailed(RuntimeError):
    """A collective failed: a peer died, raised or timed out (not this rank's own error)."""


@contextlib.contextmanager
def collective(what: str) -> Iterator[None]:
    try:
        yield
    except (RuntimeError, dist.DistError) as exc:
        from ..core.text import first_line

        raise PeerFailed(f"{what} failed (another rank stopped or timed out): {first_line(exc)[:200]}") from exc


class Group:
    """The default process group and a gloo group for object collectives."""

    def __init__(self, backend: str, timeout_s: float):
        timeout = timedelta(seconds=timeout_s)
        with collective("init_process_group"):
            dist.init_process_group(backend=backend, timeout=timeout)
        self.backend = backend
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.control = None if backend == "gloo" else dist.new_group(backend="gloo", timeout=timeout)

    @property
    def default(self):
        return dist.group.WORLD

    def barrier(self, what: str) -> None:
        with collective(f"barrier before {what}"):
            dist.barrier(group=self.control)

    def broadcast(self, obj: Any, what: str) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj if self.rank == 0 else None]
        with collective(f"broadcast of {what}"):
            dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def gather(self, obj: Any, what: str) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (in rank order); None elsewhere."""
        out = [None] * self.world_size if self.rank == 0 else None
        with collective(f"gather of {what}"):
            dist.gather_object(obj, out, dst=0, group=self.control)
        return out

    def close(self) -> None:
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
