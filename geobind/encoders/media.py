"""Decoding of encoded media, with errors that say what is wrong with the input."""

from __future__ import annotations

import io
import os
import re
import warnings
from typing import TYPE_CHECKING

from geobind.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "check_image",
    "decode_image",
    "encode_png",
    "max_pixels",
]

#: The largest image decoded unless configured otherwise: 64 megapixels (8000 x 8000), above
#: any camera photo or satellite tile the towers take in, below what a small machine decodes
#: comfortably (a 12000 x 12000 image is 432 MB as RGB, and more while it is decoded).
DEFAULT_MAX_PIXELS = 64_000_000
#: The environment variable that changes :data:`DEFAULT_MAX_PIXELS` for every modality that
#: does not set ``max_pixels`` in its config (importers check with it).
MAX_PIXELS_ENV = "GEOBIND_MAX_PIXELS"


def max_pixels(configured: int | None = None) -> int:
    """The pixel limit in force: ``configured`` (a modality config's ``max_pixels``), else the
    environment's :data:`MAX_PIXELS_ENV`, else :data:`DEFAULT_MAX_PIXELS`."""
    if configured is not None:
        return int(configured)
    text = os.environ.get(MAX_PIXELS_ENV, "")
    try:
        return int(text) if text else DEFAULT_MAX_PIXELS
    except ValueError:
        raise InputError(f"{MAX_PIXELS_ENV}={text!r}: expected a number of pixels") from None


def decode_image(data: bytes, limit: int | None = None) -> Image.Image:
    """Decode PNG/JPEG/... bytes into an RGB image, fully (a truncated file is an error).

    The size is read from the header first: an image of more than ``limit`` pixels (see
    :func:`max_pixels`) is an :class:`InputError` before any pixel is decoded.
    """
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"image: expected encoded bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise InputError("image: empty file (0 bytes)")
    most = max_pixels(limit)
    try:
        with warnings.catch_warnings():  # our limit is checked below, in our words
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # over twice PIL's own limit: size unread
        raise _too_large(_pixels_in(str(exc)), most) from None
    except UnidentifiedImageError:
        raise InputError(f"image: not a recognised image format ({len(data)} bytes)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image: corrupt or truncated ({exc})") from None
    with image:
        width, height = image.size
        if width * height > most:
            raise _too_large(f"{width}x{height} pixels", most)
        try:
            image.load()  # decode now, so truncation surfaces here and not in a data worker
            return image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"image: corrupt or truncated ({exc})") from None


def encode_png(image: Image.Image, compress_level: int = 6) -> bytes:
    """``image`` as PNG bytes, to be written in one piece (see
    :func:`geobind.encoders.weights.atomic_write`): a picture saved to its path directly is
    half written when the process dies, and takes its format from the path's extension."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def check_image(data: bytes, limit: int | None = None) -> None:
    """Raise :class:`InputError` unless ``data`` decodes as an image within the pixel limit."""
    decode_image(data, limit)


def _too_large(size: str, most: int) -> InputError:
    return InputError(
        f"image: {size} is over the limit of {most} pixels (a decompression bomb, or an image "
        f"larger than this modality decodes; raise max_pixels in its config or "
        f"{MAX_PIXELS_ENV} to accept it)"
    )


def _pixels_in(message: str) -> str:
    """The pixel count in PIL's DecompressionBombError message, as words."""
    found = re.search(r"\((\d+) pixels\)", message)
    return f"{found.group(1)} pixels" if found else "too many pixels"
