"""Faults injected at the write points of a writer: every call that creates, syncs, renames or
removes a file. ``fault_at(k, folder, action)`` runs ``action`` instead of the k-th such call in
``folder``; ``fault_at(None, folder)`` only counts them. Used in-process by test_faults.py and,
to die by SIGKILL, by fault_worker.py."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator

#: The ``os`` functions through which geobind's writers (and shutil, pathlib, filelock) change
#: files; Lance writes from Rust, so its writes are faulted with a full disk instead.
WRITE_CALLS = ("open", "fsync", "replace", "rename", "unlink", "rmdir")


def disk_full(name: str, path: str | None) -> None:
    """A full disk, as the call would report it (a call on a file descriptor names no file)."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), *([path] if path else []))


@contextlib.contextmanager
def fault_at(
    point: int | None,
    under: str | os.PathLike,
    action: Callable[[str, str | None], None] = disk_full,
) -> Iterator[list[str]]:
    """Count the write calls made inside on paths ``under`` a folder (the list yielded holds
    each call's name and path, in order); the one of number ``point`` (from 0) runs
    ``action(name, path)`` instead (``path`` None for a call on a file descriptor). Calls
    elsewhere (a library's temporary files) are left alone."""
    calls: list[str] = []
    originals = {name: getattr(os, name) for name in WRITE_CALLS}
    root = os.path.abspath(under)

    def path_of(args: tuple, kwargs: dict) -> str:
        first = args[0] if args else ""
        if isinstance(first, int):  # a file descriptor: the file it is open on
            return os.readlink(f"/proc/self/fd/{first}")
        if kwargs.get("dir_fd") is not None:  # shutil.rmtree: a name in an open folder
            return os.path.join(os.readlink(f"/proc/self/fd/{kwargs['dir_fd']}"), first)
        return os.path.abspath(os.fspath(first))

    def wrap(name: str) -> Callable:
        def call(*args, **kwargs):
            path = path_of(args, kwargs)
            if path == root or path.startswith(root + os.sep):
                calls.append(f"{name} {path}")
                if len(calls) - 1 == point:
                    action(name, None if args and isinstance(args[0], int) else path)
            return originals[name](*args, **kwargs)

        return call

    for name in WRITE_CALLS:
        setattr(os, name, wrap(name))
    try:
        yield calls
    finally:
        for name, original in originals.items():
            setattr(os, name, original)


def new_towers(space_path: str | os.PathLike) -> tuple[list, dict[str, str]]:
    """New ground, text and satellite towers for a space, each aligned as a space trains
    them: what :meth:`Space.put_all` takes, and the sha256 each modality then has."""
    import torch

    from geobind.encoders.weights import sha256_hex, state_bytes
    from geobind.space import Space

    space = Space(space_path)
    towers = {name: space.encoder(name) for name in ("ground", "text", "satellite")}
    with torch.no_grad():
        for encoder in towers.values():
            for p in encoder.net.parameters():
                p.add_(0.01)
    sha = {name: sha256_hex(state_bytes(e.net)) for name, e in towers.items()}
    partners = {"ground": "text", "text": "ground", "satellite": "ground"}
    return [(towers[m], {"modality": p, "sha256": sha[p]}) for m, p in partners.items()], sha


def commit_new_towers(space_path: str | os.PathLike, towers: list | None = None) -> None:
    """Commit ``towers`` (default: :func:`new_towers`) to a space in one ``put_all``."""
    from geobind.space import Space

    Space(space_path).put_all(towers or new_towers(space_path)[0], "faults")
