"""Reading and writing weights files: safetensors, and torch checkpoints loaded safely."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geobind.encoders.torch_pickle import load_inert
from geobind.errors import WeightsError, writing

if TYPE_CHECKING:  # plugins import these helpers at top level: keep that free of torch
    import torch
    from torch import nn

__all__ = [
    "TEMPORARY_MARK",
    "atomic_write",
    "fsync_folder",
    "is_temporary",
    "load_into",
    "read_state_dict",
    "replacing",
    "save_state_dict",
    "sha256_hex",
    "state_bytes",
    "strip_prefix",
    "temporary_name",
]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file: ``.safetensors``, or a torch checkpoint.

    torch checkpoints load with ``weights_only=True``, or, when they pickle other objects (a
    Lightning checkpoint's hyper-parameters), with the restricted unpickler of
    :mod:`geobind.encoders.torch_pickle`, which never runs their code; a ``{"state_dict": ...}``
    wrapper (as Lightning and laion_clap write) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = _read_torch_file(path)
    except Exception as exc:  # corrupt files raise many types; all mean "unreadable"
        raise WeightsError(f"cannot read weights file {path}: {exc}") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, not tensors")
    return state


def _read_torch_file(path: Path) -> Any:
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # objects besides tensors: read them inert, never run
        return load_inert(path)


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` with it removed; all entries if none has it."""
    inner = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return inner or dict(state)


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` exactly; a mismatch names the first differing keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise WeightsError(
            f"{source} does not match the architecture: "
            f"{len(missing)} missing (first: {missing[:5]}), "
            f"{len(unexpected)} unexpected (first: {unexpected[:5]}), "
            f"{len(shapes)} of another shape (first: {shapes[:3]})"
        )
    module.load_state_dict(dict(state), strict=True)


#: What marks a file or folder as a writer's temporary: ``.NAME.tmp-RANDOM`` beside ``NAME``.
TEMPORARY_MARK = ".tmp-"


def temporary_name(path: Path) -> Path:
    """A fresh temporary name beside ``path``, recognised by :func:`is_temporary`."""
    return path.parent / f".{path.name}{TEMPORARY_MARK}{uuid.uuid4().hex[:12]}"


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary of :func:`temporary_name` (a crashed writer's leftover)."""
    return path.name.startswith(".") and TEMPORARY_MARK in path.name


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    The data reach the disk before the rename, and the rename before this returns; the file gets
    the mode any new file gets (0666 less the umask). On any failure the temporary is removed,
    ``path`` is as it was, and an ``OSError`` names ``path`` (a full disk is ``ENOSPC``).
    """
    path = Path(path)
    with writing(path), replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    fsync_folder(path.parent)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` for a writer to fill, renamed onto ``path`` when the
    block succeeds and removed whatever happens. A folder at ``path`` is an
    ``IsADirectoryError`` naming it before anything is written (a file could not be renamed
    over it, and the error would name the temporary instead)."""
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_folder(folder: Path) -> None:
    """Make the renames inside ``folder`` durable (a rename is an update of its folder)."""
    with writing(folder):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_state_dict(
    path: str | Path, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Save tensors as safetensors, atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write(path, save(tensors, metadata=dict(metadata or {})))


def state_bytes(module: nn.Module) -> bytes:
    """A module's weights serialised as safetensors (no metadata): what a space stores."""
    from safetensors.torch import save

    return save({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()})


def sha256_hex(data: bytes) -> str:
    """The sha256 of bytes, as hex."""
    import hashlib

    return hashlib.sha256(data).hexdigest()
