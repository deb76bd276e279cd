"""Process-group set-up and the few collectives training needs; every helper is a no-op on one process.

`init_distributed` joins the group the launcher (deepspeed, torchrun) describes in the environment, or
under plain `python` creates a one-process group, so the same code runs with and without a launcher.
The collectives take and return tensors and do nothing when no group of two or more ranks exists, so
callers never branch on the world size. Nothing here imports the trainer: the harness can share it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """Where this process stands: its rank, the number of ranks, its rank on this node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def init_distributed(engine: str) -> DistInfo:
    """DeepSpeed: join (or, under plain python, create) the process group; torch: one process."""
    if engine == "torch":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("run.engine torch runs one process; use run.engine deepspeed for several")
        return DistInfo()
    import deepspeed

    # Plain `python main.py` has no launcher: run as a one-process group.
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    if not dist.is_initialized():
        deepspeed.init_distributed()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]))


def is_multi_rank() -> bool:
    """True inside a process group of two or more ranks."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """`values` summed over ranks, in place (any shape); unchanged on one process."""
    if is_multi_rank():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_rows(z: torch.Tensor) -> torch.Tensor:
    """(N, D) rows of every rank stacked in rank order: (world * N, D); every rank has the same N."""
    if not is_multi_rank():
        return z
    parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, z.contiguous())
    return torch.cat(parts)


def barrier() -> None:
    """Wait for every rank; nothing on one process."""
    if is_multi_rank():
        dist.barrier()


def destroy() -> None:
    """Tear down the process group if one is alive (a group alive at interpreter exit can abort a rank)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
