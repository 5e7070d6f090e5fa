"""An open_clip vision transformer as a geobind encoder: the anchor and ground photos use it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from geobind.media import decode_image

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ImagePreprocess", "VisionConfig", "build_vision_tower"]


@dataclass
class VisionConfig:
    """An open_clip ViT. Defaults are a tiny tower that trains on a CPU; CLIP ViT-B/32 is
    ``image_size=224, patch_size=32, width=768, layers=12, head_width=64, embed_dim=512,
    quick_gelu=True`` (OpenAI weights)."""

    embed_dim: int = 64
    image_size: int = 64
    patch_size: int = 8
    width: int = 128
    layers: int = 4
    head_width: int = 32
    mlp_ratio: float = 4.0
    quick_gelu: bool = False


def build_vision_tower(config: VisionConfig, weights: Optional[Path] = None) -> "nn.Module":
    """The tower, optionally initialised from a local open_clip/CLIP checkpoint's ``visual.*``."""
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    from geobind.weights import load_into, read_state_dict, strip_prefix

    vision_cfg = CLIPVisionCfg(layers=config.layers, width=config.width,
                               head_width=config.head_width, mlp_ratio=config.mlp_ratio,
                               patch_size=config.patch_size, image_size=config.image_size)
    tower = _build_vision_tower(config.embed_dim, vision_cfg, quick_gelu=config.quick_gelu)
    if weights is not None:
        state = strip_prefix(read_state_dict(weights), "visual.")
        load_into(tower, state, f"vision weights {weights}")
    return tower


class ImagePreprocess:
    """Encoded image bytes -> normalised ``[3, H, W]`` tensor, with open_clip's transforms."""

    def __init__(self, image_size: int, train: bool) -> None:
        self.image_size = image_size
        self.train = train
        self._transform = None

    def __call__(self, data: bytes) -> Any:
        if self._transform is None:  # built on first use so the object pickles light
            from open_clip.transform import image_transform
            self._transform = image_transform(self.image_size, is_train=self.train)
        return self._transform(decode_image(data))

    def __getstate__(self) -> dict:
        return {"image_size": self.image_size, "train": self.train, "_transform": None}


def vision_preprocess(config: VisionConfig, train: bool) -> ImagePreprocess:
    """The preprocessing a :class:`VisionConfig` tower expects."""
    return ImagePreprocess(config.image_size, train)
