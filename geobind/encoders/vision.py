"""An open_clip vision transformer as a geobind encoder: the anchor and ground photos use it.

Sizes come either from explicit fields or from an open_clip architecture name (``arch``, e.g.
``"ViT-B-32-quickgelu"``) read from the JSON configs shipped inside the open_clip package.
Weights load from a local file in any of these layouts (see :func:`vision_state`):

- an open_clip / OpenAI ``CLIP`` state dict (``visual.*`` keys; ``.pt``, ``.bin`` or
  ``.safetensors``; optionally wrapped in ``{"state_dict": ...}`` and ``module.``-prefixed), which
  covers RemoteCLIP's checkpoints too;
- OpenAI's TorchScript archive (``ViT-B-32.pt``), read with ``torch.jit.load``;
- a bare vision-tower state dict (what a geobind space stores);
- a Hugging Face ``CLIPVisionModel(WithProjection)`` state dict, including Sat2Cap's Lightning
  checkpoints (see :mod:`geobind.encoders.convert`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from geobind.encoders.convert import (
    check_sat2cap_activation,
    hf_clip_vision_to_open_clip,
    hf_vision_towers,
)
from geobind.encoders.media import decode_image
from geobind.encoders.openclip import (
    build_tower,
    image_transform,
    read_clip_checkpoint,
    resolve_arch,
)
from geobind.encoders.weights import load_into, strip_prefix
from geobind.errors import ConfigError, WeightsError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "AUGMENTATIONS",
    "ImagePreprocess",
    "VisionConfig",
    "build_vision_tower",
    "vision_preprocess",
    "vision_state",
]

#: Training augmentations of :class:`ImagePreprocess` (see ``VisionConfig.augment``).
AUGMENTATIONS = ("crop", "dihedral", "heading", "none")

#: The tiny tower a :class:`VisionConfig` gets when neither ``arch`` nor a size is given.
TINY_VISION_DEFAULTS = dict(
    embed_dim=64,
    image_size=64,
    patch_size=8,
    width=128,
    layers=4,
    head_width=32,
    mlp_ratio=4.0,
    quick_gelu=False,
)


@dataclass
class VisionConfig:
    """An open_clip ViT.

    Give ``arch`` (an open_clip model name such as ``"ViT-B-32-quickgelu"``, or the path of a
    local open_clip model-config JSON) to take every size from that architecture; a size given
    as well must agree with it, or building the config fails naming both values. Without
    ``arch``, unset sizes take the tiny defaults that train on a CPU (``TINY_VISION_DEFAULTS``).
    CLIP ViT-B/32 with OpenAI's weights is ``arch: ViT-B-32-quickgelu`` (``image_size=224,
    patch_size=32, width=768, layers=12, head_width=64, embed_dim=512, quick_gelu=True``);
    RemoteCLIP's README builds its ViT-B-32 as open_clip's ``ViT-B-32`` (GELU).

    ``image_mean`` / ``image_std`` override the normalisation (default: OpenAI CLIP's);
    ``max_pixels`` bounds the images decoded (a larger one is refused from its header).
    """

    embed_dim: int | None = None
    image_size: int | None = None
    #: width of a non-square input (e.g. a 32 x 128 panorama); ``None``: square, ``image_size``
    image_width: int | None = None
    patch_size: int | None = None
    width: int | None = None
    layers: int | None = None
    head_width: int | None = None
    mlp_ratio: float | None = None
    quick_gelu: bool | None = None
    #: an open_clip architecture name (or local model-config JSON) the sizes come from
    arch: str | None = None
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    #: augmentation while training: ``crop`` (open_clip's random resized crop), ``dihedral``
    #: (random quarter turns and mirroring, for top-down imagery, which has no "up" that a
    #: photo taken facing any way could reveal), ``heading`` (a 360-degree panorama turned to
    #: a random heading and mirrored half the time, for towers that need not know which way is
    #: north: a CLIP stage whose captions never say) or ``none``
    augment: str = "crop"
    #: the largest image decoded, in pixels, checked from its header (None: 64 megapixels, or
    #: the GEOBIND_MAX_PIXELS environment variable)
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        resolve_arch(self, "vision", TINY_VISION_DEFAULTS)
        if self.augment not in AUGMENTATIONS:
            raise ConfigError(
                f"{type(self).__name__}: augment {self.augment!r} is not one of "
                f"{', '.join(AUGMENTATIONS)}"
            )
        if self.augment == "heading":
            size: Any = self.image_size  # an architecture's may be a (height, width) pair
            height, width = (size, size) if isinstance(size, int) else tuple(size)
            if (self.image_width or width) <= height:
                raise ConfigError(
                    f"{type(self).__name__}: augment 'heading' turns a 360-degree panorama "
                    f"round its columns; give its image_width (wider than image_size "
                    f"{height}), or choose another augment for pictures that are not panoramas"
                )


# -- weights --------------------------------------------------------------------------
def vision_state(
    state: Mapping[str, torch.Tensor], prefer: str | None = None, source: str = "weights"
) -> dict[str, torch.Tensor]:
    """The vision-tower entries of a checkpoint, in open_clip ``VisionTransformer`` names.

    A Hugging Face CLIP vision model (Sat2Cap included) is converted; with several such towers
    in one checkpoint ``prefer`` (e.g. ``"imo_encoder."``) picks one. Otherwise the ``visual.``
    entries are taken, or the whole state if it has none (a bare tower).
    """
    towers = hf_vision_towers(state)
    if towers:
        chosen = [t for t in towers if prefer and t.startswith(prefer)] or towers
        if len(chosen) > 1:
            raise WeightsError(
                f"{source} holds {len(chosen)} Hugging Face CLIP vision towers "
                f"({', '.join(p or '<root>' for p in chosen)}): convert the one "
                f"you want with geobind.encoders.convert"
            )
        return hf_clip_vision_to_open_clip(state, chosen[0])
    return strip_prefix(state, "visual.")


def build_vision_tower(
    config: VisionConfig, weights: Path | None = None, prefer: str | None = None
) -> nn.Module:
    """The tower, optionally initialised from a local checkpoint (see the module doc)."""
    tower = build_tower(_sized(config), "vision")
    if weights is not None:
        source = f"vision weights {weights}"
        raw = read_clip_checkpoint(weights, config, source)
        check_sat2cap_activation(raw, config, source)
        load_into(tower, vision_state(raw, prefer, source), source)
    return tower


# -- preprocessing --------------------------------------------------------------------
class ImagePreprocess:
    """Encoded image bytes -> normalised ``[3, H, W]`` tensor, with open_clip's transforms.

    Every epoch decodes the same pictures again, so a training preprocess keeps them per
    process (up to :attr:`CACHE_BYTES`, then it decodes as before):

    - without augmentation (a CLIP stage's panoramas, and ``dihedral`` before its turn), the
      resized pixels: decoding and resizing took 0.3 of the 0.45 ms a picture costs. The result
      is the same to the bit; only the conversion to a tensor and the normalisation run again.
    - with ``crop``, the decoded pixels as a ``uint8`` tensor, which open_clip's own
      ``RandomResizedCrop`` (the same scale, ratio and bicubic resampling, drawn from torch's
      generator as before) crops and resizes as a tensor: a batch of 32 tiles of 64 pixels in
      8 ms after the first epoch, against 15 ms decoded and cropped through PIL every time.
      Torch's bicubic differs from PIL's by a quarter of a grey level on average.
    """

    CACHE_BYTES = 512 * 2**20

    def __init__(
        self,
        image_size: int,
        train: bool,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: str = "crop",
        max_pixels: int | None = None,
    ) -> None:
        self.augment = augment
        self.image_size = image_size
        self.train = train
        self.mean = list(mean) if mean is not None else None
        self.std = list(std) if std is not None else None
        self.max_pixels = max_pixels
        self._transform: Callable[[Any], Any] | None = None
        self._kept: dict[bytes, Any] = {}
        self._kept_bytes = 0

    def __call__(self, data: bytes) -> Any:
        if self._transform is None:  # built on first use so the object pickles light
            crop = self.train and self.augment == "crop"
            self._transform = image_transform(self.image_size, crop, self.mean, self.std)
        turn = _TURNS.get(self.augment) if self.train else None
        if self.train and isinstance(data, bytes):
            if self.augment == "crop":
                return self._cropped(data)
            pixels = self._kept_pixels(data)  # none, a turn: the eval transform's pixels
        else:
            pixels = self._transform(decode_image(data, self.max_pixels))
        return turn(pixels) if turn else pixels

    def _keep(self, key: bytes, value: Any, size: int) -> None:
        if self._kept_bytes + size <= self.CACHE_BYTES:
            self._kept[key] = value
            self._kept_bytes += size

    def _cropped(self, data: bytes) -> Any:
        """open_clip's train transform on the kept ``uint8`` pixels: its random resized crop
        as a tensor, then the scaling to [0, 1] of ``ToTensor`` and its normalisation."""
        import numpy as np
        import torch

        steps = self._transform.transforms  # type: ignore[union-attr]
        key = hashlib.blake2b(data, digest_size=16).digest()
        pixels = self._kept.get(key)
        if pixels is None:
            rgb = np.array(decode_image(data, self.max_pixels))  # RGB, [H, W, 3], writable
            pixels = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
            self._keep(key, pixels, pixels.numel())
        return steps[-1](steps[0](pixels).float().div_(255))

    def _kept_pixels(self, data: bytes) -> Any:
        """The fixed part of open_clip's eval transform (resize, crop, RGB) once per picture,
        kept as a ``uint8`` tensor; then ``ToTensor``'s scaling to [0, 1] (the same division
        of the same bytes: the same bits) and the normalisation."""
        import numpy as np
        import torch

        steps = self._transform.transforms  # type: ignore[union-attr]
        key = hashlib.blake2b(data, digest_size=16).digest()
        pixels = self._kept.get(key)
        if pixels is None:
            picture = decode_image(data, self.max_pixels)
            for step in steps[:-2]:
                picture = step(picture)
            rgb = np.array(picture)  # [H, W, 3], writable
            pixels = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
            self._keep(key, pixels, pixels.numel())
        return steps[-1](pixels.float().div_(255))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_transform": None, "_kept": {}, "_kept_bytes": 0}


def _sized(config: VisionConfig) -> Any:
    """The config as open_clip reads it: ``image_size`` an ``(height, width)`` pair when the
    input is not square."""
    if config.image_width is None:
        return config
    size: Any = (config.image_size, config.image_width)  # open_clip takes (height, width)
    return dataclasses.replace(config, image_size=size)


def vision_preprocess(config: VisionConfig, train: bool) -> ImagePreprocess:
    """The preprocessing a :class:`VisionConfig` tower expects."""
    size: Any = cast(int, config.image_size)  # resolved by __post_init__
    if config.image_width is not None:
        size = (size, config.image_width)
    return ImagePreprocess(
        size, train, config.image_mean, config.image_std, config.augment, config.max_pixels
    )


def dihedral(pixels: torch.Tensor) -> torch.Tensor:
    """One of the eight quarter-turn and mirror images of ``[C, H, W]`` pixels, drawn with
    torch's random generator (seeded per data worker)."""
    import torch

    k = int(torch.randint(0, 8, ()).item())
    turned = torch.rot90(pixels, k % 4, dims=(1, 2))
    return torch.flip(turned, dims=(2,)) if k >= 4 else turned


def heading(pixels: torch.Tensor) -> torch.Tensor:
    """A 360-degree panorama ``[C, H, W]`` seen from a random heading (its columns rolled round)
    and mirrored with probability 1/2, drawn with torch's random generator."""
    import torch

    shift = int(torch.randint(0, pixels.shape[-1], ()).item())
    turned = torch.roll(pixels, shift, dims=2)
    return torch.flip(turned, dims=(2,)) if bool(torch.randint(0, 2, ()).item()) else turned


#: The augmentations that turn the eval transform's pixels (``crop`` resizes its own crop).
_TURNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "dihedral": dihedral,
    "heading": heading,
}
