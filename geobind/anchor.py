"""The anchor: a satellite image encoder (an open_clip ViT) that every modality binds to.

It is registered as the built-in modality ``satellite``. Stage 1 initialises it from a CLIP
vision tower and aligns it to the CLIP embeddings of co-located ground photos.
"""

from __future__ import annotations

from dataclasses import dataclass

from geobind.media import check_image
from geobind.modality import Modality
from geobind.vision import VisionConfig, build_vision_tower, vision_preprocess

__all__ = ["ANCHOR", "AnchorConfig", "anchor_modality"]

#: The name of the anchor modality, and of the satellite-tile column in pair datasets.
ANCHOR = "satellite"


@dataclass
class AnchorConfig(VisionConfig):
    """The satellite encoder: an open_clip vision tower (see :class:`VisionConfig`)."""


def anchor_modality() -> Modality:
    """The satellite anchor as a modality."""
    return Modality(
        name=ANCHOR,
        config=AnchorConfig,
        build_encoder=build_vision_tower,
        build_preprocess=vision_preprocess,
        check=check_image,
        storage="binary",
        description="satellite tiles through an open_clip ViT (the anchor)",
    )
