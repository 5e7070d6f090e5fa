"""The errors geobind raises; each message names the thing at fault."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

__all__ = [
    "ConfigError",
    "EncoderShapeError",
    "GeobindError",
    "InputError",
    "WeightsError",
    "done_before",
    "record_done",
    "writing",
]


class GeobindError(Exception):
    """Base class of geobind's own errors."""


class ConfigError(GeobindError, ValueError):
    """A recipe or encoder configuration names an unknown key or holds a wrong value."""


class InputError(GeobindError, ValueError):
    """A raw value (image, audio, text) cannot be decoded or is empty."""


class EncoderShapeError(GeobindError, RuntimeError):
    """An encoder returned embeddings of the wrong shape."""


class WeightsError(GeobindError, RuntimeError):
    """A weights file is missing, corrupt, or does not match the architecture."""


def record_done(exc: BaseException, done: str) -> None:
    """Note on ``exc`` what its command had already saved when it failed (``geobind`` then
    exits with 3, not 1: something was done)."""
    exc._geobind_done = done  # type: ignore[attr-defined]


def done_before(exc: BaseException) -> str:
    """What :func:`record_done` noted on ``exc``; empty when the command saved nothing."""
    return getattr(exc, "_geobind_done", "")


@contextlib.contextmanager
def writing(path: object) -> Iterator[None]:
    """Name ``path`` in an ``OSError`` raised inside that names no file (as ``write()``,
    ``fsync()`` and Lance's errors do), so a full disk says where it was full."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        if exc.errno is not None:
            exc.filename = str(path)
            raise
        if "No space left on device" in str(exc):  # Lance's errors carry only a message
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        raise
