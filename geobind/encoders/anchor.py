"""The anchor: a satellite image encoder (an open_clip ViT) that every modality binds to.

It is registered as the built-in modality ``satellite``. Stage 1 initialises it from a CLIP
vision tower and aligns it to the CLIP embeddings of co-located ground photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from geobind.encoders.media import check_image
from geobind.modality import Modality
from geobind.encoders.vision import VisionConfig, build_vision_tower, vision_preprocess

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ANCHOR", "AnchorConfig", "anchor_modality", "build_anchor"]

#: The name of the anchor modality, and of the satellite-tile column in pair datasets.
ANCHOR = "satellite"


@dataclass
class AnchorConfig(VisionConfig):
    """The satellite encoder: an open_clip vision tower (see :class:`VisionConfig`)."""


def build_anchor(config: AnchorConfig, weights: Optional[Path] = None) -> "nn.Module":
    """The satellite tower, optionally from a local checkpoint.

    Besides the layouts :func:`geobind.encoders.vision.build_vision_tower` reads (an open_clip/OpenAI
    CLIP checkpoint, whose vision tower initialises the anchor, or a bare tower), a Sat2Cap
    Lightning checkpoint loads directly: its satellite encoder (``imo_encoder.*``, a Hugging
    Face CLIP vision model) is converted on the fly (see :mod:`geobind.encoders.convert`).
    """
    from geobind.encoders.convert import SAT2CAP_SATELLITE

    return build_vision_tower(config, weights, prefer=SAT2CAP_SATELLITE)


def anchor_modality() -> Modality:
    """The satellite anchor as a modality."""
    return Modality(
        name=ANCHOR,
        config=AnchorConfig,
        build_encoder=build_anchor,
        build_preprocess=vision_preprocess,
        check=check_image,
        storage="binary",
        description="satellite tiles through an open_clip ViT (the anchor)",
    )
