"""Symmetric InfoNCE with a learnable temperature, as CLIP trains it.

The arithmetic, and the gathering of negatives across ranks, is open_clip's ``ClipLoss``; this
module owns the temperature: a learnable log logit scale, initialised at 1/0.07 and clamped at
100 (ln 100) after every optimiser step, as CLIP does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from geobind.encoders.openclip import clip_loss

__all__ = ["ContrastiveLoss", "MAX_LOGIT_SCALE"]

MAX_LOGIT_SCALE = math.log(100.0)


class ContrastiveLoss(nn.Module):
    """``loss(student, teacher)`` for unit embeddings ``[batch, dim]`` paired row by row.

    :param temperature: the initial temperature (CLIP: 0.07).
    :param learnable: whether the temperature trains.
    :param rank, world_size: this process's place when trained with torch.distributed;
        negatives are gathered from every rank (``local_loss=True, gather_with_grad=True``,
        the setting that gives the full-batch gradient when one side is frozen).
    """

    def __init__(
        self, temperature: float = 0.07, learnable: bool = True, rank: int = 0, world_size: int = 1
    ) -> None:
        super().__init__()
        scale = torch.tensor(math.log(1.0 / temperature))
        self.logit_scale = nn.Parameter(scale, requires_grad=learnable)
        self.clip_loss = clip_loss(rank, world_size)

    @property
    def temperature(self) -> float:
        """The current temperature, 1 / exp(logit scale)."""
        return float(torch.exp(-self.logit_scale.detach()))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return self.clip_loss(student, teacher, self.logit_scale.exp())

    @torch.no_grad()
    def clamp(self) -> None:
        """Keep the logit scale within [0, ln 100], as CLIP does after each step."""
        self.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
