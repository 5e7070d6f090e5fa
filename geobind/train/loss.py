"""Symmetric InfoNCE with a learnable temperature, as CLIP trains it.

The arithmetic, and the gathering of negatives across ranks, is open_clip's ``ClipLoss``; this
module owns the temperature: a learnable log logit scale, initialised at 1/0.07 and clamped at
100 (ln 100) after every optimiser step, as CLIP does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from geobind.encoders.openclip import clip_loss

__all__ = ["ContrastiveLoss", "MAX_LOGIT_SCALE"]

MAX_LOGIT_SCALE = math.log(100.0)


class ContrastiveLoss(nn.Module):
    """``loss(student, teacher)`` for unit embeddings ``[batch, dim]`` paired row by row.

    :param temperature: the initial temperature (CLIP: 0.07).
    :param learnable: whether the temperature trains.
    :param distill: weight of ``1 - cos(student, teacher)`` row by row, added to the loss
        (feature distillation onto a frozen teacher; 0: none).
    :param rank, world_size: this process's place when trained with torch.distributed;
        negatives are gathered from every rank (``local_loss=True, gather_with_grad=True``,
        the setting that gives the full-batch gradient when one side is frozen).
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learnable: bool = True,
        rank: int = 0,
        world_size: int = 1,
        distill: float = 0.0,
    ) -> None:
        super().__init__()
        self.distill = distill
        scale = torch.tensor(math.log(1.0 / temperature))
        self.logit_scale = nn.Parameter(scale, requires_grad=learnable)
        self.rank, self.world_size = rank, world_size
        self.clip_loss = clip_loss(rank, world_size)

    @property
    def temperature(self) -> float:
        """The current temperature, 1 / exp(logit scale)."""
        return float(torch.exp(-self.logit_scale.detach()))

    def forward(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor,
        bank: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss of a batch of paired rows.

        With a ``bank`` (``[N, dim]``: every training row's frozen teacher embedding) each
        student ranks its own teacher, ``bank[targets]``, against the whole bank rather than
        against the batch alone; each teacher still ranks its student among the batch's (all
        ranks') students.
        """
        contrastive = self._contrastive(student, teacher, bank, targets)
        if not self.distill:
            return contrastive
        # unit rows: 1 - cos is half the squared distance; the mean over this rank's rows
        # averages to the full batch's under DDP, as the contrastive term does
        return contrastive + self.distill * (1 - (student * teacher).sum(-1)).mean()

    def _contrastive(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor,
        bank: torch.Tensor | None,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        scale = self.logit_scale.exp()
        if bank is None:
            return self.clip_loss(student, teacher, scale)
        students = student
        if self.world_size > 1:  # autograd-aware gather: gradients reach every rank's students
            from torch.distributed.nn import all_gather

            students = torch.cat(all_gather(student))
        if targets is None:
            raise ValueError("a bank of negatives needs the targets: each row's place in it")
        labels = torch.arange(len(student), device=student.device) + self.rank * len(student)
        to_bank = F.cross_entropy(scale * student @ bank.T, targets)
        to_students = F.cross_entropy(scale * teacher @ students.T, labels)
        return (to_bank + to_students) / 2

    @torch.no_grad()
    def clamp(self) -> None:
        """Keep the logit scale within [0, ln 100], as CLIP does after each step."""
        self.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
