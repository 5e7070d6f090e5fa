"""This process's place in a torchrun job (or a job of one), and rank-0-only helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

__all__ = ["Dist"]


@dataclass(frozen=True)
class Dist:
    """Rank and world size; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files (only rank 0 does)."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        """Join the process group torchrun describes (gloo on the CPU, NCCL on GPUs)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(rank=torch_dist.get_rank(), world_size=torch_dist.get_world_size())

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.world_size > 1:
            torch_dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of a number over ranks."""
        if self.world_size == 1:
            return value
        # NCCL reduces only tensors on this rank's GPU
        device = "cuda" if torch_dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor([value], dtype=torch.float64, device=device)
        torch_dist.all_reduce(t)
        return float(t) / self.world_size
