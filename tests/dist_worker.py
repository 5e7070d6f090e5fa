"""One rank of the two-process gradient check in test_train.py (run under torchrun).

Each rank takes its half of a saved global batch, computes the stage loss through DDP with
negatives gathered across ranks (and, if the batch holds one, a bank of frozen teacher
embeddings), and saves the mean loss and its gradients.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import geobind
from geobind.testing import TINY_VISION
from geobind.train.distributed import Dist
from geobind.train.loss import ContrastiveLoss
from geobind.train.stage import StageModel


def stage_model(dist: Dist | None = None) -> StageModel:
    """The same student, initialised the same way on every rank, with a frozen teacher."""
    dist = dist or Dist()
    torch.manual_seed(0)
    student = geobind.build_encoder("satellite", TINY_VISION)
    return StageModel(student, None, ContrastiveLoss(rank=dist.rank, world_size=dist.world_size))


def main(folder: Path) -> None:
    dist = Dist.from_env()
    batch = torch.load(folder / "batch.pt", weights_only=True)
    model = stage_model(dist)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    half = len(batch["pixels"]) // dist.world_size
    local = slice(dist.rank * half, (dist.rank + 1) * half)
    bank = batch.get("bank")  # negatives: bank, when the test saved one
    targets = batch["targets"][local] if bank is not None else None
    loss = ddp({"satellite": batch["pixels"][local]}, batch["teacher"][local], bank, targets)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    torch.save(
        {"loss": torch.tensor(dist.mean(float(loss))), "grads": grads}, folder / f"out.{dist.rank}"
    )
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
