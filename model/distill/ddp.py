"""DistributedDataParallel plumbing: one process per replica, gloo on CPU, nccl on GPU.

``torchrun --standalone --nproc_per_node=2 -m model.cli train ...`` sets RANK / WORLD_SIZE /
MASTER_ADDR; tests pass an explicit ``file://`` init method instead. Only rank 0 logs and saves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job. ``world_size == 1`` means no DDP."""

    rank: int = 0
    world_size: int = 1
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(
    init_method: str | None = None, rank: int | None = None, world_size: int | None = None
) -> DistEnv:
    """Join the process group when launched by torchrun (env vars) or with explicit arguments.

    Returns ``DistEnv()`` (single process) when neither applies.
    """
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv()
    if rank is None:
        rank = int(os.environ.get("RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend, init_method=init_method or "env://", rank=rank, world_size=world_size
        )
    return DistEnv(rank=rank, world_size=world_size, backend=backend)


def cleanup(env: DistEnv) -> None:
    """Leave the process group (no-op for a single process)."""
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def wrap(module: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    """DDP-wrap ``module`` (broadcasts rank 0's weights at construction); identity otherwise."""
    if not env.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DDP wrapper."""
    return getattr(module, "module", module)


def all_reduce_mean(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Average scalar logs over replicas (so rank 0's log describes the global batch)."""
    if not env.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= env.world_size
    return dict(zip(keys, t.tolist(), strict=True))
