"""The anchor: a satellite image encoder (an open_clip ViT) that every modality binds to.

It is registered as the built-in modality ``satellite``. Stage 1 initialises it from a CLIP
vision tower and aligns it to the CLIP embeddings of co-located ground photos.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geobind.config import make_config
from geobind.encoders.convert import (
    SAT2CAP_IMAGE_MEAN,
    SAT2CAP_IMAGE_STD,
    SAT2CAP_SATELLITE,
    check_sat2cap_activation,
    sat2cap_to_open_clip,
)
from geobind.encoders.features import ColourHistogram
from geobind.encoders.media import check_image
from geobind.encoders.openclip import read_clip_state
from geobind.encoders.vision import VisionConfig, build_vision_tower, vision_preprocess
from geobind.encoders.weights import load_into, save_state_dict
from geobind.modality import Modality

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ANCHOR", "AnchorConfig", "anchor_modality", "build_anchor", "convert_sat2cap"]

#: The name of the anchor modality, and of the satellite-tile column in pair datasets.
ANCHOR = "satellite"


@dataclass
class AnchorConfig(VisionConfig):
    """The satellite encoder: an open_clip vision tower (see :class:`VisionConfig`)."""


def build_anchor(config: AnchorConfig, weights: Path | None = None) -> nn.Module:
    """The satellite tower, optionally from a local checkpoint.

    Besides the layouts :func:`geobind.encoders.vision.build_vision_tower` reads (an
    open_clip/OpenAI CLIP checkpoint, whose vision tower initialises the anchor, or a bare
    tower), a Sat2Cap Lightning checkpoint loads directly: its satellite encoder
    (``imo_encoder.*``, a Hugging Face CLIP vision model) is converted on the fly (see
    :mod:`geobind.encoders.convert`).
    """
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
        features=ColourHistogram,
    )


def convert_sat2cap(ckpt_path: str | Path, out_path: str | Path, config: Any = None) -> Any:
    """Write Sat2Cap's satellite encoder as safetensors that the anchor loads.

    :param ckpt_path: a Sat2Cap Lightning checkpoint (or any file holding one HF CLIP vision
        tower with its projection).
    :param out_path: the ``.safetensors`` file to write (atomically).
    :param config: the anchor config (mapping or :class:`AnchorConfig`); default
        ``arch: ViT-B-32-quickgelu`` with Sat2Cap's image normalisation. The converted weights
        are loaded into that tower before anything is written, so a mismatch fails here.
    :returns: the resolved config, to put in the recipe (``build_encoder("satellite", config,
        weights=out_path)``).
    """
    config = make_config(
        AnchorConfig,
        config
        if config is not None
        else {
            "arch": "ViT-B-32-quickgelu",
            "image_mean": SAT2CAP_IMAGE_MEAN,
            "image_std": SAT2CAP_IMAGE_STD,
        },
        where="Sat2Cap anchor config",
    )
    state = read_clip_state(ckpt_path)
    source = f"Sat2Cap checkpoint {ckpt_path}"
    check_sat2cap_activation(state, config, source)
    converted = sat2cap_to_open_clip(state)
    load_into(build_vision_tower(config), converted, source)
    save_state_dict(
        out_path,
        converted,
        metadata={
            "format": "open_clip VisionTransformer",
            "source": "sat2cap",
            "converted_from": Path(ckpt_path).name,
            "config": json.dumps(asdict(config)),
        },
    )
    return config
