"""Process-group set-up and the collectives of evaluation and training; every collective is a no-op on one process.

Two ways in: `init_evaluation` (the harness) joins the group that `torchrun` / `accelerate launch`
describe in the environment only when WORLD_SIZE > 1; `init_distributed` (the trainer) joins the
DeepSpeed launcher's group, or under plain `python` creates a one-process group, so the same code runs
with and without a launcher. The collectives take and return tensors or picklable objects and do
nothing when no group of two or more ranks exists, so callers never branch on the world size. Nothing
here imports the trainer (`dllm_jepa_train` imports this module, never the reverse).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """Where this process stands: its rank, the number of ranks, its rank on this node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def init_evaluation(device: torch.device) -> tuple[DistInfo, torch.device]:
    """(where this process stands, the device it evaluates on); joins the group only when WORLD_SIZE > 1.

    Under data parallel on CUDA each rank takes cuda:LOCAL_RANK (NCCL), on the CPU it uses gloo.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank), device


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
    """(N, ...) rows of every rank stacked in rank order: (world * N, ...); every rank has the same N."""
    if not is_multi_rank():
        return z
    parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, z.contiguous())
    return torch.cat(parts)


def gather_object(obj: Any, dst: int = 0) -> list[Any] | None:
    """Every rank's `obj` as a list on rank `dst`, None on the others; `[obj]` on one process."""
    if not is_multi_rank():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj` as a list in rank order, on every rank; `[obj]` on one process."""
    if not is_multi_rank():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank; nothing on one process."""
    if is_multi_rank():
        dist.barrier()


def destroy() -> None:
    """Tear down the process group if one is alive (a group alive at interpreter exit can abort a rank)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
