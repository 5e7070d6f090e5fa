"""geobind plugin: ground-level photos through CLIP's image tower (an open_clip ViT)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from geobind import (
    ColourHistogram,
    Modality,
    VisionConfig,
    build_vision_tower,
    check_image,
    hookimpl,
    vision_preprocess,
)

__all__ = ["GroundConfig", "ground_modality"]


@dataclass
class GroundConfig(VisionConfig):
    """CLIP's image tower; the defaults are a tiny ViT that trains on a CPU."""


def ground_modality() -> Modality:
    """The ``ground`` modality: encoded photo bytes in the pair-dataset column ``ground``."""
    return Modality(
        name="ground",
        config=GroundConfig,
        build_encoder=build_vision_tower,
        build_preprocess=vision_preprocess,
        check=check_image,
        storage="binary",
        description="ground-level photos through CLIP's image tower (open_clip ViT)",
        features=ColourHistogram,
    )


@hookimpl
def geobind_register_modalities(register: Callable[[Modality], None]) -> None:
    """Register the ground-photo modality."""
    register(ground_modality())
