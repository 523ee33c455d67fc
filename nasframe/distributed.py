"""Searching on several processes launched by ``torchrun`` (one per GPU, or CPU processes).

Every rank builds the same supernet and strategy from the same seed, so every rank samples the same
architectures. A batch of ``search.batch_size`` samples is cut into one equal shard per rank; the
gradients of the shards are averaged (one all-reduce over all existing gradients) and the losses and
counts of the iteration are all-reduced together with each rank's stop flag. Every rank then clips,
steps and updates the distribution identically; rank 0 alone prints, logs and writes files.

Without ``torchrun`` (or with one process) :class:`Group` is a single process and does nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import UserError

__all__ = ["Group", "join_group", "world_size"]


@dataclass
class Group:
    """This process's place among the run's processes (``world`` 1: a plain run)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    stopping: bool = False

    @property
    def main(self) -> bool:
        """Whether this process prints, logs and writes the run's files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part (under torchrun)."""
        return self.world > 1

    def check_batch(self, batch_size: int, where: str) -> None:
        """A batch must split into equal shards, one per process."""
        if batch_size % self.world:
            raise UserError(
                f"{where}: a batch of {batch_size} does not split evenly over the {self.world} "
                f"processes of torchrun; use a multiple of {self.world}"
            )

    def shard(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's equal share of each batch (along the first dimension)."""
        if not self.distributed:
            return tensors
        return tuple(t.chunk(self.world)[self.rank] for t in tensors)

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Replace every existing gradient by its mean over the ranks (one all-reduce).

        Every rank ran the same architectures, so the same parameters have gradients everywhere.
        """
        if not self.distributed:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        parts = flat.split([g.numel() for g in grads])
        torch._foreach_copy_(grads, [v.view_as(g) for v, g in zip(parts, grads, strict=True)])

    def reduce(self, host: torch.Tensor, means: int, stop: bool = False) -> torch.Tensor:
        """All-reduce an iteration's values: the first ``means`` are averaged over the ranks,
        the rest summed. Each rank's ``stop`` request travels along; :attr:`stopping` says
        afterwards whether any rank asked, so that all stop after the same iteration."""
        if not self.distributed:
            self.stopping = stop
            return host
        flags = torch.full((1,), float(stop), dtype=host.dtype, device=host.device)
        both = torch.cat([host, flags])
        dist.all_reduce(both)
        both[:means] /= self.world
        self.stopping = bool(both[-1] > 0)
        return both[:-1]

    def same_everywhere(self, value: torch.Tensor, what: str) -> None:
        """Fail loudly if ranks that should be in lock-step hold different values."""
        if not self.distributed:
            return
        lo, hi = value.detach().double().clone(), value.detach().double().clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        if not torch.equal(lo, hi):
            raise RuntimeError(f"rank {self.rank}: {what} differs between the processes")

    def broadcast(self, obj: object) -> object:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def leave(self, finished: bool = False) -> None:
        """End this process's part in the group. A ``finished`` run first waits for every
        process to get there, so that no process tears its connections down while another
        still writes its results (a late one could abort on the closed connections)."""
        if self.distributed and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


def world_size() -> int:
    """How many processes torchrun started (``WORLD_SIZE``; 1 without torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def _env_int(name: str, default: int | None) -> int:
    text = os.environ.get(name)
    if text is None and default is not None:
        return default
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(
            f"environment: {name}={text!r} should be an integer (torchrun sets WORLD_SIZE, RANK "
            "and LOCAL_RANK; unset WORLD_SIZE to run one process)"
        ) from None


def join_group(device_spec: str) -> tuple[Group, str]:
    """The group ``torchrun`` started this process in (none: a single process), and the device
    spec this rank uses: ``cuda:LOCAL_RANK`` where the config asks for CUDA or ``auto`` finds it."""
    world = world_size()
    if world <= 1:
        return Group(), device_spec
    rank, local = _env_int("RANK", None), _env_int("LOCAL_RANK", 0)
    cuda = torch.cuda.is_available() and (device_spec == "auto" or device_spec.startswith("cuda"))
    if device_spec.startswith("cuda:"):
        raise UserError(
            f"device: '{device_spec}' names one GPU, but torchrun started {world} processes; "
            "use device: cuda (each process takes the GPU of its LOCAL_RANK)"
        )
    if cuda:
        device_spec = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Group(rank=rank, world=world, local_rank=local), device_spec
