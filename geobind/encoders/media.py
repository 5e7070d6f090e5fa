"""Decoding of encoded media, with errors that say what is wrong with the input."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from geobind.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["check_image", "decode_image"]


def decode_image(data: bytes) -> Image.Image:
    """Decode PNG/JPEG/... bytes into an RGB image, fully (a truncated file is an error)."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"image: expected encoded bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise InputError("image: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode now, so truncation surfaces here and not in a data worker
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise InputError(f"image: not a recognised image format ({len(data)} bytes)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image: corrupt or truncated ({exc})") from None


def check_image(data: bytes) -> None:
    """Raise :class:`InputError` unless ``data`` decodes as an image."""
    decode_image(data)
